//! `LayerWriter::copying_tar_to`: a reader gets the layer's uncompressed tar, byte for byte,
//! while the layer is written; a reader that hangs up does not fail the write.

use rbuild_layer::{LayerOptions, LayerWriter};
use rbuild_oci::{Compression, Digest};

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/a"), vec![b'a'; 600_000]).unwrap();
    std::fs::write(dir.path().join("b"), b"bee").unwrap();
    dir
}

#[test]
fn the_copy_is_the_uncompressed_tar() {
    let dir = tree();
    let plain = LayerWriter::new(LayerOptions {
        compression: Compression::None,
        source_date_epoch: Some(0),
        ..LayerOptions::default()
    });
    let mut tar = Vec::new();
    plain.write_tree(dir.path(), &mut tar).unwrap();

    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let reader = std::thread::spawn(move || rx.iter().flatten().collect::<Vec<u8>>());
    let gzip = LayerWriter::new(LayerOptions {
        compression: Compression::Gzip,
        source_date_epoch: Some(0),
        ..LayerOptions::default()
    });
    let mut blob = Vec::new();
    let info = gzip
        .copying_tar_to(tx)
        .write_tree(dir.path(), &mut blob)
        .unwrap();
    let copied = reader.join().unwrap();
    assert_eq!(copied, tar);
    assert_eq!(Digest::sha256_of(&copied), info.diff_id);
}

#[test]
fn a_reader_that_hangs_up_does_not_fail_the_write() {
    let dir = tree();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    drop(rx);
    let mut blob = Vec::new();
    let info = LayerWriter::new(LayerOptions::default())
        .copying_tar_to(tx)
        .write_tree(dir.path(), &mut blob)
        .unwrap();
    assert_eq!(info.size, blob.len() as u64);
}
