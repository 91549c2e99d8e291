//! Applying a layer (issue 7's micro bench): a gzip layer of a generated tree extracted into a
//! fresh directory with every safety check on, beside `tar -xzf` of the same file. Prints a
//! table. `RBUILD_BENCH_MB` (default 200) sizes the tree.
//!
//! `cargo bench -p rbuild-layer --bench apply_layer`
#![allow(clippy::print_stdout, missing_docs)]

use rbuild_layer::{apply_layer, ApplyOptions, Compression, LayerOptions, LayerWriter};
use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// `files` files totalling about `bytes`, in 100-file directories, with text-like content
/// (compressible about as much as real sources).
fn generate_tree(root: &Path, bytes: u64, files: u64) {
    let per_file = (bytes / files) as usize;
    let line = b"fn main() { println!(\"the quick brown fox jumps over the lazy dog\"); }\n";
    for i in 0..files {
        let dir = root.join(format!("d{}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        let mut data = Vec::with_capacity(per_file);
        while data.len() < per_file {
            data.extend_from_slice(line);
            data.extend_from_slice(format!("// {i} {}\n", data.len()).as_bytes());
        }
        data.truncate(per_file);
        fs::write(dir.join(format!("f{i}.rs")), data).unwrap();
    }
}

fn main() {
    let mb: u64 = std::env::var("RBUILD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let files = (mb * 40).max(100);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    generate_tree(&tree, mb * 1_000_000, files);
    let layer_path = tmp.path().join("layer.tar.gz");
    let info = LayerWriter::new(LayerOptions {
        compression: Compression::Gzip,
        ..LayerOptions::default()
    })
    .write_tree(&tree, fs::File::create(&layer_path).unwrap())
    .unwrap();
    println!(
        "layer: {files} files, {:.1} MB uncompressed, {:.1} MB gzip",
        info.uncompressed_size as f64 / 1e6,
        info.size as f64 / 1e6
    );
    println!();
    println!("| extractor | seconds | MB/s (uncompressed) |");
    println!("|---|---:|---:|");
    let mb_total = info.uncompressed_size as f64 / 1e6;

    let target = tmp.path().join("applied");
    fs::create_dir(&target).unwrap();
    let started = Instant::now();
    let report = apply_layer(
        BufReader::new(fs::File::open(&layer_path).unwrap()),
        &target,
        &ApplyOptions {
            expected_diff_id: Some(info.diff_id.clone()),
            ..ApplyOptions::default()
        },
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.diff_id, info.diff_id);
    println!(
        "| rbuild-layer apply_layer (diffID verified) | {secs:.2} | {:.1} |",
        mb_total / secs
    );

    let target = tmp.path().join("tar-x");
    fs::create_dir(&target).unwrap();
    let started = Instant::now();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&layer_path)
        .arg("-C")
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    let secs = started.elapsed().as_secs_f64();
    println!("| tar -xzf | {secs:.2} | {:.1} |", mb_total / secs);
}
