//! `rbuild prune`: removes step-cache records (all of them, or the least recently used until
//! the store fits a size), then what nothing reaches any more ([`Store::gc`]). Safe while
//! builds run: records go under the store lock, blobs that a running build leased
//! ([`Store::lease`]) stay, and blobs younger than the grace period (a build's fresh layers
//! whose record is not written yet) stay.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::{Duration, SystemTime};

use rbuild_oci::Digest;

use crate::{GcReport, Store, StoreError};

/// What to prune.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneOptions {
    /// Remove every step-cache record (named images stay).
    pub all: bool,
    /// Remove the least recently used records until the blobs take at most this many bytes
    /// (blobs that images, leases or the grace period keep can make that impossible).
    pub keep_storage: Option<u64>,
    /// Unreferenced blobs younger than this stay (see [`crate::DEFAULT_GC_GRACE`]).
    pub grace: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            all: false,
            keep_storage: None,
            grace: crate::DEFAULT_GC_GRACE,
        }
    }
}

/// What a prune removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Step-cache records removed.
    pub removed_records: usize,
    /// The gc that followed.
    pub gc: GcReport,
    /// Bytes of blobs left.
    pub kept_bytes: u64,
}

impl Store {
    /// Prunes the step cache, then collects garbage; see [`PruneOptions`].
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        {
            let _lock = self.lock()?;
            let mut records = self.cache_records()?;
            records.sort_by_key(|r| r.used);
            let doomed = if options.all {
                records.len()
            } else if let Some(limit) = options.keep_storage {
                self.records_over(&records, limit, options.grace)?
            } else {
                0
            };
            for record in &records[..doomed] {
                match fs::remove_file(&record.path) {
                    Ok(()) => report.removed_records += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io("remove", &record.path)(e)),
                }
            }
        }
        report.gc = self.gc(options.grace)?;
        report.kept_bytes = self.blob_bytes()?.values().sum();
        tracing::info!(
            records = report.removed_records,
            blobs = report.gc.removed_blobs.len(),
            bytes = report.gc.removed_bytes,
            kept = report.kept_bytes,
            "pruned"
        );
        Ok(report)
    }

    /// How many of `records` (least recently used first) must go for the blobs to fit in
    /// `limit` bytes. Called under the store lock.
    fn records_over(
        &self,
        records: &[crate::cache::StoredRecord],
        limit: u64,
        grace: Duration,
    ) -> Result<usize, StoreError> {
        let sizes = self.blob_bytes()?;
        // Blobs kept whatever happens to records: reached from images, leased, or young.
        let mut fixed: BTreeSet<Digest> = self.image_reachable_blobs()?;
        fixed.extend(self.leased_blobs()?);
        let now = SystemTime::now();
        for digest in sizes.keys() {
            let modified = fs::metadata(self.blob_path(digest)).and_then(|m| m.modified());
            let age = modified
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or(Duration::ZERO);
            if age < grace {
                fixed.insert(digest.clone());
            }
        }
        let mut holders: BTreeMap<&Digest, usize> = BTreeMap::new();
        for record in records {
            for d in &record.record.descriptors {
                *holders.entry(&d.digest).or_default() += 1;
            }
        }
        let kept = |d: &Digest, holders: &BTreeMap<&Digest, usize>| {
            fixed.contains(d) || holders.get(d).is_some_and(|n| *n > 0)
        };
        let mut bytes: u64 = sizes
            .iter()
            .filter(|(d, _)| kept(d, &holders))
            .map(|(_, s)| s)
            .sum();
        let mut doomed = 0;
        while bytes > limit && doomed < records.len() {
            for d in &records[doomed].record.descriptors {
                if let Some(n) = holders.get_mut(&d.digest) {
                    *n -= 1;
                    if *n == 0 && !fixed.contains(&d.digest) {
                        bytes = bytes.saturating_sub(sizes.get(&d.digest).copied().unwrap_or(0));
                    }
                }
            }
            doomed += 1;
        }
        Ok(doomed)
    }

    /// The size of every blob in the store.
    fn blob_bytes(&self) -> Result<BTreeMap<Digest, u64>, StoreError> {
        let mut sizes = BTreeMap::new();
        let dir = self.root().join("blobs").join("sha256");
        for entry in fs::read_dir(&dir).map_err(StoreError::io("list", &dir))? {
            let entry = entry.map_err(StoreError::io("list", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            if let Ok(meta) = entry.metadata() {
                sizes.insert(digest, meta.len());
            }
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheRecord;
    use rbuild_oci::MediaType;

    fn record(store: &Store, key: &str, bytes: &[u8]) -> Digest {
        let blob = store.put_blob(bytes, MediaType::OciLayer).unwrap();
        let record = CacheRecord {
            descriptors: vec![blob.clone()],
            ..CacheRecord::default()
        };
        store
            .put_cache_record(&Digest::sha256_of(key.as_bytes()), &record)
            .unwrap();
        blob.digest
    }

    fn age(store: &Store, key: &str, seconds: u64) {
        let path = store
            .root()
            .join(crate::cache::CACHE_DIR)
            .join("sha256")
            .join(format!(
                "{}.json",
                Digest::sha256_of(key.as_bytes()).encoded()
            ));
        let file = fs::File::options().append(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(seconds))
            .unwrap();
    }

    #[test]
    fn keep_storage_removes_the_least_recently_used_records_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = record(&store, "old", &[1u8; 1000]);
        let mid = record(&store, "mid", &[2u8; 1000]);
        let new = record(&store, "new", &[3u8; 1000]);
        age(&store, "old", 300);
        age(&store, "mid", 200);
        age(&store, "new", 100);
        // A hit makes "old" the most recently used.
        let key = Digest::sha256_of(b"old");
        assert!(store.get_cache_record(&key).unwrap().is_some());
        let options = PruneOptions {
            keep_storage: Some(2000),
            grace: Duration::ZERO,
            ..PruneOptions::default()
        };
        let report = store.prune(&options).unwrap();
        assert_eq!(report.removed_records, 1);
        assert_eq!(report.gc.removed_blobs, vec![mid.clone()]);
        assert!(store.has_blob(&old) && store.has_blob(&new));
        assert_eq!(report.kept_bytes, 2000);
    }

    #[test]
    fn all_removes_every_record_but_keeps_images_and_young_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = record(&store, "a", b"layer");
        let young = PruneOptions {
            all: true,
            ..PruneOptions::default()
        };
        let report = store.prune(&young).unwrap();
        assert_eq!(report.removed_records, 1);
        assert!(store.has_blob(&layer), "younger than the grace period");
        let key = Digest::sha256_of(b"a");
        assert!(store.get_cache_record(&key).unwrap().is_none());
        let now = PruneOptions {
            all: true,
            grace: Duration::ZERO,
            ..PruneOptions::default()
        };
        store.prune(&now).unwrap();
        assert!(!store.has_blob(&layer));
    }
}
