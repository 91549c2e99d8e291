//! Mount points the sandbox creates inside the step's root, remembered so that they can be
//! removed after the step (while still empty): a mount target is never part of the layer.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// The paths created so far, in creation order (parents before children), and the times of
/// the existing directories they were created in, restored after removal so that such a
/// directory, copied up by the overlay, is left as it was in the lower layer.
#[derive(Debug, Default)]
pub(crate) struct Stubs {
    created: Vec<PathBuf>,
    parent_times: Vec<(PathBuf, TimeSpec, TimeSpec)>,
}

fn missing(p: &Path) -> bool {
    fs::symlink_metadata(p).is_err()
}

impl Stubs {
    /// Remembers the times of `parent` (an existing directory) before a stub is created in it.
    fn note_parent(&mut self, parent: &Path) {
        if self.created.iter().any(|c| c == parent)
            || self.parent_times.iter().any(|(p, ..)| p == parent)
        {
            return;
        }
        if let Ok(st) = nix::sys::stat::lstat(parent) {
            self.parent_times.push((
                parent.to_owned(),
                TimeSpec::new(st.st_atime, st.st_atime_nsec),
                TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            ));
        }
    }

    /// Makes `path` (absolute, inside the current root) an existing directory, creating the
    /// missing components (0755) and remembering them.
    pub(crate) fn dir(&mut self, path: &Path) -> io::Result<()> {
        let mut cur = PathBuf::from("/");
        for c in path.components() {
            if let Component::Normal(name) = c {
                cur.push(name);
                if missing(&cur) {
                    if let Some(parent) = cur.parent() {
                        let parent = parent.to_owned();
                        self.note_parent(&parent);
                    }
                    fs::DirBuilder::new().mode(0o755).create(&cur)?;
                    self.created.push(cur.clone());
                }
            }
        }
        Ok(())
    }

    /// Makes `path` an existing file (for a file bind mount), creating its parents as
    /// [`Stubs::dir`] does and an empty 0644 file when missing.
    pub(crate) fn file(&mut self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            self.dir(parent)?;
        }
        // A dangling symlink is followed: the file appears where the link points, as Docker
        // does for /etc/resolv.conf links.
        if fs::metadata(path).is_err() {
            if let Some(parent) = path.parent() {
                self.note_parent(parent);
            }
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)?;
            self.created.push(path.to_owned());
        }
        Ok(())
    }

    /// Removes, deepest first, every created path that is still an empty directory or an empty
    /// regular file. Call after everything mounted on them is unmounted.
    pub(crate) fn remove_unused(&self) -> Vec<(PathBuf, io::Error)> {
        let mut errors = Vec::new();
        for p in self.created.iter().rev() {
            let Ok(md) = fs::symlink_metadata(p) else {
                continue;
            };
            let result = if md.is_dir() {
                match fs::read_dir(p).map(|mut d| d.next().is_none()) {
                    Ok(true) => fs::remove_dir(p),
                    _ => Ok(()),
                }
            } else if md.is_file() && md.len() == 0 {
                fs::remove_file(p)
            } else {
                Ok(())
            };
            if let Err(e) = result {
                errors.push((p.clone(), e));
            }
        }
        for (dir, atime, mtime) in self.parent_times.iter().rev() {
            if let Err(e) = utimensat(
                nix::fcntl::AT_FDCWD,
                dir,
                atime,
                mtime,
                UtimensatFlags::NoFollowSymlink,
            ) {
                errors.push((dir.clone(), e.into()));
            }
        }
        errors
    }
}
