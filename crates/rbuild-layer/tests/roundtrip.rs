//! tree → layer → apply → the same tree; and before/after scans → layer → apply over the before
//! copy → the after tree.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{assert_same_tree, build_tree, chmod, is_root, set_mtime, snapshot};
use rbuild_layer::{
    apply_layer, diff, ApplyOptions, Compression, LayerOptions, LayerWriter, TreeScan,
};

fn write_and_apply(source: &Path, target: &Path, compression: Compression) {
    let writer = LayerWriter::new(LayerOptions {
        compression,
        ..LayerOptions::default()
    });
    let mut blob = Vec::new();
    let info = writer.write_tree(source, &mut blob).unwrap();
    assert_eq!(info.size, blob.len() as u64);
    let options = ApplyOptions {
        expected_diff_id: Some(info.diff_id.clone()),
        ..ApplyOptions::default()
    };
    let report = apply_layer(&blob[..], target, &options).unwrap();
    assert_eq!(report.compression, compression);
    assert_eq!(report.diff_id, info.diff_id);
    assert_eq!(report.uncompressed_size, info.uncompressed_size);
    assert!(report.skipped_devices.is_empty(), "{report:?}");
    if is_root() {
        assert_eq!(report.owners_not_set, 0);
        assert_eq!(report.xattrs_not_set, 0);
    }
}

#[test]
fn a_tree_survives_layer_write_and_apply_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    fs::create_dir(&source).unwrap();
    build_tree(&source);
    let expected = snapshot(&source, true);
    assert!(expected.len() > 20, "the test tree was built");
    if is_root() {
        let tool = &expected[Path::new("bin/tool")];
        assert!(tool.xattrs.iter().any(|(k, _)| k == b"security.capability"));
        assert_eq!(tool.mode, 0o4755);
    }
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let target = tmp.path().join(format!("target-{compression:?}"));
        fs::create_dir(&target).unwrap();
        write_and_apply(&source, &target, compression);
        assert_same_tree(&expected, &snapshot(&target, true));
    }
}

#[test]
fn scan_diff_layer_applied_over_the_old_tree_gives_the_new_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    build_tree(&tree);
    let lower = tmp.path().join("lower");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&lower)
        .status()
        .unwrap();
    assert!(status.success());
    let before = TreeScan::scan(&tree).unwrap();

    let p = |rel: &str| tree.join(rel);
    // Same size, same mtime, new content: only the ctime tells.
    let old_mtime = std::os::unix::fs::MetadataExt::mtime(&fs::metadata(p("a/one")).unwrap());
    fs::write(p("a/one"), b"SHARED BY THREE NAMES").unwrap();
    set_mtime(&p("a/one"), old_mtime);
    fs::remove_file(p("empty-file")).unwrap();
    fs::remove_dir_all(p(
        "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
    ))
    .unwrap();
    fs::remove_dir_all(p("empty")).unwrap();
    fs::write(p("empty"), b"a dir became a file").unwrap();
    fs::remove_file(p("lib")).unwrap();
    fs::create_dir(p("lib")).unwrap();
    fs::write(p("lib/libc.so"), b"a symlink became a dir").unwrap();
    chmod(&p("tmp"), 0o755);
    fs::hard_link(p("srv/data"), p("srv/data-link")).unwrap();
    xattr::set(p("srv"), "user.added", b"1").unwrap();
    fs::remove_dir_all(p("a/b")).unwrap();
    fs::create_dir(p("a/b")).unwrap();
    fs::write(p("a/b/new"), b"recreated dir").unwrap();

    let after = TreeScan::scan(&tree).unwrap();
    let changes = diff(&before, &after);
    assert!(
        changes.get("a/one").is_some(),
        "content change seen through ctime"
    );
    assert!(
        changes.get("bin/tool").is_none(),
        "untouched files are not in the diff"
    );
    assert_eq!(
        changes.get("empty-file"),
        Some(rbuild_layer::Change::Delete)
    );
    assert_eq!(changes.get("a/b/two"), Some(rbuild_layer::Change::Delete));

    let mut blob = Vec::new();
    let info = LayerWriter::new(LayerOptions::default())
        .write(&tree, &changes, &mut blob)
        .unwrap();
    let options = ApplyOptions {
        expected_diff_id: Some(info.diff_id),
        ..ApplyOptions::default()
    };
    apply_layer(&blob[..], &lower, &options).unwrap();
    assert_same_tree(&snapshot(&tree, true), &snapshot(&lower, true));
}

const CHILD_LAYER: &str = "RBUILD_LAYER_ROUNDTRIP_CHILD_LAYER";
const CHILD_TARGET: &str = "RBUILD_LAYER_ROUNDTRIP_CHILD_TARGET";

/// In a user namespace (`unshare -Ur`: root there, nobody else mapped, no CAP_MKNOD), the same
/// layer applies: contents, modes, links and user xattrs as in the source; owners that are not
/// mapped and the device node are reported, not errors.
#[test]
fn a_layer_applies_without_privilege_and_reports_what_it_could_not_set() {
    if let (Some(layer), Some(target)) = (
        std::env::var_os(CHILD_LAYER),
        std::env::var_os(CHILD_TARGET),
    ) {
        let file = fs::File::open(layer).unwrap();
        let report = apply_layer(file, Path::new(&target), &ApplyOptions::default()).unwrap();
        assert!(report.owners_not_set > 0, "{report:?}");
        assert_eq!(
            report.skipped_devices,
            [std::path::PathBuf::from("dev/null")],
            "{report:?}"
        );
        return;
    }
    if !is_root() {
        // Not a missing feature of the machine: this test compares against a tree that only
        // root can build (foreign owners, a device node).
        #[allow(clippy::print_stderr)]
        {
            eprintln!("SKIPPED: building the source tree (owners, devices) needs root");
        }
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let target = tmp.path().join("target");
    fs::create_dir(&source).unwrap();
    fs::create_dir(&target).unwrap();
    build_tree(&source);
    let layer = tmp.path().join("layer.tar.zst");
    let options = LayerOptions {
        compression: Compression::Zstd,
        ..LayerOptions::default()
    };
    LayerWriter::new(options)
        .write_tree(&source, fs::File::create(&layer).unwrap())
        .unwrap();

    let output = Command::new("unshare")
        .args(["-Ur", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_layer_applies_without_privilege_and_reports_what_it_could_not_set",
        ])
        .env(CHILD_LAYER, &layer)
        .env(CHILD_TARGET, &target)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return skip_or_fail(&format!("cannot run unshare: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("unshare failed") {
        return skip_or_fail(&format!("no user namespaces here: {stderr}"));
    }
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test:\n{stdout}"
    );

    // Owners (unmapped there) and security.* xattrs (namespaced there) aside, the trees match;
    // the device node is missing.
    let comparable = |root: &Path| {
        let mut tree = snapshot(root, true);
        tree.remove(Path::new("dev/null"));
        for node in tree.values_mut() {
            node.uid = 0;
            node.gid = 0;
            node.xattrs.retain(|(k, _)| !k.starts_with(b"security."));
        }
        tree
    };
    assert_same_tree(&comparable(&source), &comparable(&target));
}

fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    // A skipped test must say so where a person reads the test output.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("SKIPPED: {why}");
    }
}
