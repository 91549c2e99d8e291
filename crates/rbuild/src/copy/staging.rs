//! The staging tree of a COPY/ADD step: exactly what the step's layer will hold. Parent
//! directories that already exist in the stage keep their metadata; new ones are created 0755
//! and owned by the `--chown` owner (root otherwise).

use crate::error::BuildError;
use filetime::FileTime;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Metadata to give a staged entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryMeta {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
}

/// A tree being staged for one layer.
pub struct Staging<'a> {
    root: PathBuf,
    rootfs: Option<&'a Path>,
    new_dir_owner: (u32, u32),
    new_dir_mode: u32,
    time: i64,
    /// Directory modes and mtimes, set last: writing children changes the mtime, and a mode
    /// without `w`/`x` would stop an unprivileged builder from writing them.
    dir_times: Vec<(PathBuf, u32, FileTime)>,
}

impl<'a> Staging<'a> {
    /// A staging tree at `root` (an empty directory), over the stage's `rootfs` when known.
    pub fn new(
        root: PathBuf,
        rootfs: Option<&'a Path>,
        new_dir_owner: (u32, u32),
        time: i64,
    ) -> Self {
        Staging {
            root,
            rootfs,
            new_dir_owner,
            new_dir_mode: 0o755,
            time,
            dir_times: Vec::new(),
        }
    }

    /// The mode of directories this step creates (0755 unless `--chmod` says otherwise:
    /// BuildKit ≥ 0.21 gives them the `--chmod` mode too).
    pub fn set_new_dir_mode(&mut self, mode: u32) {
        self.new_dir_mode = mode;
    }

