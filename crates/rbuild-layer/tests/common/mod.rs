//! Test helpers: a tree snapshot for comparing directories, and a byte-level tar builder for
//! hostile layers (independent of the crate's own header encoder).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

/// What a comparison looks at for one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Whole seconds; `None` when mtimes are not compared.
    pub mtime: Option<i64>,
    pub content: Option<Vec<u8>>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first path (in sorted order) of the inode this path shares, for multiply-linked files.
    pub hardlink_group: Option<PathBuf>,
}

/// Everything under `root` (not `root`), never following symlinks. Of the xattrs, only the one
/// a layer carries (`security.capability`) is read.
pub fn snapshot(root: &Path, with_mtimes: bool) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let child = rel.join(entry.file_name());
            let full = root.join(&child);
            let meta = fs::symlink_metadata(&full).unwrap();
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                stack.push(child.clone());
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_file() {
                "file"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "socket"
            };
            if ft.is_file() && meta.nlink() > 1 {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(child.clone());
            }
            let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(&full)
                .map(|names| {
                    names
                        // What a layer carries (BuildKit's rule): security.capability alone.
                        .filter(|n| n.as_bytes() == rbuild_layer::LAYER_XATTR.as_bytes())
                        .filter_map(|n| {
                            xattr::get(&full, &n)
                                .unwrap()
                                .map(|v| (n.as_bytes().to_vec(), v))
                        })
                        .collect()
                })
                .unwrap_or_default();
            xattrs.sort();
            out.insert(
                child,
                Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: (with_mtimes && kind != "symlink").then_some(meta.mtime()),
                    content: ft.is_file().then(|| fs::read(&full).unwrap()),
                    link: ft.is_symlink().then(|| fs::read_link(&full).unwrap()),
                    rdev: meta.rdev(),
                    xattrs,
                    hardlink_group: None,
                },
            );
        }
    }
    for mut paths in inodes.into_values() {
        paths.sort();
        if paths.len() > 1 {
            for p in &paths {
                out.get_mut(p).unwrap().hardlink_group = Some(paths[0].clone());
            }
        }
    }
    out
}

