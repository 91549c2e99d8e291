//! Same tree, different days → same digests; gzip and zstd carry the same tar; the tar has the
//! form DESIGN.md §3 describes.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rbuild_layer::{Change, ChangeSet, Compression, LayerInfo, LayerOptions, LayerWriter};
use rbuild_oci::Digest;
use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

const EPOCH: i64 = 1_600_000_000;

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 123,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// The same tree each time, with every mtime `day` days after the epoch (plus a per-file
/// offset), and files created in a different order.
fn build(root: &Path, day: i64, reverse: bool) {
    let mut names: Vec<String> = (0..40)
        .map(|i| format!("dir{}/file{i:02}", i % 4))
        .collect();
    if reverse {
        names.reverse();
    }
    for name in &names {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, name.repeat(50)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::hard_link(root.join("dir0/file00"), root.join("dir3/link-to-file00")).unwrap();
    std::os::unix::fs::symlink("dir1/file01", root.join("link")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    for entry in common::snapshot(root, false).keys().rev() {
        set_mtime(&root.join(entry), EPOCH + day * 86_400 + 17);
    }
    for dir in ["dir0", "dir1", "dir2", "dir3", "empty"] {
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn write(root: &Path, compression: Compression, epoch: Option<i64>) -> (LayerInfo, Vec<u8>) {
    let options = LayerOptions {
        compression,
        level: None,
        source_date_epoch: epoch,
        threads: None,
    };
    let mut blob = Vec::new();
    let info = LayerWriter::new(options)
        .write_tree(root, &mut blob)
        .unwrap();
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(info.digest, Digest::sha256_of(&blob));
    (info, blob)
}

#[test]
fn the_same_tree_written_on_different_days_has_the_same_digests() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    build(a.path(), 1, false);
    build(b.path(), 30, true);
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (info_a, _) = write(a.path(), compression, Some(EPOCH));
        let (info_b, _) = write(b.path(), compression, Some(EPOCH));
        assert_eq!(info_a, info_b, "{compression:?}");
    }
    // Without the epoch the mtimes differ, and so do the digests: the clamp did the work.
    let (plain_a, _) = write(a.path(), Compression::None, None);
    let (plain_b, _) = write(b.path(), Compression::None, None);
    assert_ne!(plain_a.diff_id, plain_b.diff_id);
}

#[test]
fn gzip_and_zstd_blobs_decompress_to_the_uncompressed_layer() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2, false);
    let (plain, tar) = write(dir.path(), Compression::None, Some(EPOCH));
    assert_eq!(plain.diff_id, plain.digest);
    assert_eq!(plain.uncompressed_size, tar.len() as u64);
    let (gz, gz_blob) = write(dir.path(), Compression::Gzip, Some(EPOCH));
    let mut from_gz = Vec::new();
    flate2::read::GzDecoder::new(&gz_blob[..])
        .read_to_end(&mut from_gz)
        .unwrap();
    assert_eq!(from_gz, tar);
    assert_eq!(gz.diff_id, plain.diff_id);
    assert_eq!(
        gz.media_type.as_str(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let (zst, zst_blob) = write(dir.path(), Compression::Zstd, Some(EPOCH));
    assert_eq!(zstd::decode_all(&zst_blob[..]).unwrap(), tar);
    assert_eq!(zst.diff_id, plain.diff_id);
    assert_eq!(
        zst.media_type.as_str(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

struct Seen {
    name: Vec<u8>,
    kind: tar::EntryType,
    mtime: u64,
    uname: Vec<u8>,
    link: Option<Vec<u8>>,
    xattrs: Vec<String>,
}

fn entries(tar_bytes: &[u8]) -> Vec<Seen> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let xattrs = entry
            .pax_extensions()
            .unwrap()
            .map(|exts| {
                exts.filter_map(|r| r.unwrap().key().ok().map(str::to_owned))
                    .filter(|k| k.starts_with("SCHILY.xattr."))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Seen {
            name: entry.path_bytes().into_owned(),
            kind: entry.header().entry_type(),
            mtime: entry.header().mtime().unwrap(),
            uname: entry.header().username_bytes().unwrap_or_default().to_vec(),
            link: entry.link_name_bytes().map(|l| l.into_owned()),
            xattrs,
        });
    }
    out
}

#[test]
fn the_tar_is_sorted_parents_first_with_hardlinks_whiteouts_and_no_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/z"), b"z").unwrap();
    fs::write(root.join("a.b"), b"sorted after a/ by components").unwrap();
    fs::write(root.join("a-b"), b"x").unwrap();
    fs::hard_link(root.join("a-b"), root.join("a/b/y")).unwrap();
    fs::create_dir(root.join("opq")).unwrap();
    fs::write(root.join("opq/-first"), b"sorts before the marker by name").unwrap();
    xattr::set(root.join("a-b"), "user.overlay.origin", b"dropped").unwrap();
    xattr::set(root.join("a-b"), "user.kept", b"kept").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("a/sock")).unwrap();
    set_mtime(&root.join("a.b"), EPOCH - 1000);
    set_mtime(&root.join("a/b/z"), EPOCH + 1000);

    let mut changes = ChangeSet::new();
    for (path, change) in [
        ("a/b/z", Change::Upsert),
        ("a/b/y", Change::Upsert),
        ("a/sock", Change::Upsert),
        ("a-b", Change::Upsert),
        ("a.b", Change::Upsert),
        ("a/gone", Change::Delete),
        ("opq", Change::OpaqueDir),
        ("opq/-first", Change::Upsert),
    ] {
        changes.insert(path, change).unwrap();
    }
    let options = LayerOptions {
        compression: Compression::None,
        level: None,
        source_date_epoch: Some(EPOCH),
        threads: None,
    };
    let mut tar_bytes = Vec::new();
    LayerWriter::new(options)
        .write(root, &changes, &mut tar_bytes)
        .unwrap();
    let seen = entries(&tar_bytes);
    let names: Vec<String> = seen
        .iter()
        .map(|s| String::from_utf8_lossy(&s.name).into_owned())
        .collect();
    // a/ and a/b/ are written though unchanged (parents first); the socket is skipped; the
    // hardlink's second name (a-b, after a/b/y) is a link entry.
    assert_eq!(
        names,
        [
            "a/",
            "a/.wh.gone",
            "a/b/",
            "a/b/y",
            "a/b/z",
            "a-b",
            "a.b",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/-first"
        ]
    );
    assert!(seen.iter().all(|s| s.uname.is_empty()), "no user names");
    let link = &seen[5];
    assert_eq!(link.kind, tar::EntryType::Link);
    assert_eq!(link.link.as_deref(), Some(&b"a/b/y"[..]));
    let first = &seen[3];
    assert_eq!(first.kind, tar::EntryType::Regular);
    assert!(
        first.xattrs.is_empty(),
        "overlay and user.* xattrs are dropped (only security.capability is kept): {:?}",
        first.xattrs
    );
    assert_eq!(seen[4].mtime, EPOCH as u64, "a newer mtime is clamped");
    assert_eq!(
        seen[6].mtime,
        (EPOCH - 1000) as u64,
        "an older mtime is kept"
    );
    assert_eq!(seen[1].mtime, EPOCH as u64, "whiteouts carry the epoch");
}

#[test]
fn an_unwritable_output_is_an_error_not_a_hang() {
    struct Failing;
    impl std::io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("big"), vec![1u8; 4 * 1024 * 1024]).unwrap();
    let options = LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    };
    let err = LayerWriter::new(options)
        .write_tree(dir.path(), Failing)
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn a_missing_source_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut changes = ChangeSet::new();
    changes.insert("not/there", Change::Upsert).unwrap();
    let err = LayerWriter::default()
        .write(dir.path(), &changes, Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("not"), "{err}");
}

