//! A real overlay, mounted in a user namespace by `unshare -Urm` (util-linux): changes made
//! through the merged view, found in the upper dir, written as a layer and applied over a copy
//! of the lower dir give exactly the merged view (captured with `cp -a` before unmounting).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{assert_same_tree, snapshot};
use rbuild_layer::{
    apply_layer, changes_from_overlay_upper, ApplyOptions, Change, Compression, LayerOptions,
    LayerWriter,
};

fn build_lower(lower: &Path) {
    let p = |rel: &str| lower.join(rel);
    for dir in [
        "keep/sub",
        "dir2file/inner",
        "opq/sub",
        "emptied",
        "nested/deeper",
    ] {
        fs::create_dir_all(p(dir)).unwrap();
    }
    for (file, text) in [
        ("deleted", "gone soon"),
        ("file2dir", "becomes a dir"),
        ("keep/sub/file", "appended to"),
        ("keep/untouched", "stays"),
        ("dir2file/inner/x", "under a dir that becomes a file"),
        ("opq/old", "hidden by the opaque dir"),
        ("opq/sub/old2", "hidden too"),
        ("emptied/a", "removed"),
        ("nested/deeper/victim", "deleted deep down"),
        ("nested/deeper/stays", "kept"),
        ("chmodded", "mode changes"),
    ] {
        fs::write(p(file), text).unwrap();
    }
    std::os::unix::fs::symlink("keep/untouched", p("link")).unwrap();
    xattr::set(p("keep/sub/file"), "user.note", b"travels with copy-up").unwrap();
}

/// The operations done through the merged view, then a `cp -a` of the merged view.
const SCRIPT: &str = r#"
set -e
mount -t overlay overlay -o "lowerdir=$L,upperdir=$U,workdir=$W,userxattr" "$M"
cd "$M"
rm deleted
rm -r dir2file && echo "now a file" > dir2file
rm file2dir && mkdir file2dir && echo inside > file2dir/inner
rm -r opq && mkdir opq && echo fresh > opq/new
rm emptied/a
echo more >> keep/sub/file
rm nested/deeper/victim
chmod 0600 chmodded
ln keep/sub/file keep/hardlink
ln -sfn opq link
mkdir -p brand/new/tree && echo hi > brand/new/tree/file
cd /
cp -a "$M/." "$S"
umount "$M"
"#;

#[test]
fn an_overlay_upper_dir_becomes_a_layer_that_recreates_the_merged_view() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = tmp.path().join(name);
        fs::create_dir(&path).unwrap();
        path
    };
    let (lower, upper, work, merged, seen) = (
        dir("lower"),
        dir("upper"),
        dir("work"),
        dir("merged"),
        dir("seen"),
    );
    build_lower(&lower);

    let output = Command::new("unshare")
        .args(["-Urm", "sh", "-c", SCRIPT])
        .env("L", &lower)
        .env("U", &upper)
        .env("W", &work)
        .env("M", &merged)
        .env("S", &seen)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => return skip_or_fail(&format!("cannot run unshare: {e}")),
    };
    if !output.status.success() {
        return skip_or_fail(&format!(
            "no overlay in a user namespace here: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }

    let changes = changes_from_overlay_upper(&upper).unwrap();
    assert_eq!(changes.get("deleted"), Some(Change::Delete));
    assert_eq!(changes.get("opq"), Some(Change::OpaqueDir));
    assert_eq!(
        changes.get("file2dir"),
        Some(Change::OpaqueDir),
        "a new dir over a file is opaque"
    );
    assert_eq!(changes.get("dir2file"), Some(Change::Upsert));
    assert_eq!(
        changes.get("keep/untouched"),
        None,
        "unchanged lower files are not in the upper dir"
    );

    // overlayfs' own xattrs never reach the layer; the file's own do.
    let mut tar_bytes = Vec::new();
    let plain = LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    };
    LayerWriter::new(plain)
        .write(&upper, &changes, &mut tar_bytes)
        .unwrap();
    let mut keys = Vec::new();
    for entry in tar::Archive::new(&tar_bytes[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        if let Some(records) = entry.pax_extensions().unwrap() {
            for record in records {
                keys.push(record.unwrap().key().unwrap().to_owned());
            }
        }
    }
    assert!(
        !keys.contains(&"SCHILY.xattr.user.note".to_owned()),
        "only security.capability reaches a layer, as in BuildKit's: {keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("overlay")), "{keys:?}");

    for compression in [Compression::Gzip, Compression::None] {
        let mut blob = Vec::new();
        let options = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let info = LayerWriter::new(options)
            .write(&upper, &changes, &mut blob)
            .unwrap();

        let applied = tmp.path().join(format!("applied-{compression:?}"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(&lower)
            .arg(&applied)
            .status()
            .unwrap();
        assert!(status.success());
        let report = apply_layer(
            &blob[..],
            &applied,
            &ApplyOptions {
                expected_diff_id: Some(info.diff_id),
                ..ApplyOptions::default()
            },
        )
        .unwrap();
        assert!(report.whiteouts >= 4, "{report:?}");
        // The merged view of an overlay mounted without `index=on` shows a hardlink to a
        // copied-up lower file as a separate inode, so `cp -a` lost it; the upper dir (and so
        // the layer) has it. Compare without link groups, then check the link on its own.
        let unlinked = |root: &Path| {
            let mut tree = snapshot(root, true);
            tree.values_mut()
                .for_each(|node| node.hardlink_group = None);
            tree
        };
        assert_same_tree(&unlinked(&seen), &unlinked(&applied));
        let ino = |rel: &str| fs::metadata(applied.join(rel)).unwrap().ino();
        assert_eq!(
            ino("keep/hardlink"),
            ino("keep/sub/file"),
            "the hardlink is kept"
        );
    }
}

fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    // A skipped test must say so where a person reads the test output.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("SKIPPED: {why}");
    }
}
