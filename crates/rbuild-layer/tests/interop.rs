//! Independent tools agree with this crate: GNU tar extracts our layers to the same tree, and
//! our apply extracts GNU tar's archives (GNU long names, `./` prefixes, PAX xattrs) to the
//! same tree.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{assert_same_tree, build_tree, snapshot};
use rbuild_layer::{apply_layer, ApplyOptions, Compression, LayerOptions, LayerWriter};

fn gnu_tar(args: &[&str], dir: &Path) {
    let output = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("GNU tar is installed");
    assert!(
        output.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn gnu_tar_extracts_our_layer_to_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let extracted = tmp.path().join("extracted");
    fs::create_dir(&source).unwrap();
    fs::create_dir(&extracted).unwrap();
    build_tree(&source);
    let blob = tmp.path().join("layer.tar.gz");
    let file = fs::File::create(&blob).unwrap();
    let options = LayerOptions {
        compression: Compression::Gzip,
        ..LayerOptions::default()
    };
    LayerWriter::new(options).write_tree(&source, file).unwrap();
    gnu_tar(
        &[
            "-xzpf",
            blob.to_str().unwrap(),
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--same-owner",
        ],
        &extracted,
    );
    let mut expected = snapshot(&source, true);
    let mut actual = snapshot(&extracted, true);
    if !common::is_root() {
        // Unprivileged GNU tar cannot restore owners or security.* attributes.
        for tree in [&mut expected, &mut actual] {
            for node in tree.values_mut() {
                node.uid = 0;
                node.gid = 0;
                node.xattrs.clear();
            }
        }
    }
    assert_same_tree(&expected, &actual);
}

#[test]
fn our_apply_extracts_a_gnu_tar_archive_to_the_same_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let applied = tmp.path().join("applied");
    fs::create_dir(&source).unwrap();
    fs::create_dir(&applied).unwrap();
    build_tree(&source);
    let archive = tmp.path().join("gnu.tar");
    for (format, xattrs) in [("gnu", false), ("posix", true)] {
        let mut args = vec![
            "-cf",
            archive.to_str().unwrap(),
            "--format",
            format,
            "--numeric-owner",
        ];
        if xattrs {
            args.extend(["--xattrs", "--xattrs-include=*"]);
        }
        args.push(".");
        gnu_tar(&args, &source);
        let target = applied.join(format);
        fs::create_dir(&target).unwrap();
        let report = apply_layer(
            fs::File::open(&archive).unwrap(),
            &target,
            &ApplyOptions::default(),
        )
        .unwrap();
        assert!(report.entries > 20, "{report:?}");
        let mut expected = snapshot(&source, true);
        if !xattrs {
            expected.values_mut().for_each(|node| node.xattrs.clear());
        }
        assert_same_tree(&expected, &snapshot(&target, true));
    }
}
