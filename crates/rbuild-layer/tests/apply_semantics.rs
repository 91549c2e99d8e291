//! Apply semantics on a lower tree, with layers built byte by byte: whiteouts, opaque markers
//! in either position, type changes, and the diffID check.

mod common;

use std::fs;
use std::path::Path;

use common::{Raw, RawTar};
use rbuild_layer::{apply_layer, ApplyOptions, LayerError};
use rbuild_oci::Digest;

fn lower(root: &Path) {
    fs::create_dir_all(root.join("d/sub")).unwrap();
    fs::write(root.join("d/old"), b"old").unwrap();
    fs::write(root.join("d/sub/deep"), b"deep").unwrap();
    fs::create_dir_all(root.join("was-dir/x")).unwrap();
    fs::write(root.join("was-file"), b"file").unwrap();
    fs::write(root.join("gone"), b"gone").unwrap();
    fs::create_dir_all(root.join("gone-dir/y")).unwrap();
}

fn listing(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = common::snapshot(root, false)
        .into_iter()
        .map(|(p, n)| format!("{} {}", p.display(), n.kind))
        .collect();
    out.sort();
    out
}

#[test]
fn whiteouts_opaque_dirs_and_type_changes_apply_over_a_lower_tree() {
    // The opaque marker comes after a child this same layer wrote: the child stays.
    let layer = RawTar::default()
        .header(&Raw::dir(b"d/"))
        .file(b"d/-new", b"written before the marker")
        .file(b"d/.wh..wh..opq", b"")
        .file(b"d/z-new", b"written after the marker")
        .file(b".wh.gone", b"")
        .file(b".wh.gone-dir", b"")
        .file(b".wh.never-existed", b"")
        .file(b"was-dir", b"a file now")
        .header(&Raw::dir(b"was-file/"))
        .file(b"was-file/inner", b"a dir now")
        .header(&Raw::hardlink(b"link", b"was-dir"))
        .end();
    let dir = tempfile::tempdir().unwrap();
    lower(dir.path());
    let report = apply_layer(&layer[..], dir.path(), &ApplyOptions::default()).unwrap();
    assert_eq!(report.whiteouts, 4);
    assert_eq!(
        listing(dir.path()),
        [
            "d dir",
            "d/-new file",
            "d/z-new file",
            "link file",
            "was-dir file",
            "was-file dir",
            "was-file/inner file",
        ]
    );
    assert_eq!(fs::read(dir.path().join("link")).unwrap(), b"a file now");
}

#[test]
fn a_wrong_diff_id_fails_the_apply() {
    let layer = RawTar::default().file(b"f", b"x").end();
    let dir = tempfile::tempdir().unwrap();
    let wrong = Digest::sha256_of(b"something else");
    let options = ApplyOptions {
        expected_diff_id: Some(wrong.clone()),
        ..ApplyOptions::default()
    };
    match apply_layer(&layer[..], dir.path(), &options) {
        Err(LayerError::DiffIdMismatch {
            layer: None,
            expected,
            actual,
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::sha256_of(&layer));
        }
        other => panic!("expected a diffID mismatch, got {other:?}"),
    }
    let right = ApplyOptions {
        expected_diff_id: Some(Digest::sha256_of(&layer)),
        ..ApplyOptions::default()
    };
    let fresh = tempfile::tempdir().unwrap();
    apply_layer(&layer[..], fresh.path(), &right).unwrap();
}
