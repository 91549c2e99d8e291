//! Leases: a running build's claim on blobs it relies on but no record or image may keep
//! alive (a cache hit whose record a prune removes, a layer it will export). While the lease
//! is held, [`Store::gc`] and [`Store::prune`](crate::Store::prune) keep those blobs.
//!
//! A lease is a file `.rbuild-leases/<random>` listing digests, with an exclusive `flock`
//! held by its owner: a lease whose lock can be taken belongs to a process that is gone and
//! is removed by the next gc. Claims are written under the store lock, after checking that
//! the blobs are present, so no gc runs between the check and the claim.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;

use rbuild_oci::Digest;
use rustix::fs::{flock, FlockOperation};

use crate::{Store, StoreError};

/// The directory of the lease files.
pub(crate) const LEASE_DIR: &str = ".rbuild-leases";

/// A build's claim on blobs; released (its file removed) on drop or when the process dies.
#[derive(Debug)]
pub struct Lease {
    store: Store,
    path: PathBuf,
    file: File,
}

impl Store {
    /// Takes a new, empty lease.
    pub fn lease(&self) -> Result<Lease, StoreError> {
        let dir = self.root().join(LEASE_DIR);
        fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        let (file, path) = tempfile::Builder::new()
            .prefix("lease-")
            .tempfile_in(&dir)
            .map_err(StoreError::io("create a lease in", &dir))?
            .keep()
            .map_err(|e| StoreError::io("keep the lease", &dir)(e.error))?;
        flock(&file, FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| StoreError::io("lock", &path)(e.into()))?;
        Ok(Lease {
            store: self.clone(),
            path,
            file,
        })
    }

    /// The blobs claimed by live leases; leases of processes that are gone are removed.
    /// Called with the store lock held.
    pub(crate) fn leased_blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut leased = BTreeSet::new();
        let dir = self.root().join(LEASE_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(leased),
            Err(e) => return Err(StoreError::io("list", dir)(e)),
        };
        for entry in entries {
            let path = entry.map_err(StoreError::io("list", &dir))?.path();
            let Ok(mut file) = File::open(&path) else {
                continue; // released meanwhile
            };
            if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
                // Nobody holds it: its build is gone.
                let _ = fs::remove_file(&path);
                continue;
            }
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(StoreError::io("read", &path))?;
            leased.extend(text.lines().filter_map(|l| Digest::parse(l).ok()));
        }
        Ok(leased)
    }
}

impl Lease {
    /// Claims `digests` if the store has every one of them; returns false (claiming nothing)
    /// when one is missing.
    pub fn claim(&self, digests: &[Digest]) -> Result<bool, StoreError> {
        let _lock = self.store.lock()?;
        if !digests.iter().all(|d| self.store.has_blob(d)) {
            return Ok(false);
        }
        let mut text = String::new();
        for digest in digests {
            text.push_str(digest.as_str());
            text.push('\n');
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(StoreError::io("open", &self.path))?;
        file.write_all(text.as_bytes())
            .map_err(StoreError::io("write", &self.path))?;
        Ok(true)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_oci::MediaType;

    #[test]
    fn a_held_lease_keeps_its_blobs_through_gc_and_a_dropped_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.put_blob(b"kept", MediaType::OciLayer).unwrap();
        let loose = store.put_blob(b"loose", MediaType::OciLayer).unwrap();
        let lease = store.lease().unwrap();
        assert!(lease.claim(std::slice::from_ref(&kept.digest)).unwrap());
        let missing = Digest::sha256_of(b"never stored");
        assert!(!lease.claim(&[missing]).unwrap());
        let report = store.gc(std::time::Duration::ZERO).unwrap();
        assert_eq!(report.removed_blobs, vec![loose.digest.clone()]);
        assert!(store.has_blob(&kept.digest));
        drop(lease);
        store.gc(std::time::Duration::ZERO).unwrap();
        assert!(!store.has_blob(&kept.digest));
    }
}