    /// The staging directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where absolute image path `abs` lives in the staging tree.
    pub fn path_of(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Whether `abs` is a directory in the stage's filesystem (symlinks resolved inside it).
    pub fn is_dir_in_stage(&self, abs: &str) -> bool {
        let staged = self.path_of(abs);
        if staged.is_dir() {
            return true;
        }
        match self.rootfs {
            Some(rootfs) => resolve_in_root(rootfs, abs)
                .is_some_and(|p| rootfs.join(p.trim_start_matches('/')).is_dir()),
            None => false,
        }
    }

    /// Resolves symlinks of `abs` in the stage's filesystem (so COPY into `/bin` where `/bin`
    /// links to `usr/bin` writes under `/usr/bin`).
    pub fn resolve(&self, abs: &str) -> String {
        match self.rootfs {
            Some(rootfs) => resolve_in_root(rootfs, abs).unwrap_or_else(|| abs.to_string()),
            None => abs.to_string(),
        }
    }

    /// Makes sure directory `abs` and its parents exist in the staging tree. Returns true when
    /// `abs` itself is new (neither staged nor in the stage).
    pub fn ensure_dir(&mut self, abs: &str) -> Result<bool, BuildError> {
        let mut current = String::new();
        let mut created_last = false;
        for part in abs.split('/').filter(|p| !p.is_empty()) {
            current.push('/');
            current.push_str(part);
            let staged = self.path_of(&current);
            if staged.is_dir() {
                created_last = false;
                continue;
            }
            let existing = self
                .rootfs
                .map(|r| r.join(current.trim_start_matches('/')))
                .and_then(|p| fs::symlink_metadata(p).ok())
                .filter(|m| m.is_dir());
            fs::create_dir(&staged).map_err(BuildError::io("create", &staged))?;
            let meta = match existing {
                Some(m) => {
                    created_last = false;
                    EntryMeta {
                        mode: m.mode() & 0o7777,
                        uid: m.uid(),
                        gid: m.gid(),
                        mtime: (m.mtime(), m.mtime_nsec() as u32),
                    }
                }
                None => {
                    created_last = true;
                    EntryMeta {
                        mode: self.new_dir_mode,
                        uid: self.new_dir_owner.0,
                        gid: self.new_dir_owner.1,
                        mtime: (self.time, 0),
                    }
                }
            };
            self.set_meta(&staged, meta, true)?;
        }
        Ok(created_last)
    }

    /// Sets the metadata of a directory already staged (the directory a COPY copies into).
    pub fn set_dir_meta(&mut self, abs: &str, meta: EntryMeta) -> Result<(), BuildError> {
        let p = self.path_of(abs);
        self.set_meta(&p, meta, true)
    }

    /// Stages a regular file with `data` read from `source`.
    pub fn put_file(
        &mut self,
        abs: &str,
        source: &mut dyn std::io::Read,
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        let parent = parent_of(abs);
        self.ensure_dir(&parent)?;
        let target = self.path_of(abs);
        remove_existing(&target)?;
        let mut out = fs::File::create(&target).map_err(BuildError::io("create", &target))?;
        std::io::copy(source, &mut out).map_err(BuildError::io("write", &target))?;
        drop(out);
        self.set_meta(&target, meta, false)
    }

    /// Stages a symbolic link.
    pub fn put_symlink(
        &mut self,
        abs: &str,
        link_target: &Path,
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        let parent = parent_of(abs);
        self.ensure_dir(&parent)?;
        let target = self.path_of(abs);
        remove_existing(&target)?;
        std::os::unix::fs::symlink(link_target, &target)
            .map_err(BuildError::io("symlink", &target))?;
        set_owner(&target, meta)?;
        let t = FileTime::from_unix_time(meta.mtime.0, meta.mtime.1);
        filetime::set_symlink_file_times(&target, t, t)
            .map_err(BuildError::io("set times of", &target))
    }

    /// Sets the directory mtimes recorded while staging; call once everything is staged.
    pub fn finish(mut self) -> Result<PathBuf, BuildError> {
        // Deepest first, so a parent's mode never locks out its children.
        self.dir_times
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (path, mode, t) in self.dir_times.drain(..) {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(BuildError::io("chmod", &path))?;
            filetime::set_file_times(&path, t, t).map_err(BuildError::io("set times of", &path))?;
        }
        Ok(self.root)
    }

    fn set_meta(&mut self, path: &Path, meta: EntryMeta, is_dir: bool) -> Result<(), BuildError> {
        set_owner(path, meta)?;
        let t = FileTime::from_unix_time(meta.mtime.0, meta.mtime.1);
        if is_dir {
            self.dir_times.retain(|(p, _, _)| p != path);
            self.dir_times.push((path.to_path_buf(), meta.mode, t));
        } else {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
                .map_err(BuildError::io("chmod", path))?;
            filetime::set_file_times(path, t, t).map_err(BuildError::io("set times of", path))?;
        }
        Ok(())
    }
}

/// Gives `path` its owner. Without the privilege to (a builder that is not root), the entry
/// keeps the builder's ids: that is logged, since the layer will then carry them.
fn set_owner(path: &Path, meta: EntryMeta) -> Result<(), BuildError> {
    match std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                path = %path.display(),
                uid = meta.uid,
                gid = meta.gid,
                "not privileged to set the owner of a staged entry; it keeps the builder's"
            );
            Ok(())
        }
        Err(e) => Err(BuildError::io("chown", path)(e)),
    }
}

fn remove_existing(path: &Path) -> Result<(), BuildError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(BuildError::io("replace", path)),
        Ok(_) => fs::remove_file(path).map_err(BuildError::io("replace", path)),
        Err(_) => Ok(()),
    }
}

/// The parent of an absolute path (`/` for `/x`).
pub fn parent_of(abs: &str) -> String {
    match abs.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((p, _)) => p.into(),
    }
}

/// Follows symlinks of absolute `abs` inside `rootfs`, never leaving it (at most 40 links).
pub fn resolve_in_root(rootfs: &Path, abs: &str) -> Option<String> {
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: Vec<String> = abs
        .split('/')
        .filter(|p| !p.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = rootfs.join(resolved.join("/")).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let target = fs::read_link(&candidate).ok()?;
                let target = target.to_string_lossy().to_string();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for p in target.split('/').filter(|p| !p.is_empty()).rev() {
                    pending.push(p.to_string());
                }
            }
            _ => resolved.push(part),
        }
    }
    Some(format!("/{}", resolved.join("/")))
}
