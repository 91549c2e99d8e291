//! Finding changes by comparing two metadata scans of a tree, taken before and after a step.
//!
//! A scan records, per path, what `lstat` tells (device and inode, size, mtime and ctime in
//! nanoseconds, mode, owner, link count, device number), the xattrs and a symlink's target. No
//! file content is read: a write that preserves size and mtime still changes the ctime, which
//! only the kernel can set.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::changes::{Change, ChangeSet};
use crate::error::LayerError;
use crate::xattrs::{self, Xattrs};

/// What a scan keeps of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// The device holding the file.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// All extended attributes (overlay's included: they are not in layers, but a change to
    /// them is still a change).
    pub xattrs: Xattrs,
    /// A symbolic link's target.
    pub link_target: Option<PathBuf>,
}

impl FileMeta {
    fn read(path: &Path) -> Result<FileMeta, LayerError> {
        let meta = fs::symlink_metadata(path).map_err(|e| LayerError::io("inspecting", path, e))?;
        let link_target = if meta.file_type().is_symlink() {
            Some(fs::read_link(path).map_err(|e| LayerError::io("reading link", path, e))?)
        } else {
            None
        };
        Ok(FileMeta {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            nlink: meta.nlink(),
            rdev: meta.rdev(),
            xattrs: xattrs::read_all(path)
                .map_err(|e| LayerError::io("reading xattrs of", path, e))?,
            link_target,
        })
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// The metadata of every path under a root, taken at one moment: a value that can be kept and
/// compared with a later scan by [`diff`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeScan {
    entries: BTreeMap<PathBuf, FileMeta>,
}

impl TreeScan {
    /// Scans every path under `root` (not `root` itself), never following symbolic links.
    pub fn scan(root: &Path) -> Result<TreeScan, LayerError> {
        let mut entries = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let read = fs::read_dir(&dir).map_err(|e| LayerError::io("listing", &dir, e))?;
            for entry in read {
                let entry = entry.map_err(|e| LayerError::io("listing", &dir, e))?;
                let child = rel.join(entry.file_name());
                let meta = FileMeta::read(&root.join(&child))?;
                if meta.is_dir() {
                    stack.push(child.clone());
                }
                entries.insert(child, meta);
            }
        }
        Ok(TreeScan { entries })
    }

    /// The metadata recorded for `path` (relative to the scanned root).
    pub fn get(&self, path: impl AsRef<Path>) -> Option<&FileMeta> {
        self.entries.get(path.as_ref())
    }

    /// The number of paths recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree was empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The recorded paths and their metadata, parents before children.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &FileMeta)> {
        self.entries.iter().map(|(p, m)| (p.as_path(), m))
    }
}

/// The changes that turn the tree as scanned in `before` into the tree scanned in `after`:
/// new or changed paths are upserts; a vanished path is a delete, unless its parent vanished
/// too or stopped being a directory (the parent's own change covers it).
pub fn diff(before: &TreeScan, after: &TreeScan) -> ChangeSet {
    let mut changes = ChangeSet::new();
    for (path, now) in &after.entries {
        let changed = match before.entries.get(path) {
            None => true,
            Some(then) => !same_file_state(then, now),
        };
        if changed {
            changes
                .insert(path, Change::Upsert)
                .expect("scanned paths are clean relative paths");
        }
    }
    for path in before.entries.keys() {
        if after.entries.contains_key(path) {
            continue;
        }
        let parent_survives = match path.parent() {
            Some(parent) if parent.as_os_str().is_empty() => true,
            Some(parent) => {
                after.entries.get(parent).is_some_and(FileMeta::is_dir)
                    && before.entries.get(parent).is_some_and(FileMeta::is_dir)
            }
            None => true,
        };
        if parent_survives {
            changes
                .insert(path, Change::Delete)
                .expect("scanned paths are clean relative paths");
        }
    }
    changes
}

/// Whether nothing that a layer records (or that shows a content change) differs. The atime is
/// not compared: reading a file changes it.
fn same_file_state(a: &FileMeta, b: &FileMeta) -> bool {
    a == b
}
