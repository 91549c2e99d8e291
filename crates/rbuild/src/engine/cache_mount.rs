//! `RUN --mount=type=cache` directories: kept across builds under
//! `<store>/cache-mounts/<sha256 of the id>`, never part of a layer or a cache key.
//!
//! `sharing=shared` lets every step use the directory at once; `locked` holds an exclusive
//! `flock` on `<dir>.lock` for the whole step (other users wait); `private` gives each
//! concurrent user its own directory: the first free one of `<dir>`, `<dir>-1`, `<dir>-2`...,
//! held by a non-blocking lock, so a later build reuses whichever is free.

use rbuild_dockerfile::CacheSharing;
use rbuild_oci::Digest;
use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::path::{Path, PathBuf};

/// A cache directory in use by one step; the lock (if any) is released on drop.
#[derive(Debug)]
pub(super) struct CacheMountDir {
    /// The host directory to bind.
    pub(super) dir: PathBuf,
    /// Whether the directory was created for this use (a `from=` source seeds it then).
    pub(super) fresh: bool,
    _lock: Option<File>,
}

/// How many private copies of one cache may exist at once.
const MAX_PRIVATE_COPIES: usize = 64;

impl CacheMountDir {
    /// Takes the cache directory of `id` under `store_root` with the given sharing.
    pub(super) fn acquire(
        store_root: &Path,
        id: &str,
        sharing: CacheSharing,
    ) -> Result<CacheMountDir, String> {
        let base = store_root.join("cache-mounts");
        std::fs::create_dir_all(&base)
            .map_err(|e| format!("cannot create {}: {e}", base.display()))?;
        // Only the builder walks in: what a step leaves in its cache (a setuid file, say) is
        // out of other local users' reach.
        std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", base.display()))?;
        let name = Digest::sha256_of(id.as_bytes()).encoded().to_string();
        match sharing {
            CacheSharing::Shared => Self::open(base.join(&name), None),
            CacheSharing::Locked => {
                let lock = lock_file(&base.join(format!("{name}.lock")))?;
                flock(&lock, FlockOperation::LockExclusive)
                    .map_err(|e| format!("cannot lock the cache mount {id:?}: {e}"))?;
                Self::open(base.join(&name), Some(lock))
            }
            CacheSharing::Private => {
                for n in 0..MAX_PRIVATE_COPIES {
                    let dir_name = if n == 0 {
                        name.clone()
                    } else {
                        format!("{name}-{n}")
                    };
                    let lock = lock_file(&base.join(format!("{dir_name}.lock")))?;
                    match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                        Ok(()) => return Self::open(base.join(&dir_name), Some(lock)),
                        Err(rustix::io::Errno::WOULDBLOCK) => continue,
                        Err(e) => return Err(format!("cannot lock the cache mount {id:?}: {e}")),
                    }
                }
                Err(format!(
                    "the private cache mount {id:?} is in use {MAX_PRIVATE_COPIES} times"
                ))
            }
        }
    }

    fn open(dir: PathBuf, lock: Option<File>) -> Result<CacheMountDir, String> {
        let fresh = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        };
        Ok(CacheMountDir {
            dir,
            fresh,
            _lock: lock,
        })
    }
}

fn lock_file(path: &Path) -> Result<File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_reuses_private_splits_locked_persists() {
        let store = tempfile::tempdir().unwrap();
        let a = CacheMountDir::acquire(store.path(), "/root/.cache", CacheSharing::Shared).unwrap();
        assert!(a.fresh);
        let b = CacheMountDir::acquire(store.path(), "/root/.cache", CacheSharing::Shared).unwrap();
        assert!(!b.fresh);
        assert_eq!(a.dir, b.dir);
        assert!(a.dir.starts_with(store.path().join("cache-mounts")));

        let p1 = CacheMountDir::acquire(store.path(), "p", CacheSharing::Private).unwrap();
        let p2 = CacheMountDir::acquire(store.path(), "p", CacheSharing::Private).unwrap();
        assert_ne!(
            p1.dir, p2.dir,
            "concurrent private users get their own dirs"
        );
        drop(p2);
        let p3 = CacheMountDir::acquire(store.path(), "p", CacheSharing::Private).unwrap();
        assert!(!p3.fresh, "a free private copy is reused");
        assert_ne!(p3.dir, p1.dir);

        let l = CacheMountDir::acquire(store.path(), "l", CacheSharing::Locked).unwrap();
        std::fs::write(l.dir.join("kept"), "x").unwrap();
        drop(l);
        let l = CacheMountDir::acquire(store.path(), "l", CacheSharing::Locked).unwrap();
        assert!(l.dir.join("kept").exists());
    }

    #[test]
    fn locked_blocks_a_second_user_until_the_first_is_done() {
        let store = tempfile::tempdir().unwrap();
        let first = CacheMountDir::acquire(store.path(), "l", CacheSharing::Locked).unwrap();
        let lock_path = first.dir.with_extension("lock");
        let probe = lock_file(&lock_path).unwrap();
        assert_eq!(
            flock(&probe, FlockOperation::NonBlockingLockExclusive),
            Err(rustix::io::Errno::WOULDBLOCK)
        );
        drop(first);
        flock(&probe, FlockOperation::NonBlockingLockExclusive).unwrap();
    }
}
