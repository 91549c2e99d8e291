//! The lock that serialises `index.json` updates and gc between processes sharing a store.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::StoreError;

/// An exclusive `flock` on the store's lock file, released on drop (or if the process dies).
pub(crate) struct IndexLock {
    _file: File,
}

impl IndexLock {
    /// Blocks until the lock is held.
    pub(crate) fn acquire(path: &Path) -> Result<IndexLock, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(StoreError::io("open lock file", path))?;
        loop {
            match flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(StoreError::io("lock", path)(e.into())),
            }
        }
        Ok(IndexLock { _file: file })
    }
}