#[test]
fn gzip_and_zstd_output_is_the_same_for_any_thread_count_and_gunzip_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3, false);
    // Enough data for many chunks: a large file with text-like and random parts.
    let mut big = Vec::new();
    let mut x: u64 = 1;
    for i in 0..(3 * 1024 * 1024 / 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&if i % 3 == 0 {
            x.to_le_bytes()
        } else {
            *b"layer 42"
        });
    }
    fs::write(dir.path().join("big"), &big).unwrap();
    let (plain, tar) = write(dir.path(), Compression::None, Some(EPOCH));
    let mut blobs = Vec::new();
    for threads in [1, 2, 5] {
        let options = LayerOptions {
            compression: Compression::Gzip,
            level: None,
            source_date_epoch: Some(EPOCH),
            threads: Some(threads),
        };
        let mut blob = Vec::new();
        let info = LayerWriter::new(options)
            .write_tree(dir.path(), &mut blob)
            .unwrap();
        assert_eq!(info.diff_id, plain.diff_id);
        blobs.push(blob);
    }
    assert!(
        blobs.iter().all(|b| *b == blobs[0]),
        "same bytes for 1, 2 and 5 threads"
    );
    let zstd_blobs: Vec<Vec<u8>> = [1, 3]
        .into_iter()
        .map(|threads| {
            let options = LayerOptions {
                compression: Compression::Zstd,
                level: None,
                source_date_epoch: Some(EPOCH),
                threads: Some(threads),
            };
            let mut blob = Vec::new();
            LayerWriter::new(options)
                .write_tree(dir.path(), &mut blob)
                .unwrap();
            blob
        })
        .collect();
    assert_eq!(
        zstd_blobs[0], zstd_blobs[1],
        "zstd: same bytes for 1 and 3 threads"
    );
    assert_eq!(zstd::decode_all(&zstd_blobs[0][..]).unwrap(), tar);
    assert!(blobs[0].len() < tar.len() * 3 / 4, "it compresses");
    // An independent decoder: the system's gzip (integrity check and content).
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip is installed");
    let mut stdin = child.stdin.take().unwrap();
    let blob = blobs[0].clone();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &blob).unwrap());
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        output.status.success(),
        "gzip -dc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, tar);
}

