//! Attacks on the root: symlinks and `..` that point outside it, asserted on the host side
//! (a canary directory next to the root must stay as it was, a secret's bytes never read).

use rbuild_fs::{walk, FsError, Kind, Root, SetMeta, Visit};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

struct Scene {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

/// A root and, next to it, a canary directory holding a secret.
fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"HOST-SECRET-BYTES").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o750)).unwrap();
    Scene {
        _dir: dir,
        root,
        outside,
    }
}

fn canary_unchanged(s: &Scene) {
    let names: Vec<_> = fs::read_dir(&s.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"], "nothing new outside the root");
    assert_eq!(
        fs::read(s.outside.join("secret")).unwrap(),
        b"HOST-SECRET-BYTES"
    );
    let mode = fs::metadata(&s.outside).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "the outside dir was not chmod-ed");
}

#[test]
fn reads_through_absolute_and_relative_links_stay_inside() {
    let s = scene();
    symlink(&s.outside, s.root.join("abs")).unwrap();
    symlink("../outside", s.root.join("rel")).unwrap();
    symlink("/", s.root.join("slash")).unwrap();
    let root = Root::open(&s.root).unwrap();
    for path in [
        "abs/secret",
        "rel/secret",
        "../outside/secret",
        "slash/../outside/secret",
    ] {
        let err = root.open_file(path).unwrap_err();
        assert!(err.is_not_found(), "{path}: {err}");
    }
    assert!(root.read_dir("abs").unwrap_err().is_not_found());
    // A link into the root works as it would inside a container.
    fs::create_dir(s.root.join("etc")).unwrap();
    fs::write(s.root.join("etc/hostname"), "inside").unwrap();
    let mut text = String::new();
    root.open_file("slash/etc/hostname")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "inside");
    canary_unchanged(&s);
}

#[test]
fn the_walker_reports_links_and_never_follows_them() {
    let s = scene();
    fs::create_dir(s.root.join("d")).unwrap();
    symlink(&s.outside, s.root.join("d/out")).unwrap();
    fs::write(s.root.join("d/f"), "f").unwrap();
    let root = Root::open(&s.root).unwrap();
    let mut seen = Vec::new();
    walk(&root, Path::new("d"), true, &mut |e| {
        if e.meta.kind == Kind::File {
            let mut b = Vec::new();
            e.open_file()?.read_to_end(&mut b).unwrap();
            assert!(!b.windows(6).any(|w| w == b"SECRET"));
        }
        seen.push((e.rel.to_path_buf(), e.meta.kind));
        Ok::<_, FsError>(Visit::Continue)
    })
    .unwrap();
    assert_eq!(
        seen,
        [
            (PathBuf::new(), Kind::Dir),
            (PathBuf::from("f"), Kind::File),
            (PathBuf::from("out"), Kind::Symlink)
        ]
    );
    // Started on the link itself, followed: resolved inside the root, where it is missing.
    let err = walk(&root, Path::new("d/out"), true, &mut |_| {
        Ok::<_, FsError>(Visit::Continue)
    })
    .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[test]
fn writes_replace_links_and_never_follow_them() {
    let s = scene();
    symlink(&s.outside, s.root.join("a")).unwrap();
    symlink(s.outside.join("secret"), s.root.join("f")).unwrap();
    let root = Root::open(&s.root).unwrap();
    // Creating below the link lands inside the root (where `outside` does not exist).
    assert!(root
        .create_file("a/pwned", 0o644)
        .unwrap_err()
        .is_not_found());
    assert!(root
        .create_dir("a/pwned", 0o755)
        .unwrap_err()
        .is_not_found());
    // Creating over a link fails rather than writing through it.
    assert!(root.create_file("f", 0o644).is_err());
    // Metadata of a link is the link's.
    root.set_meta(
        "a",
        SetMeta {
            mode: Some(0o777),
            owner: None,
            mtime: Some((1, 0)),
        },
    )
    .unwrap();
    root.remove("a").unwrap();
    root.remove("f").unwrap();
    assert!(fs::symlink_metadata(s.root.join("a")).is_err());
    canary_unchanged(&s);
}

#[test]
fn non_utf8_names_are_kept_as_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let s = scene();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(s.root.join(name), "x").unwrap();
    let root = Root::open(&s.root).unwrap();
    assert_eq!(root.read_dir("").unwrap(), [name.to_os_string()]);
    assert!(root.open_file(name).is_ok());
}

#[test]
fn subdir_through_a_link_is_the_inside_one() {
    let s = scene();
    fs::create_dir(s.root.join("real")).unwrap();
    symlink("/real", s.root.join("l")).unwrap();
    symlink(&s.outside, s.root.join("out")).unwrap();
    let root = Root::open(&s.root).unwrap();
    let sub = root.open_subdir("l").unwrap();
    assert_eq!(sub.path(), fs::canonicalize(s.root.join("real")).unwrap());
    assert!(root.open_subdir("out").unwrap_err().is_not_found());
}
