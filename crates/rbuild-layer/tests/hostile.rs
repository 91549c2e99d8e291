//! Hostile layers, built byte by byte: each is refused with an error naming the entry (or, for
//! device nodes, skipped when not privileged), and nothing outside the target changes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{snapshot, Node, Raw, RawTar};
use rbuild_layer::{apply_layer, ApplyOptions, LayerError};

/// A temp dir with an empty `target/` and a `sentinel/` that no layer may touch.
struct Arena {
    dir: tempfile::TempDir,
}

impl Arena {
    fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("target")).unwrap();
        fs::create_dir_all(dir.path().join("sentinel/sub")).unwrap();
        fs::write(dir.path().join("sentinel/secret"), b"do not touch").unwrap();
        fs::write(dir.path().join("sentinel/sub/deep"), b"nor this").unwrap();
        Arena { dir }
    }
    fn target(&self) -> PathBuf {
        self.dir.path().join("target")
    }
    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }
    /// Everything outside the target: the arena's own listing and the sentinel's tree.
    fn outside(&self) -> (Vec<PathBuf>, BTreeMap<PathBuf, Node>, i64) {
        let mut names: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        let mtime = fs::metadata(self.sentinel()).unwrap().mtime();
        (names, snapshot(&self.sentinel(), true), mtime)
    }
}

/// Applies `layer` in a fresh arena; returns its result after checking nothing outside moved.
fn apply_in_arena(layer: &[u8]) -> (Result<rbuild_layer::ApplyReport, LayerError>, Arena) {
    let arena = Arena::new();
    let before = arena.outside();
    let result = apply_layer(layer, &arena.target(), &ApplyOptions::default());
    assert_eq!(
        arena.outside(),
        before,
        "something outside the target changed"
    );
    (result, arena)
}

fn assert_refused(layer: &[u8], entry_fragment: &str) {
    let (result, _arena) = apply_in_arena(layer);
    let err = result.expect_err("the layer must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains(entry_fragment),
        "error {msg:?} should name {entry_fragment:?}"
    );
    assert!(!msg.contains('\n'), "one-line error: {msg:?}");
}

fn abs(path: &Path, rest: &str) -> Vec<u8> {
    format!("{}/{rest}", path.display()).into_bytes()
}

#[test]
fn traversal_with_dotdot_is_refused() {
    let tar = RawTar::default().file(b"../sentinel/pwned", b"x").end();
    assert_refused(&tar, "../sentinel/pwned");
    let tar = RawTar::default()
        .header(&Raw::dir(b"a/"))
        .file(b"a/../../sentinel/pwned", b"x")
        .end();
    assert_refused(&tar, "a/../../sentinel/pwned");
}

#[test]
fn absolute_names_are_refused() {
    let arena = Arena::new();
    let name = abs(&arena.sentinel(), "pwned");
    let tar = RawTar::default().file(&name, b"x").end();
    assert_refused(&tar, "absolute name");
    assert!(!arena.sentinel().join("pwned").exists());
}

#[test]
fn writing_through_a_symlink_to_outside_is_refused() {
    let arena = Arena::new();
    let target = abs(&arena.sentinel(), "");
    let tar = RawTar::default()
        .header(&Raw::symlink(b"link", &target))
        .file(b"link/pwned", b"x")
        .end();
    assert_refused(&tar, "link/pwned");
    assert!(!arena.sentinel().join("pwned").exists());
}

#[test]
fn writing_through_a_symlink_to_the_parent_is_refused() {
    let tar = RawTar::default()
        .header(&Raw::symlink(b"up", b".."))
        .file(b"up/sentinel/pwned", b"x")
        .end();
    assert_refused(&tar, "up/sentinel/pwned");
    let tar = RawTar::default()
        .header(&Raw::symlink(b"up", b".."))
        .header(&Raw::dir(b"up/sentinel/sub/"))
        .end();
    assert_refused(&tar, "up/sentinel/sub/");
}

#[test]
fn hardlinks_to_outside_are_refused() {
    let tar = RawTar::default()
        .header(&Raw::hardlink(b"hl", b"../sentinel/secret"))
        .end();
    assert_refused(&tar, "hl");
    let arena = Arena::new();
    let name = abs(&arena.sentinel(), "secret");
    let tar = RawTar::default().header(&Raw::hardlink(b"hl", &name)).end();
    assert_refused(&tar, "secret\": absolute name");
}

#[test]
fn hardlinks_through_a_symlink_are_refused() {
    let arena = Arena::new();
    let target = abs(&arena.sentinel(), "");
    let tar = RawTar::default()
        .header(&Raw::symlink(b"s", &target))
        .header(&Raw::hardlink(b"h", b"s/secret"))
        .end();
    assert_refused(&tar, "hardlink target's parent \"s\" is a symbolic link");
}

#[test]
fn whiteouts_of_dotdot_or_nothing_are_refused() {
    let tar = RawTar::default().file(b".wh..", b"").end();
    assert_refused(&tar, ".wh..");
    let tar = RawTar::default()
        .header(&Raw::dir(b"d/"))
        .file(b"d/.wh.", b"")
        .end();
    assert_refused(&tar, "d/.wh.");
}

