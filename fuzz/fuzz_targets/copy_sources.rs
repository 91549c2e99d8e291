//! Builds a random tree of directories, files and symlinks (targets drawn from `..`, `/`,
//! absolute host paths and names) in a root beside an `outside` directory holding a secret,
//! then resolves, opens, walks and writes random paths through `rbuild-fs`, as COPY sources and
//! destinations are: every resolved path stays in the root (only normal components), the
//! user-space resolution agrees with the kernel's (`openat2` RESOLVE_IN_ROOT), no read returns
//! the secret, and nothing outside the root changes.
#![no_main]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use rbuild_fs::{walk, FsError, Kind, Root, Visit};

const SECRET: &[u8] = b"OUTSIDE-SECRET";
const NAMES: [&str; 6] = ["a", "b", "c", "..", ".", "d\u{e9}"];

/// Consumes bytes as small choices.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn next(&mut self, n: usize) -> Option<usize> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b as usize % n)
    }

    /// A path of 1..=4 components from [`NAMES`], absolute or not.
    fn path(&mut self, outside: &Path) -> Option<PathBuf> {
        let kind = self.next(8)?;
        if kind == 0 {
            return Some(outside.join("secret"));
        }
        if kind == 1 {
            return Some(outside.to_path_buf());
        }
        let mut path = PathBuf::from(if kind == 2 { "/" } else { "" });
        for _ in 0..=self.next(4)? {
            path.push(NAMES[self.next(NAMES.len())?]);
        }
        Some(path)
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push((p, m.mode(), m.size(), content));
        }
    }
    out.sort();
    out
}

fn inside(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir(&root_dir).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), SECRET).unwrap();
    fs::create_dir(outside.join("a")).unwrap();
    let before = snapshot(&outside);

    let mut c = Choices(data);
    // The tree: up to 24 entries, each created (if it can be) at a lexical path in the root.
    for _ in 0..24 {
        let (Some(what), Some(at)) = (c.next(3), c.path(&outside)) else { break };
        let at: PathBuf = at.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        if at.as_os_str().is_empty() {
            continue;
        }
        let host = root_dir.join(&at);
        // Only where the parent is a real directory of the root: the fuzzer's own setup must
        // not write through its links.
        let parent_real = host.parent().is_some_and(|p| {
            p.strip_prefix(&root_dir).is_ok_and(|rel| {
                let mut cur = root_dir.clone();
                rel.components().all(|comp| {
                    cur.push(comp);
                    fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir())
                })
            })
        });
        if !parent_real {
            continue;
        }
        let _ = match what {
            0 => fs::create_dir(&host),
            1 => fs::write(&host, b"inside"),
            _ => match c.path(&outside) {
                Some(target) => symlink(target, &host),
                None => break,
            },
        };
    }

    let root = Root::open(&root_dir).unwrap();
    for _ in 0..8 {
        let (Some(path), Some(mode)) = (c.path(&outside), c.next(4)) else { break };
        match root.resolve(&path, mode % 2 == 0) {
            Ok(resolved) => {
                assert!(inside(&resolved), "{path:?} resolved to {resolved:?}");
                // The kernel agrees: what openat2 finds is what the resolved path names.
                if let (Ok(k), Ok(u)) = (root.metadata(&path), root.symlink_metadata(&resolved)) {
                    if mode % 2 == 0 && u.kind != Kind::Symlink {
                        assert_eq!((k.dev, k.ino), (u.dev, u.ino), "{path:?} vs {resolved:?}");
                    }
                }
            }
            Err(FsError::TooManyLinks { .. }) => {}
            Err(e) => panic!("resolve {path:?}: {e}"),
        }
        if let Ok(mut f) = root.open_file(&path) {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            assert_ne!(bytes, SECRET, "{path:?} read the host's secret");
        }
        let mut seen = 0;
        let _ = walk(&root, &path, mode < 2, &mut |e| {
            seen += 1;
            assert!(seen < 10_000, "the walk loops");
            if e.meta.kind == Kind::File {
                let mut bytes = Vec::new();
                e.open_file()?.read_to_end(&mut bytes).unwrap();
                assert_ne!(bytes, SECRET);
            }
            Ok::<_, FsError>(Visit::Continue)
        });
        match mode {
            0 => drop(root.create_file(&path, 0o644)),
            1 => drop(root.create_dir(&path, 0o755)),
            2 => drop(root.remove(&path)),
            _ => drop(root.set_meta(&path, rbuild_fs::SetMeta { mode: Some(0o777), ..Default::default() })),
        }
    }
    assert_eq!(snapshot(&outside), before, "something outside the root changed");
});
