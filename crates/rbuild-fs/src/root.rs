//! [`Root`]: a directory handle every path is resolved inside of, by the kernel
//! (`openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`): `..` stops at the root, an
//! absolute symlink target starts again at the root, `/proc` magic links are refused. Reads
//! follow symlinks only inside the root; writes never follow the last component (they replace
//! what is there).

use crate::error::FsError;
use crate::meta::{FileMeta, Kind};
use crate::resolve::{resolve_in_root, Node};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// A directory that paths are resolved inside of.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Metadata to give an entry with [`Root::set_meta`]; `None` fields are left alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetMeta {
    /// Permission bits (ignored for symlinks, which have none).
    pub mode: Option<u32>,
    /// Owner and group.
    pub owner: Option<(u32, u32)>,
    /// Modification (and access) time: seconds, nanoseconds.
    pub mtime: Option<(i64, u32)>,
}

impl Root {
    /// Opens the directory `path` (given by the operator: followed as the OS does) as a root.
    pub fn open(path: impl AsRef<Path>) -> Result<Root, FsError> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(FsError::io("open", path))?;
        let path = located(&fd).unwrap_or_else(|_| path.to_path_buf());
        Ok(Root { fd, path })
    }

    /// Where the root is on the host (for messages, and for code that must hand a path to
    /// another process).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory handle.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory `rel` (symlinks followed inside this root) as a root of its own.
    pub fn open_subdir(&self, rel: impl AsRef<Path>) -> Result<Root, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty(), "open")?;
        let path = located(&fd).map_err(FsError::io("locate", rel))?;
        Ok(Root { fd, path })
    }

    /// Opens `rel` with `flags` through `openat2` inside the root.
    fn at(
        &self,
        rel: &Path,
        flags: OFlags,
        mode: Mode,
        op: &'static str,
    ) -> Result<OwnedFd, FsError> {
        let rel_or_dot: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        rustix::fs::openat2(&self.fd, rel_or_dot, flags | OFlags::CLOEXEC, mode, RESOLVE)
            .map_err(FsError::io(op, rel))
    }

    /// The metadata of `rel` itself (a symlink is not followed; its parents are, inside the
    /// root).
    pub fn symlink_metadata(&self, rel: impl AsRef<Path>) -> Result<FileMeta, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(rel, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty(), "stat")?;
        fstat(&fd, rel)
    }

    /// The metadata of what `rel` names, symlinks followed inside the root.
    pub fn metadata(&self, rel: impl AsRef<Path>) -> Result<FileMeta, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(rel, OFlags::PATH, Mode::empty(), "stat")?;
        fstat(&fd, rel)
    }

    /// The target of the symlink `rel`.
    pub fn read_link(&self, rel: impl AsRef<Path>) -> Result<PathBuf, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(
            rel,
            OFlags::PATH | OFlags::NOFOLLOW,
            Mode::empty(),
            "read link",
        )?;
        read_link_fd(fd.as_fd(), OsStr::new(""), rel)
    }

    /// Opens the regular file `rel` for reading, symlinks followed inside the root. Anything
    /// else (a fifo, a device) is refused without blocking.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<File, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(
            rel,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
            "open",
        )?;
        if fstat(&fd, rel)?.kind != Kind::File {
            return Err(FsError::WrongType {
                path: rel.to_path_buf(),
                what: "not a regular file",
            });
        }
        Ok(File::from(fd))
    }

    /// The names in directory `rel` (symlinks followed inside the root), sorted by bytes.
    pub fn read_dir(&self, rel: impl AsRef<Path>) -> Result<Vec<OsString>, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
            "list",
        )?;
        list_dir(fd, rel)
    }

    /// What `rel` (a symlink-free path) is, for [`resolve_in_root`].
    pub fn lookup(&self, rel: &Path) -> Result<Node, FsError> {
        match self.symlink_metadata(rel) {
            Ok(m) => Ok(match m.kind {
                Kind::Dir => Node::Dir,
                Kind::Symlink => Node::Symlink(self.read_link(rel)?),
                Kind::File | Kind::Special => Node::Other,
            }),
            Err(FsError::Io { source, .. })
                if [rustix::io::Errno::NOENT, rustix::io::Errno::NOTDIR]
                    .iter()
                    .any(|e| source.raw_os_error() == Some(e.raw_os_error())) =>
            {
                Ok(Node::Missing)
            }
            Err(e) => Err(e),
        }
    }

    /// `rel` resolved inside the root to a path with no symlink in it (the last component
    /// followed when `follow_final`), relative to the root.
    pub fn resolve(&self, rel: impl AsRef<Path>, follow_final: bool) -> Result<PathBuf, FsError> {
        resolve_in_root(rel.as_ref(), follow_final, &mut |p| self.lookup(p))
    }

    /// The directory holding `rel` (opened inside the root) and `rel`'s last component.
    fn parent_of<'p>(&self, rel: &'p Path) -> Result<(OwnedFd, &'p OsStr), FsError> {
        let name = rel.file_name().ok_or_else(|| FsError::WrongType {
            path: rel.to_path_buf(),
            what: "not a name in a directory",
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.at(
            parent,
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
            "open",
        )?;
        Ok((fd, name))
    }

    /// Creates directory `rel` (its parent must exist) with `mode`.
    pub fn create_dir(&self, rel: impl AsRef<Path>, mode: u32) -> Result<(), FsError> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(mode))
            .map_err(FsError::io("create", rel))
    }

    /// Creates the regular file `rel`, which must not exist (never through a symlink).
    pub fn create_file(&self, rel: impl AsRef<Path>, mode: u32) -> Result<File, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(
            rel,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
            Mode::from_raw_mode(mode),
            "create",
        )?;
        Ok(File::from(fd))
    }

    /// Creates the symlink `rel` pointing at `target` (stored as given, never followed here).
    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<Path>) -> Result<(), FsError> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        rustix::fs::symlinkat(target.as_ref(), &parent, name).map_err(FsError::io("symlink", rel))
    }

    /// Removes `rel` whatever it is (a directory with everything below it); a missing `rel`
    /// is not an error. Symlinks are removed, never followed.
    pub fn remove(&self, rel: impl AsRef<Path>) -> Result<(), FsError> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        remove_at(parent.as_fd(), name, rel)
    }

    /// Moves `rel` (whatever it is, a whole directory included) to `target_rel` under the
    /// root `target`, which must be on the same file system; what is at `target_rel` must be
    /// missing or an empty directory (as `renameat` wants). Neither last component is followed.
    pub fn rename_to(
        &self,
        rel: impl AsRef<Path>,
        target: &Root,
        target_rel: impl AsRef<Path>,
    ) -> Result<(), FsError> {
        let (rel, target_rel) = (rel.as_ref(), target_rel.as_ref());
        let (from_parent, from_name) = self.parent_of(rel)?;
        let (to_parent, to_name) = target.parent_of(target_rel)?;
        rustix::fs::renameat(&from_parent, from_name, &to_parent, to_name)
            .map_err(FsError::io("move", rel))
    }

    /// Sets the metadata of `rel` itself (a symlink's owner and time, never its target's).
    pub fn set_meta(&self, rel: impl AsRef<Path>, meta: SetMeta) -> Result<(), FsError> {
        let rel = rel.as_ref();
        let probe = self.at(rel, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty(), "open")?;
        let kind = fstat(&probe, rel)?.kind;
        if kind == Kind::Symlink || kind == Kind::Special {
            let (parent, name) = self.parent_of(rel)?;
            if let Some((uid, gid)) = meta.owner {
                rustix::fs::chownat(
                    &parent,
                    name,
                    Some(uid_of(uid)),
                    Some(gid_of(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(FsError::io("chown", rel))?;
            }
            if let Some(t) = meta.mtime {
                rustix::fs::utimensat(&parent, name, &timestamps(t), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(FsError::io("set times of", rel))?;
            }
            return Ok(());
        }
        let fd = self.at(
            rel,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
            "open",
        )?;
        set_meta_of(&fd, meta, rel)
    }

    /// Sets extended attributes on the regular file or directory `rel` (never through a
    /// symlink). Each one that cannot be set is returned with its error, for the caller to
    /// judge.
    pub fn set_xattrs(
        &self,
        rel: impl AsRef<Path>,
        xattrs: &[(OsString, Vec<u8>)],
    ) -> Result<Vec<(OsString, std::io::Error)>, FsError> {
        let rel = rel.as_ref();
        let fd = self.at(
            rel,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
            "open",
        )?;
        let mut failed = Vec::new();
        for (name, value) in xattrs {
            if let Err(e) = rustix::fs::fsetxattr(
                &fd,
                name.as_os_str(),
                value,
                rustix::fs::XattrFlags::empty(),
            ) {
                failed.push((name.clone(), e.into()));
            }
        }
        Ok(failed)
    }
}

/// Sets `meta` on the open regular file or directory `fd` (`rel` names it in errors): the
/// owner first (a `chown` clears setuid bits), then the mode, then the times.
pub fn set_meta_of(fd: &impl AsFd, meta: SetMeta, rel: &Path) -> Result<(), FsError> {
    if let Some((uid, gid)) = meta.owner {
        rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid)))
            .map_err(FsError::io("chown", rel))?;
    }
    if let Some(mode) = meta.mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))
            .map_err(FsError::io("chmod", rel))?;
    }
    if let Some(t) = meta.mtime {
        rustix::fs::futimens(fd, &timestamps(t)).map_err(FsError::io("set times of", rel))?;
    }
    Ok(())
}