#[test]
fn whiteouts_escaping_the_target_are_refused() {
    let tar = RawTar::default().file(b"../sentinel/.wh.secret", b"").end();
    assert_refused(&tar, "../sentinel/.wh.secret");
    let arena = Arena::new();
    let target = abs(&arena.sentinel(), "");
    let tar = RawTar::default()
        .header(&Raw::symlink(b"s", &target))
        .file(b"s/.wh.secret", b"")
        .end();
    assert_refused(&tar, "s/.wh.secret");
    let tar = RawTar::default()
        .header(&Raw::symlink(b"s", &target))
        .file(b"s/.wh..wh..opq", b"")
        .end();
    assert_refused(&tar, "s/.wh..wh..opq");
}

#[test]
fn a_huge_size_field_is_a_truncated_layer() {
    let mut tar = RawTar::default();
    tar.header(&Raw::file(b"big", 0o77777777777))
        .data(b"only a few bytes");
    let bytes = tar.end();
    assert_refused(&bytes, "big");
}

#[test]
fn a_gzip_bomb_of_a_pax_header_is_refused_before_it_fills_memory() {
    // The header announces 256 MiB of PAX records; a gzip bomb would deliver them from a tiny
    // blob. The guard refuses at the header, before any record is buffered (only 2 MiB follow
    // here, to keep the test fast).
    let mut tar = RawTar::default();
    tar.header(&Raw {
        name: b"PaxHeaders.0/x",
        flag: b'x',
        mode: 0,
        size: 256 * 1024 * 1024,
        link: b"",
        dev: (0, 0),
    });
    tar.bytes.resize(tar.bytes.len() + 2 * 1024 * 1024, b'9');
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &tar.bytes).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "a small blob");
    assert_refused(&bomb, "PAX header of 268435456 bytes");
}

#[test]
fn a_truncated_stream_is_refused() {
    let mut tar = RawTar::default();
    tar.header(&Raw::file(b"half", 1000));
    tar.bytes.extend_from_slice(&[b'a'; 600]);
    assert_refused(&tar.bytes, "half");
    // Cut inside a header.
    let whole = RawTar::default()
        .file(b"one", b"1")
        .file(b"two", b"2")
        .end();
    let (result, _arena) = apply_in_arena(&whole[..512 + 512 + 100]);
    assert!(result.is_err());
}

#[test]
fn a_pax_path_override_to_traversal_is_refused() {
    let tar = RawTar::default()
        .pax(&[("path", b"../sentinel/pwned")])
        .file(b"innocent", b"x")
        .end();
    assert_refused(&tar, "../sentinel/pwned");
    let tar = RawTar::default()
        .file(b"a", b"x")
        .pax(&[("linkpath", b"../sentinel/secret")])
        .header(&Raw::hardlink(b"b", b"a"))
        .end();
    assert_refused(
        &tar,
        "hardlink target \"../sentinel/secret\": `..` component",
    );
}

#[test]
fn a_gnu_longname_traversal_is_refused() {
    let long = format!("{}/../../../sentinel/pwned", "d/".repeat(70));
    let tar = RawTar::default()
        .gnu_longname(long.as_bytes())
        .file(b"short", b"x")
        .end();
    assert_refused(&tar, "sentinel/pwned");
}

#[test]
fn a_file_over_a_symlink_replaces_the_link_not_its_target() {
    let arena = Arena::new();
    let link_target = abs(&arena.sentinel(), "secret");
    let tar = RawTar::default()
        .header(&Raw::symlink(b"f", &link_target))
        .file(b"f", b"replaced")
        .end();
    let (result, arena) = apply_in_arena(&tar);
    result.unwrap();
    let f = arena.target().join("f");
    assert!(fs::symlink_metadata(&f).unwrap().is_file());
    assert_eq!(fs::read(f).unwrap(), b"replaced");
}

#[test]
fn garbage_is_refused() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (result, _arena) = apply_in_arena(&garbage);
    assert!(result.is_err());
}

fn device_tar() -> Vec<u8> {
    RawTar::default()
        .header(&Raw::dir(b"dev/"))
        .header(&Raw {
            name: b"dev/null",
            flag: b'3',
            mode: 0o666,
            size: 0,
            link: b"",
            dev: (1, 3),
        })
        .file(b"after", b"later entries still applied")
        .end()
}

#[test]
fn device_nodes_stay_inside_and_are_created_when_privileged() {
    let (result, arena) = apply_in_arena(&device_tar());
    let report = result.unwrap();
    if common::is_root() {
        assert!(report.skipped_devices.is_empty());
        assert_eq!(
            fs::symlink_metadata(arena.target().join("dev/null"))
                .unwrap()
                .rdev(),
            rustix::fs::makedev(1, 3)
        );
    }
    assert!(arena.target().join("after").exists());
}

const CHILD_ENV: &str = "RBUILD_LAYER_HOSTILE_USERNS_CHILD";

/// Runs inside `unshare -Ur` (no privilege to create devices): the device is skipped, reported,
/// and the rest applied.
#[test]
fn device_nodes_are_skipped_without_privilege() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let (result, arena) = apply_in_arena(&device_tar());
        let report = result.unwrap();
        assert_eq!(report.skipped_devices, [PathBuf::from("dev/null")]);
        assert!(!arena.target().join("dev/null").exists());
        assert!(arena.target().join("after").exists());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .args(["-Ur", "--"])
        .arg(&exe)
        .args([
            "--exact",
            "device_nodes_are_skipped_without_privilege",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
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
}

fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    // A skipped test must say so where a person reads the test output.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("SKIPPED: {why}");
    }
}
