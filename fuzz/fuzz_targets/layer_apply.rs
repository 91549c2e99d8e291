//! Applies arbitrary bytes as a layer into a fresh temp dir: no panic, and nothing outside the
//! target changes (a sentinel dir beside it is compared before and after, and the temp dir must
//! hold nothing new).
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rbuild_layer::{apply_layer, ApplyOptions};

/// Path → (mode, size, mtime ns, content) for everything under `root`, and `root`'s own listing.
fn outside(root: &Path) -> (Vec<String>, BTreeMap<String, (u32, u64, i64, Vec<u8>)>) {
    let mut listing: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listing.sort();
    let mut tree = BTreeMap::new();
    let mut stack = vec![root.join("sentinel")];
    while let Some(dir) = stack.pop() {
        let meta = fs::symlink_metadata(&dir).unwrap();
        tree.insert(
            dir.display().to_string(),
            (
                meta.mode(),
                0,
                meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                Vec::new(),
            ),
        );
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                let content = if meta.is_file() {
                    fs::read(&path).unwrap()
                } else {
                    Vec::new()
                };
                tree.insert(
                    path.display().to_string(),
                    (
                        meta.mode(),
                        meta.size(),
                        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                        content,
                    ),
                );
            }
        }
    }
    (listing, tree)
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::create_dir_all(tmp.path().join("sentinel/sub")).unwrap();
    fs::write(tmp.path().join("sentinel/secret"), b"secret").unwrap();
    fs::write(tmp.path().join("sentinel/sub/deep"), b"deep").unwrap();
    let before = outside(tmp.path());
    let _ = apply_layer(data, &target, &ApplyOptions::default());
    assert_eq!(
        outside(tmp.path()),
        before,
        "the layer changed something outside the target"
    );
});