/// The kernel's view of where the open directory `fd` is (never a second resolution).
fn located(fd: &OwnedFd) -> rustix::io::Result<PathBuf> {
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::readlink(proc.as_str(), Vec::new())
        .map(|c| PathBuf::from(OsString::from_vec(c.into_bytes())))
}

/// The extended attributes of an open file (name, value).
pub fn read_xattrs(file: &impl AsFd) -> std::io::Result<Vec<(OsString, Vec<u8>)>> {
    let size = rustix::fs::flistxattr_query(file)?;
    let mut list = vec![0u8; size];
    let n = rustix::fs::flistxattr(file, &mut list[..])?;
    list.truncate(n);
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let size = match rustix::fs::fgetxattr_query(file, name) {
            Ok(size) => size,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; size];
        let n = rustix::fs::fgetxattr(file, name, &mut value[..])?;
        value.truncate(n);
        out.push((name.to_os_string(), value));
    }
    Ok(out)
}

pub(crate) fn fstat(fd: &impl AsFd, rel: &Path) -> Result<FileMeta, FsError> {
    rustix::fs::fstat(fd)
        .map(|st| FileMeta::from_stat(&st))
        .map_err(FsError::io("stat", rel))
}

pub(crate) fn read_link_fd(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    rel: &Path,
) -> Result<PathBuf, FsError> {
    rustix::fs::readlinkat(dir, name, Vec::new())
        .map(|c| PathBuf::from(OsString::from_vec(c.into_bytes())))
        .map_err(FsError::io("read link", rel))
}