/// Several thousand text files, `total` bytes in all (as a `COPY . /d/` of a source tree).
fn text_tree(root: &Path, files: usize, total: usize) {
    const WORDS: [&str; 12] = [
        "fn", "let", "return", "layer", "image", "build", "struct", "impl", "match", "error",
        "self", "Some",
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..files {
        let path = root.join(format!("src{}/mod{}/file{i}.rs", i % 7, i % 41));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = String::with_capacity(total / files + 16);
        while text.len() < total / files {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(WORDS[(x % 12) as usize]);
            text.push(if x % 9 == 0 { '\n' } else { ' ' });
        }
        fs::write(&path, text).unwrap();
    }
}

/// Issue #12, item 5: gzip digests varied between identical writes (a reused compressor's
/// window depended on which chunk its thread had compressed before).
#[test]
fn gzip_of_a_big_text_tree_has_one_digest_over_ten_writes_on_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    text_tree(dir.path(), 3_000, 24_000_000);
    let mut seen = std::collections::BTreeMap::new();
    for threads in [1, 2] {
        for run in 0..10 {
            let options = LayerOptions {
                compression: Compression::Gzip,
                level: None,
                source_date_epoch: Some(EPOCH),
                threads: Some(threads),
            };
            let info = LayerWriter::new(options)
                .write_tree(dir.path(), std::io::sink())
                .unwrap();
            assert!(info.uncompressed_size > 24_000_000);
            seen.entry((info.diff_id, info.digest))
                .or_insert_with(Vec::new)
                .push((threads, run));
        }
    }
    assert_eq!(seen.len(), 1, "several digests (threads, run): {seen:?}");
}

/// Issue #13, item 4: the names of one inode as BuildKit writes them: the first in the tar's
/// (sorted) order is the regular file, every later one a hardlink to it.
#[test]
fn hardlinks_point_to_the_first_name_in_tar_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("h/d")).unwrap();
    // Created in an order unlike the tar's, each linked from the previous name.
    fs::write(root.join("h/late-link"), b"one inode").unwrap();
    fs::hard_link(root.join("h/late-link"), root.join("h/d/c")).unwrap();
    fs::hard_link(root.join("h/d/c"), root.join("h/b")).unwrap();
    fs::hard_link(root.join("h/b"), root.join("h/a")).unwrap();
    let tar_of = |changes: &ChangeSet| {
        let mut tar_bytes = Vec::new();
        LayerWriter::new(LayerOptions {
            compression: Compression::None,
            source_date_epoch: Some(EPOCH),
            ..LayerOptions::default()
        })
        .write(root, changes, &mut tar_bytes)
        .unwrap();
        entries(&tar_bytes)
            .into_iter()
            .map(|s| {
                (
                    String::from_utf8(s.name).unwrap(),
                    s.kind,
                    s.link.map(|l| String::from_utf8(l).unwrap()),
                )
            })
            .collect::<Vec<_>>()
    };
    let link = |name: &str, to: &str| (name.to_owned(), tar::EntryType::Link, Some(to.to_owned()));
    let whole = ChangeSet::whole_tree(root).unwrap();
    assert_eq!(
        tar_of(&whole),
        [
            ("h/".to_owned(), tar::EntryType::Directory, None),
            ("h/a".to_owned(), tar::EntryType::Regular, None),
            link("h/b", "h/a"),
            ("h/d/".to_owned(), tar::EntryType::Directory, None),
            link("h/d/c", "h/a"),
            link("h/late-link", "h/a"),
        ]
    );
    // When the first name is not in the layer, the first name that is becomes the file.
    let mut some = ChangeSet::new();
    for path in ["h/late-link", "h/d/c", "h/b"] {
        some.insert(path, Change::Upsert).unwrap();
    }
    assert_eq!(
        tar_of(&some),
        [
            ("h/".to_owned(), tar::EntryType::Directory, None),
            ("h/b".to_owned(), tar::EntryType::Regular, None),
            ("h/d/".to_owned(), tar::EntryType::Directory, None),
            link("h/d/c", "h/b"),
            link("h/late-link", "h/b"),
        ]
    );
}
