//! The step cache: what a cached build step produced, found by the step's cache key.
//!
//! A record is a small JSON file `.rbuild-cache/<algorithm>/<encoded>.json` holding descriptors
//! (typically the step's layer) and free annotations (for example its diff ID). Records are
//! roots for [`Store::gc`], so the blobs they name survive while the record exists.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use rbuild_oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use crate::fs_sync::write_atomically;
use crate::{Store, StoreError};

/// Directory of the step-cache records (not part of the OCI layout).
pub(crate) const CACHE_DIR: &str = ".rbuild-cache";

/// What one build step produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The blobs the step produced (its layer, a config...), all present in the store.
    #[serde(default)]
    pub descriptors: Vec<Descriptor>,
    /// Anything else the engine wants back (diff ID, history text...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Store {
    fn cache_record_path(&self, key: &Digest) -> PathBuf {
        self.root()
            .join(CACHE_DIR)
            .join(key.algorithm())
            .join(format!("{}.json", key.encoded()))
    }

    /// Records what the step with cache key `key` produced, replacing an older record. The
    /// blobs it names must be in the store (checked under the store lock, so gc cannot race).
    pub fn put_cache_record(&self, key: &Digest, record: &CacheRecord) -> Result<(), StoreError> {
        let path = self.cache_record_path(key);
        let _lock = self.lock()?;
        for d in &record.descriptors {
            if !self.has_blob(&d.digest) {
                return Err(StoreError::BlobNotFound(d.digest.clone()));
            }
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
        }
        write_atomically(&path, &rbuild_oci::canonical_json(record))?;
        tracing::debug!(%key, "cache record stored");
        Ok(())
    }

    /// The record for `key`, if there is one and all its blobs are still present (it is then
    /// marked used).
    pub fn get_cache_record(&self, key: &Digest) -> Result<Option<CacheRecord>, StoreError> {
        let path = self.cache_record_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", path)(e)),
        };
        let record: CacheRecord =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if record.descriptors.iter().all(|d| self.has_blob(&d.digest)) {
            // Marks it used, for `prune --keep-storage` (least recently used records go
            // first). A store on a read-only filesystem just keeps the old time.
            if let Ok(file) = fs::File::options().append(true).open(&path) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
            Ok(Some(record))
        } else {
            tracing::debug!(%key, "cache record names a missing blob; treated as a miss");
            Ok(None)
        }
    }

    /// Removes the record for `key`; returns whether there was one.
    pub fn remove_cache_record(&self, key: &Digest) -> Result<bool, StoreError> {
        let path = self.cache_record_path(key);
        let _lock = self.lock()?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", path)(e)),
        }
    }

    /// Every descriptor named by a cache record (gc roots).
    pub(crate) fn cache_roots(&self) -> Result<Vec<Descriptor>, StoreError> {
        Ok(self
            .cache_records()?
            .into_iter()
            .flat_map(|r| r.record.descriptors)
            .collect())
    }

    /// Every record on disk, with its file and when it was last used (written or hit).
    pub(crate) fn cache_records(&self) -> Result<Vec<StoredRecord>, StoreError> {
        let mut records = Vec::new();
        let dir = self.root().join(CACHE_DIR);
        let algorithms = match fs::read_dir(&dir) {
            Ok(it) => it,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(records),
            Err(e) => return Err(StoreError::io("list", dir)(e)),
        };
        for alg in algorithms {
            let alg = alg.map_err(StoreError::io("list", &dir))?.path();
            if !alg.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&alg).map_err(StoreError::io("list", &alg))? {
                let path = entry.map_err(StoreError::io("list", &alg))?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue; // a writer's temp file
                }
                let (bytes, used) = match fs::read(&path).and_then(|b| {
                    let used = fs::metadata(&path)?.modified()?;
                    Ok((b, used))
                }) {
                    Ok(read) => read,
                    // Removed meanwhile (a prune, a replacement).
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StoreError::io("read", &path)(e)),
                };
                let record: CacheRecord =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                records.push(StoredRecord { path, used, record });
            }
        }
        Ok(records)
    }
}

/// A cache record as stored.
pub(crate) struct StoredRecord {
    pub path: PathBuf,
    /// Its file's mtime: written, or last hit.
    pub used: std::time::SystemTime,
    pub record: CacheRecord,
}