/// The entries of the open directory `fd`, sorted by bytes; every read error reported.
pub(crate) fn list_dir(fd: OwnedFd, rel: &Path) -> Result<Vec<OsString>, FsError> {
    let dir = rustix::fs::Dir::new(fd).map_err(FsError::io("list", rel))?;
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(FsError::io("list", rel))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort();
    Ok(names)
}

fn remove_at(parent: BorrowedFd<'_>, name: &OsStr, rel: &Path) -> Result<(), FsError> {
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => FileMeta::from_stat(&st),
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(FsError::io("stat", rel)(e)),
    };
    if st.kind == Kind::Dir {
        if st.mode & 0o700 != 0o700 {
            // A tree unpacked from a layer may hold `0500` or `0000` directories; their owner
            // (the builder) may open them up to empty them. `statat` just saw a directory.
            rustix::fs::chmodat(parent, name, Mode::from_raw_mode(0o700), AtFlags::empty())
                .map_err(FsError::io("chmod", rel))?;
        }
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(FsError::io("open", rel))?;
        let dup = rustix::io::fcntl_dupfd_cloexec(&dir, 0).map_err(FsError::io("open", rel))?;
        for child in list_dir(dup, rel)? {
            remove_at(dir.as_fd(), &child, &rel.join(&child))?;
        }
        rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(FsError::io("remove", rel))
    } else {
        rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(FsError::io("remove", rel))
    }
}

fn uid_of(uid: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(uid)
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

fn timestamps((secs, nsecs): (i64, u32)) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsecs.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}