/// Asserts two snapshots are equal, listing every differing path.
pub fn assert_same_tree(expected: &BTreeMap<PathBuf, Node>, actual: &BTreeMap<PathBuf, Node>) {
    let mut problems = Vec::new();
    for (path, node) in expected {
        match actual.get(path) {
            None => problems.push(format!("missing: {}", path.display())),
            Some(other) if other != node => problems.push(format!(
                "differs: {}\n  expected {node:?}\n  actual   {other:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            problems.push(format!("unexpected: {}", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "trees differ:\n{}",
        problems.join("\n")
    );
}

/// Whether this process runs as root (owners, devices and `security.*` xattrs need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A tar written byte by byte.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

/// One raw USTAR header's fields.
pub struct Raw<'a> {
    pub name: &'a [u8],
    pub flag: u8,
    pub mode: u64,
    /// The size field as written (may lie about the data that follows).
    pub size: u64,
    pub link: &'a [u8],
    pub dev: (u64, u64),
}

impl<'a> Raw<'a> {
    pub fn file(name: &'a [u8], size: u64) -> Raw<'a> {
        Raw {
            name,
            flag: b'0',
            mode: 0o644,
            size,
            link: b"",
            dev: (0, 0),
        }
    }
    pub fn dir(name: &'a [u8]) -> Raw<'a> {
        Raw {
            name,
            flag: b'5',
            mode: 0o755,
            size: 0,
            link: b"",
            dev: (0, 0),
        }
    }
    pub fn symlink(name: &'a [u8], target: &'a [u8]) -> Raw<'a> {
        Raw {
            name,
            flag: b'2',
            mode: 0o777,
            size: 0,
            link: target,
            dev: (0, 0),
        }
    }
    pub fn hardlink(name: &'a [u8], target: &'a [u8]) -> Raw<'a> {
        Raw {
            name,
            flag: b'1',
            mode: 0o644,
            size: 0,
            link: target,
            dev: (0, 0),
        }
    }
}

impl RawTar {
    pub fn header(&mut self, raw: &Raw<'_>) -> &mut Self {
        let mut h = [0u8; 512];
        h[..raw.name.len().min(100)].copy_from_slice(&raw.name[..raw.name.len().min(100)]);
        put_octal(&mut h[100..108], raw.mode);
        put_octal(&mut h[108..116], 0);
        put_octal(&mut h[116..124], 0);
        put_octal(&mut h[124..136], raw.size);
        put_octal(&mut h[136..148], 1_600_000_000);
        h[156] = raw.flag;
        h[157..157 + raw.link.len()].copy_from_slice(raw.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        put_octal(&mut h[329..337], raw.dev.0);
        put_octal(&mut h[337..345], raw.dev.1);
        h[148..156].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        put_octal(&mut h[148..155], sum);
        self.bytes.extend_from_slice(&h);
        self
    }

    /// Entry data, padded to a block.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(data);
        let rem = self.bytes.len() % 512;
        if rem != 0 {
            self.bytes.resize(self.bytes.len() + 512 - rem, 0);
        }
        self
    }

    pub fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        self.header(&Raw::file(name, data.len() as u64)).data(data)
    }

    /// A PAX extended header with these records, applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let base = k.len() + v.len() + 3;
            let mut len = base + 1;
            while base + len.to_string().len() != len {
                len = base + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.header(&Raw {
            name: b"PaxHeaders.0/x",
            flag: b'x',
            mode: 0,
            size: body.len() as u64,
            link: b"",
            dev: (0, 0),
        })
        .data(&body)
    }

    /// A GNU long name header, applying to the next entry.
    pub fn gnu_longname(&mut self, name: &[u8]) -> &mut Self {
        let mut body = name.to_vec();
        body.push(0);
        self.header(&Raw {
            name: b"././@LongLink",
            flag: b'L',
            mode: 0,
            size: body.len() as u64,
            link: b"",
            dev: (0, 0),
        })
        .data(&body)
    }

    pub fn end(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        std::mem::take(&mut self.bytes)
    }
}

fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

pub fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
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

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A `security.capability` value (VFS_CAP_REVISION_2, effective, CAP_NET_BIND_SERVICE).
pub fn net_bind_capability() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// A tree with every kind of thing a layer must carry.
pub fn build_tree(root: &Path) {
    let p = |rel: &str| root.join(rel);
    fs::create_dir_all(p("bin")).unwrap();
    fs::write(p("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    chmod(&p("bin/tool"), 0o4755);
    fs::hard_link(p("bin/tool"), p("bin/tool-again")).unwrap();
    xattr::set(p("bin/tool"), "user.comment", b"kept \x00 binary").unwrap();
    fs::create_dir(p("tmp")).unwrap();
    chmod(&p("tmp"), 0o1777);
    fs::create_dir(p("srv")).unwrap();
    chmod(&p("srv"), 0o2775);
    fs::write(p("srv/data"), vec![7u8; 3 * 1024 * 1024 + 17]).unwrap();
    chmod(&p("srv/data"), 0o640);
    fs::create_dir_all(p("a/b")).unwrap();
    fs::write(p("a/one"), b"shared by three names").unwrap();
    fs::hard_link(p("a/one"), p("a/b/two")).unwrap();
    fs::hard_link(p("a/one"), p("srv/three")).unwrap();
    symlink("usr/lib", p("lib")).unwrap();
    symlink("/etc/passwd", p("abs-link")).unwrap();
    symlink("../../nowhere", p("a/b/dangling")).unwrap();
    fs::create_dir(p("empty")).unwrap();
    fs::write(p("empty-file"), b"").unwrap();
    let long_dir = format!("{}/{}", "d".repeat(60), "e".repeat(70));
    fs::create_dir_all(p(&long_dir)).unwrap();
    let long_file = format!("{long_dir}/{}", "f".repeat(150));
    fs::write(p(&long_file), b"long name").unwrap();
    symlink("x".repeat(200), p("long-target-link")).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name").unwrap();
    fs::create_dir(root.join(OsStr::from_bytes(b"\xff\xfe"))).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"\xff\xfe/\xc3\x28")), b"x").unwrap();
    rustix::fs::mknodat(
        CWD,
        p("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o620),
        0,
    )
    .unwrap();
    if is_root() {
        xattr::set(p("bin/tool"), "security.capability", &net_bind_capability()).unwrap();
        fs::create_dir(p("dev")).unwrap();
        rustix::fs::mknodat(
            CWD,
            p("dev/null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        std::os::unix::fs::lchown(p("srv"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(p("srv/data"), Some(1000), Some(1000)).unwrap();
        std::os::unix::fs::lchown(p("lib"), Some(42), Some(43)).unwrap();
        // chown clears setuid and capabilities: set them again.
        std::os::unix::fs::lchown(p("bin/tool"), Some(0), Some(0)).unwrap();
        chmod(&p("bin/tool"), 0o4755);
        xattr::set(p("bin/tool"), "security.capability", &net_bind_capability()).unwrap();
    }
    // Distinct mtimes, directories last (creating children changes them).
    let mut secs = 1_500_000_000;
    for (path, node) in snapshot(root, false).iter().rev() {
        secs += 3600;
        let full = root.join(path);
        if node.kind != "symlink" {
            set_mtime(&full, secs);
        }
    }
}
