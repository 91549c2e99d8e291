//! The one walker: every entry below a start path inside a [`Root`], parents before children,
//! names sorted by bytes, symlinks reported and never followed (only the start may be, inside
//! the root), every error returned. Directories are opened from their parent's handle with
//! `O_NOFOLLOW`, so a tree changed under the walk cannot lead it outside the root.

use crate::error::FsError;
use crate::meta::{FileMeta, Kind};
use crate::root::{fstat, list_dir, read_link_fd, Root};
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What the walk does after a visited directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Go on (into the directory).
    Continue,
    /// Do not descend into this directory.
    SkipChildren,
}

/// One entry met by the walk.
#[derive(Debug)]
pub struct WalkEntry<'a> {
    /// The path relative to the walk's start (empty for the start itself).
    pub rel: &'a Path,
    /// The entry's metadata (a symlink's own).
    pub meta: FileMeta,
    parent: BorrowedFd<'a>,
    name: &'a OsStr,
}

impl WalkEntry<'_> {
    /// Opens the entry (a regular file) for reading, never through a symlink.
    pub fn open_file(&self) -> Result<File, FsError> {
        let fd = rustix::fs::openat(
            self.parent,
            self.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(FsError::io("open", self.rel))?;
        if fstat(&fd, self.rel)?.kind != Kind::File {
            return Err(FsError::WrongType {
                path: self.rel.to_path_buf(),
                what: "not a regular file",
            });
        }
        Ok(File::from(fd))
    }

    /// The target of the entry (a symlink).
    pub fn read_link(&self) -> Result<PathBuf, FsError> {
        read_link_fd(self.parent, self.name, self.rel)
    }
}

/// An open directory of the walk and the names still to visit in it.
struct Level {
    fd: OwnedFd,
    rel: PathBuf,
    names: std::vec::IntoIter<OsString>,
}

/// Walks `start` (relative to `root`; followed inside the root when it is a symlink and
/// `follow_start` is set) and everything below it, calling `visit` for each entry, the start
/// first. The walk stops at the first error, `visit`'s or its own.
pub fn walk<E: From<FsError>>(
    root: &Root,
    start: &Path,
    follow_start: bool,
    visit: &mut dyn FnMut(&WalkEntry<'_>) -> Result<Visit, E>,
) -> Result<(), E> {
    let resolved = root.resolve(start, follow_start)?;
    let (parent, name): (OwnedFd, OsString) = match resolved.file_name() {
        Some(name) => {
            let parent = resolved.parent().unwrap_or(Path::new(""));
            let fd = open_in(root, parent)?;
            (fd, name.to_os_string())
        }
        None => (open_in(root, Path::new(""))?, OsString::from(".")),
    };
    let meta = stat_at(parent.as_fd(), &name, Path::new(""))?;
    let entry = WalkEntry {
        rel: Path::new(""),
        meta,
        parent: parent.as_fd(),
        name: &name,
    };
    if visit(&entry)? != Visit::Continue || meta.kind != Kind::Dir {
        return Ok(());
    }
    let mut stack = vec![open_level(parent.as_fd(), &name, PathBuf::new())?];
    while let Some(level) = stack.last_mut() {
        let Some(child) = level.names.next() else {
            stack.pop();
            continue;
        };
        let rel = level.rel.join(&child);
        let meta = stat_at(level.fd.as_fd(), &child, &rel)?;
        let entry = WalkEntry {
            rel: &rel,
            meta,
            parent: level.fd.as_fd(),
            name: &child,
        };
        if visit(&entry)? == Visit::Continue && meta.kind == Kind::Dir {
            let next = open_level(level.fd.as_fd(), &child, rel.clone())?;
            stack.push(next);
        }
    }
    Ok(())
}

fn open_in(root: &Root, rel: &Path) -> Result<OwnedFd, FsError> {
    let rel_or_dot = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root.as_fd(),
        rel_or_dot,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(FsError::io("open", rel))
}

fn stat_at(dir: BorrowedFd<'_>, name: &OsStr, rel: &Path) -> Result<FileMeta, FsError> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| FileMeta::from_stat(&st))
        .map_err(FsError::io("stat", rel))
}

fn open_level(parent: BorrowedFd<'_>, name: &OsStr, rel: PathBuf) -> Result<Level, FsError> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(FsError::io("open", &rel))?;
    let listing = rustix::io::fcntl_dupfd_cloexec(&fd, 0).map_err(FsError::io("list", &rel))?;
    let names = list_dir(listing, &rel)?;
    Ok(Level {
        fd,
        rel,
        names: names.into_iter(),
    })
}
