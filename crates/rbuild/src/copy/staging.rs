//! The staging tree of a COPY/ADD step: exactly what the step's layer will hold. Parent
//! directories that already exist in the stage keep their metadata; new ones are created 0755
//! and owned by the `--chown` owner (root otherwise).
//!
//! Every path is resolved in the view of the staging tree over the stage's filesystem, inside
//! that view's root: a symlink of the stage, or one an earlier source staged, is followed as it
//! would be inside the container, never on the host. Writes go through [`rbuild_fs::Root`]
//! handles and never follow their last component, so nothing is created, replaced or chmod-ed
//! outside the staging tree. Owners are recorded for the layer writer as well as set on disk
//! (a builder that is not root cannot set them, and the layer must still carry them).

use crate::error::BuildError;
use rbuild_fs::{FsError, Node, Root, SetMeta};
use rbuild_layer::OwnerMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

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
    /// The staging tree's handle, opened at first use (callers create the directory after
    /// [`Staging::new`]).
    tree: OnceLock<Root>,
    /// The stage's filesystem's handle, opened at first use.
    stage: OnceLock<Option<Root>>,
    new_dir_owner: (u32, u32),
    new_dir_mode: u32,
    time: i64,
    /// Directory modes and mtimes, set last: writing children changes the mtime, and a mode
    /// without `w`/`x` would stop an unprivileged builder from writing them.
    dir_times: std::collections::BTreeMap<PathBuf, (u32, (i64, u32))>,
    /// Paths known to be real directories of the staging tree (made or checked by this
    /// staging, and not replaced since): resolving through them needs no system call.
    known_dirs: std::collections::HashSet<PathBuf>,
    /// The owner of every staged entry, by path relative to the staging tree.
    owners: OwnerMap,
    /// The owners of the stage's directories as its layers record them, when the files on
    /// disk cannot say (a builder that is not root could not give them their owners).
    stage_owners: Option<OwnerMap>,
    /// The copy buffer of [`Staging::put_file`], reused for every file.
    buffer: Vec<u8>,
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
            tree: OnceLock::new(),
            stage: OnceLock::new(),
            new_dir_owner,
            new_dir_mode: 0o755,
            time,
            dir_times: Default::default(),
            known_dirs: Default::default(),
            owners: OwnerMap::new(),
            stage_owners: None,
            buffer: Vec::new(),
        }
    }

    /// Takes the owners of the stage's existing directories from `owners` (paths relative to
    /// the root, as in the layers) rather than from the files on disk.
    pub fn set_stage_owners(&mut self, owners: OwnerMap) {
        self.stage_owners = Some(owners);
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

    /// Where absolute image path `abs` lives in the staging tree, lexically (symlinks not
    /// resolved: for messages only).
    pub fn path_of(&self, abs: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative(abs.as_ref()))
    }

    fn tree(&self) -> Result<&Root, BuildError> {
        if let Some(tree) = self.tree.get() {
            return Ok(tree);
        }
        let opened = Root::open(&self.root).map_err(BuildError::fs(&self.root))?;
        Ok(self.tree.get_or_init(|| opened))
    }

    fn stage(&self) -> Result<Option<&Root>, BuildError> {
        if let Some(stage) = self.stage.get() {
            return Ok(stage.as_ref());
        }
        let opened = match self.rootfs {
            Some(dir) => Some(Root::open(dir).map_err(BuildError::fs(dir))?),
            None => None,
        };
        Ok(self.stage.get_or_init(|| opened).as_ref())
    }

    fn fs_error(&self) -> impl FnOnce(FsError) -> BuildError + '_ {
        BuildError::fs(&self.root)
    }

    /// `abs` resolved in the staging tree over the stage, relative to the root, with no
    /// symlink left in it (the last component followed when `follow_final`).
    fn resolved(&self, abs: &Path, follow_final: bool) -> Result<PathBuf, BuildError> {
        let tree = self.tree()?;
        let stage = self.stage()?;
        let known = &self.known_dirs;
        rbuild_fs::resolve_in_root(abs, follow_final, &mut |rel| {
            if known.contains(rel) {
                return Ok(Node::Dir);
            }
            match tree.lookup(rel)? {
                Node::Missing => stage.map_or(Ok(Node::Missing), |s| s.lookup(rel)),
                found => Ok(found),
            }
        })
        .map_err(self.fs_error())
    }

    /// Whether `abs` is a directory in the stage's filesystem or the staging tree (symlinks
    /// resolved inside them).
    pub fn is_dir_in_stage(&self, abs: impl AsRef<Path>) -> bool {
        let Ok(rel) = self.resolved(abs.as_ref(), true) else {
            return false;
        };
        let staged = self.tree().ok().and_then(|t| t.symlink_metadata(&rel).ok());
        match staged {
            Some(m) => m.is_dir(),
            None => {
                matches!(self.stage(), Ok(Some(s)) if s.symlink_metadata(&rel).is_ok_and(|m| m.is_dir()))
            }
        }
    }

    /// Resolves symlinks of `abs` in the stage's filesystem and the staging tree (so COPY into
    /// `/bin` where `/bin` links to `usr/bin` writes under `/usr/bin`); the result is absolute
    /// and never leaves the image's root.
    pub fn resolve(&self, abs: impl AsRef<Path>) -> Result<PathBuf, BuildError> {
        Ok(Path::new("/").join(self.resolved(abs.as_ref(), true)?))
    }

    /// Refuses to copy a directory of a source tree onto `rel` below the directory `base`
    /// when the stage has a symlink there: BuildKit resolves only the destination named in the
    /// Dockerfile (fs.RootPath); inside the copied tree fsutil's `copyDirectoryOnly` finds a
    /// non-directory and fails with "cannot copy to non-directory" (neither following the
    /// link nor replacing it), as with `COPY rootfs /` onto an image whose `/bin -> usr/bin`.
    pub fn refuse_image_link(&self, base: impl AsRef<Path>, rel: &Path) -> Result<(), BuildError> {
        let Some(stage) = self.stage()? else {
            return Ok(());
        };
        let at = self.resolved(base.as_ref(), true)?.join(rel);
        if self.known_dirs.contains(&at) {
            return Ok(());
        }
        match stage.symlink_metadata(&at) {
            Ok(m) if m.is_symlink() => Err(self.fs_error()(FsError::WrongType {
                path: at,
                what: "cannot copy to non-directory (a symlink in the image)",
            })),
            _ => Ok(()),
        }
    }

    /// Makes sure directory `abs` and its parents exist in the staging tree. Returns true when
    /// `abs` itself is new (neither staged nor in the stage).
    pub fn ensure_dir(&mut self, abs: impl AsRef<Path>) -> Result<bool, BuildError> {
        let rel = self.resolved(abs.as_ref(), true)?;
        self.ensure_rel_dir(&rel)
    }

    fn ensure_rel_dir(&mut self, rel: &Path) -> Result<bool, BuildError> {
        let mut current = PathBuf::new();
        let mut created_last = false;
        for part in rel.components() {
            current.push(part);
            if self.known_dirs.contains(&current) {
                created_last = false;
                continue;
            }
            match self.tree()?.symlink_metadata(&current) {
                Ok(m) if m.is_dir() => {
                    created_last = false;
                    self.known_dirs.insert(current.clone());
                    continue;
                }
                Ok(_) => {
                    return Err(self.fs_error()(FsError::WrongType {
                        path: current,
                        what: "cannot copy into a non-directory",
                    }))
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(self.fs_error()(e)),
            }
            let existing = match self.stage()? {
                Some(stage) => stage.symlink_metadata(&current).ok().filter(|m| m.is_dir()),
                None => None,
            };
            self.tree()?
                .create_dir(&current, 0o700)
                .map_err(self.fs_error())?;
            self.known_dirs.insert(current.clone());
            let meta = match existing {
                Some(m) => {
                    created_last = false;
                    let (uid, gid) = self
                        .stage_owners
                        .as_ref()
                        .and_then(|o| o.get(&current).copied())
                        .unwrap_or((m.uid, m.gid));
                    EntryMeta {
                        mode: m.permissions(),
                        uid,
                        gid,
                        mtime: (m.mtime, m.mtime_nsec),
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
            self.set_meta(&current, meta, true)?;
        }
        Ok(created_last)
    }

    /// Sets the metadata of a directory already staged (the directory a COPY copies into).
    pub fn set_dir_meta(
        &mut self,
        abs: impl AsRef<Path>,
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        let rel = self.resolved(abs.as_ref(), true)?;
        self.set_meta(&rel, meta, true)
    }

    /// The staged place of the new entry `abs`: its parents resolved and created, whatever
    /// was staged there before removed (a symlink is replaced, never written through).
    fn new_entry(&mut self, abs: &Path) -> Result<PathBuf, BuildError> {
        let rel = self.entry_place(abs)?;
        self.clear_place(&rel)?;
        Ok(rel)
    }

    /// The staged place of the new entry `abs`, its parents resolved and created; whatever
    /// is there is left (see [`Staging::clear_place`]).
    fn entry_place(&mut self, abs: &Path) -> Result<PathBuf, BuildError> {
        let rel = self.resolved(abs, false)?;
        if rel.file_name().is_none() {
            return Err(self.fs_error()(FsError::WrongType {
                path: rel,
                what: "the root cannot be replaced by a file",
            }));
        }
        self.ensure_rel_dir(rel.parent().unwrap_or(Path::new("")))?;
        Ok(rel)
    }

    /// Removes what was staged at `rel` (a symlink is removed, never written through).
    fn clear_place(&mut self, rel: &Path) -> Result<(), BuildError> {
        self.tree()?.remove(rel).map_err(self.fs_error())?;
        if self.known_dirs.remove(rel) {
            self.known_dirs.retain(|d| !d.starts_with(rel));
            self.dir_times.retain(|d, _| !d.starts_with(rel));
        }
        Ok(())
    }

    /// Stages a regular file with `data` read from `source`.
    pub fn put_file(
        &mut self,
        abs: impl AsRef<Path>,
        source: &mut dyn std::io::Read,
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        // Created exclusively (never through a symlink); only when something was staged there
        // already is it removed first, which most files need not pay for.
        let rel = self.entry_place(abs.as_ref())?;
        let mut out = match self.tree()?.create_file(&rel, 0o600) {
            Err(FsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                self.clear_place(&rel)?;
                self.tree()?.create_file(&rel, 0o600)
            }
            other => other,
        }
        .map_err(self.fs_error())?;
        let written = BuildError::io("write", self.root.join(&rel));
        copy_data(source, &mut out, &mut self.buffer).map_err(written)?;
        // The new file's metadata through its open handle (no second resolution).
        self.owners.insert(rel.clone(), (meta.uid, meta.gid));
        let set = SetMeta {
            mode: Some(meta.mode),
            owner: Some((meta.uid, meta.gid)),
            mtime: Some(meta.mtime),
        };
        set_with_owner(&rel, set, |set| rbuild_fs::set_meta_of(&out, set, &rel))
            .map_err(self.fs_error())
    }

    /// Sets extended attributes on the staged entry `abs`; those that cannot be set are
    /// returned with their error.
    pub fn set_xattrs(
        &self,
        abs: impl AsRef<Path>,
        xattrs: &[(OsString, Vec<u8>)],
    ) -> Result<Vec<(OsString, std::io::Error)>, BuildError> {
        let rel = self.resolved(abs.as_ref(), false)?;
        self.tree()?
            .set_xattrs(&rel, xattrs)
            .map_err(self.fs_error())
    }

    /// Stages a symbolic link.
    pub fn put_symlink(
        &mut self,
        abs: impl AsRef<Path>,
        link_target: &Path,
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        let rel = self.new_entry(abs.as_ref())?;
        self.tree()?
            .symlink(&rel, link_target)
            .map_err(self.fs_error())?;
        self.set_meta(&rel, meta, false)
    }

    /// Sets the directory modes and mtimes recorded while staging; call once everything is
    /// staged.
    pub fn finish(self) -> Result<PathBuf, BuildError> {
        self.finish_with_owners().map(|(root, _)| root)
    }

    /// [`Staging::finish`], also returning the owner of every staged entry (relative paths),
    /// for [`rbuild_layer::LayerWriter::write_with_owners`].
    pub fn finish_with_owners(mut self) -> Result<(PathBuf, OwnerMap), BuildError> {
        // Deepest first, so a parent's mode never locks out its children.
        let mut dirs: Vec<_> = std::mem::take(&mut self.dir_times).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, (mode, mtime)) in dirs {
            let meta = SetMeta {
                mode: Some(mode),
                owner: None,
                mtime: Some(mtime),
            };
            self.tree()?.set_meta(&rel, meta).map_err(self.fs_error())?;
        }
        Ok((self.root, self.owners))
    }

    fn set_meta(&mut self, rel: &Path, meta: EntryMeta, is_dir: bool) -> Result<(), BuildError> {
        self.owners.insert(rel.to_path_buf(), (meta.uid, meta.gid));
        let set = if is_dir {
            self.dir_times
                .insert(rel.to_path_buf(), (meta.mode, meta.mtime));
            SetMeta {
                owner: Some((meta.uid, meta.gid)),
                ..SetMeta::default()
            }
        } else {
            SetMeta {
                mode: Some(meta.mode),
                owner: Some((meta.uid, meta.gid)),
                mtime: Some(meta.mtime),
            }
        };
        let tree = self.tree()?;
        set_with_owner(rel, set, |set| tree.set_meta(rel, set)).map_err(self.fs_error())
    }
}

/// Copies all of `source` into `out` through `buffer` (made 256 KiB on first use: an 8 KiB
/// buffer, `io::copy`'s, costs thousands of system calls on a large context).
fn copy_data(
    source: &mut dyn std::io::Read,
    out: &mut impl std::io::Write,
    buffer: &mut Vec<u8>,
) -> std::io::Result<()> {
    if buffer.is_empty() {
        buffer.resize(256 * 1024, 0);
    }
    loop {
        let n = match source.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buffer[..n])?;
    }
}

/// Sets `set` on `rel` with `apply` (by path or through an open handle), its owner included.
/// Without the privilege to `chown` (a builder that is not root), the entry keeps the
/// builder's ids on disk; the layer still gets the right ones from the owner map.
fn set_with_owner(
    rel: &Path,
    set: SetMeta,
    apply: impl Fn(SetMeta) -> Result<(), FsError>,
) -> Result<(), FsError> {
    match apply(set) {
        Ok(()) => Ok(()),
        Err(FsError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            tracing::debug!(
                path = %rel.display(),
                "owner recorded for the layer only (not privileged to chown)"
            );
            apply(SetMeta { owner: None, ..set })
        }
        Err(e) => Err(e),
    }
}

/// `abs` without its root: the normal components only.
fn relative(abs: &Path) -> PathBuf {
    abs.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Follows symlinks of absolute `abs` inside `rootfs`, never leaving it (at most
/// [`rbuild_fs::MAX_SYMLINKS`] links); `None` when it cannot be resolved.
pub fn resolve_in_root(rootfs: &Path, abs: &str) -> Option<String> {
    let root = Root::open(rootfs).ok()?;
    let rel = root.resolve(abs, true).ok()?;
    Some(Path::new("/").join(rel).to_string_lossy().into_owned())
}
