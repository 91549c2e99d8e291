//! The builder's private work space: `<store>/.rbuild-work`, mode 0700 and the builder's own,
//! so that nothing unpacked there (a base image's setuid binary, a device node of a hostile
//! layer) is reachable by another local user. Each build works in a directory of its own
//! holding a lock file it keeps `flock`ed while it runs; the directory of a build that was
//! killed (its lock free) is removed when the next build starts, and a live build's never is.

use crate::error::BuildError;
use rustix::fs::FlockOperation;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The prefix of a build's directory in the work area.
const BUILD_PREFIX: &str = "build-";
/// The lock file in a build's directory.
const LOCK_NAME: &str = "lock";

/// `<store>/.rbuild-work`.
#[derive(Debug, Clone)]
pub(crate) struct WorkArea {
    dir: PathBuf,
}

impl WorkArea {
    /// Creates (or tightens) the work area at `dir`: 0700, owned by this process's user. One
    /// owned by another user is refused rather than used.
    pub(crate) fn open(dir: PathBuf) -> Result<WorkArea, BuildError> {
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(BuildError::io("create", &dir)(e)),
        }
        let meta = std::fs::symlink_metadata(&dir).map_err(BuildError::io("inspect", &dir))?;
        let me = rustix::process::geteuid().as_raw();
        if !meta.is_dir() || meta.uid() != me {
            return Err(BuildError::Io {
                what: "use the work directory",
                path: dir,
                source: std::io::Error::other(format!(
                    "it is not a directory owned by uid {me} (found uid {}); remove it or choose another store directory",
                    meta.uid()
                )),
            });
        }
        if meta.mode() & 0o777 != 0o700 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(BuildError::io("chmod", &dir))?;
        }
        Ok(WorkArea { dir })
    }

    /// The work area's path.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Reclaims what killed builds left, then makes this build's locked directory.
    pub(crate) fn begin_build(&self) -> Result<BuildDir, BuildError> {
        self.reclaim();
        // Made under a temporary name and locked before it is renamed to `build-…`, so a
        // reclaim never sees a build directory without its lock held.
        let fresh = tempfile::Builder::new()
            .prefix(".new-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&self.dir)
            .map_err(BuildError::io("create a directory in", &self.dir))?;
        let lock_path = fresh.path().join(LOCK_NAME);
        let lock = File::create(&lock_path).map_err(BuildError::io("create", &lock_path))?;
        rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| BuildError::io("lock", &lock_path)(e.into()))?;
        let name = fresh
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().replacen(".new-", BUILD_PREFIX, 1))
            .unwrap_or_else(|| format!("{BUILD_PREFIX}{}", std::process::id()));
        let path = self.dir.join(name);
        let fresh = fresh.keep();
        std::fs::rename(&fresh, &path).map_err(BuildError::io("rename", &fresh))?;
        Ok(BuildDir {
            area: self.dir.clone(),
            name: path.file_name().map(OsString::from).unwrap_or_default(),
            path,
            _lock: lock,
        })
    }

    /// Removes every build directory whose lock can be taken (its build is gone).
    fn reclaim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(BUILD_PREFIX) {
                continue;
            }
            let lock_path = entry.path().join(LOCK_NAME);
            let lock = match rustix::fs::open(
                &lock_path,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::debug!(path = %lock_path.display(), error = %e, "build directory without a lock left alone");
                    continue;
                }
            };
            if rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
                continue; // a live build
            }
            match remove_in(&self.dir, &name) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "reclaimed the work directory of a build that did not finish")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "work directory of an unfinished build not reclaimed")
                }
            }
        }
    }
}

/// One build's directory in the work area, removed (then unlocked) when dropped.
#[derive(Debug)]
pub(crate) struct BuildDir {
    area: PathBuf,
    name: OsString,
    path: PathBuf,
    _lock: File,
}

impl BuildDir {
    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if let Err(e) = remove_in(&self.area, &self.name) {
            tracing::warn!(path = %self.path.display(), error = %e, "build work directory not removed");
        }
    }
}

/// Removes `name` in `dir` and everything below it, never following a symlink.
fn remove_in(dir: &Path, name: &std::ffi::OsStr) -> Result<(), rbuild_fs::FsError> {
    rbuild_fs::Root::open(dir)?.remove(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_a_live_build_is_never_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".rbuild-work");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let area = WorkArea::open(path.clone()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "an existing work area is tightened");

        // A build that was killed: its directory, its lock file, nobody holding it.
        let dead = path.join("build-dead");
        std::fs::create_dir_all(dead.join("rootfs-x/bin")).unwrap();
        std::fs::write(dead.join(LOCK_NAME), "").unwrap();
        std::fs::write(dead.join("rootfs-x/bin/tool"), "x").unwrap();
        // A read-only directory, as an image may carry.
        std::fs::set_permissions(
            dead.join("rootfs-x/bin"),
            std::fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        // An escape attempt: a symlink in the leftovers must be removed, not followed.
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "k").unwrap();
        std::os::unix::fs::symlink(&outside, dead.join("link")).unwrap();

        let live = area.begin_build().unwrap();
        assert!(!dead.exists(), "the killed build's directory is reclaimed");
        assert!(outside.join("keep").exists(), "nothing outside is removed");
        let mode = std::fs::metadata(live.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);

        // A second builder on the same store (its own lock on the same file conflicts, as
        // another process's would) leaves the live build alone.
        let other = WorkArea::open(path.clone()).unwrap();
        let second = other.begin_build().unwrap();
        assert!(
            live.path().exists(),
            "a live build's directory is never reclaimed"
        );
        let live_path = live.path().to_path_buf();
        drop(live);
        assert!(
            !live_path.exists(),
            "a finished build removes its directory"
        );
        drop(second);
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0);
    }
}
