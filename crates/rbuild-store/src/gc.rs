//! Garbage collection: remove blobs that `index.json` does not reach, and dead writers' temp
//! files.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rbuild_oci::{AnyManifest, Descriptor, Digest};

use crate::{Store, StoreError};

/// How long an unreferenced blob or temp file is left alone by default: a writer commits blobs
/// first and names the image afterwards, so fresh blobs may be about to be referenced.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(60 * 60);

/// What a gc run removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub removed_blobs: Vec<Digest>,
    /// Their total size.
    pub removed_bytes: u64,
    /// Temp files of writers that died or stalled longer than the grace period.
    pub removed_temp_files: usize,
    /// Blobs kept because something in `index.json` reaches them.
    pub kept_blobs: usize,
}

impl Store {
    /// The digests reachable from `index.json` and the step-cache records: every entry, and
    /// recursively the children of every manifest and index present in the store (config,
    /// layers, manifests, subject).
    pub fn reachable_blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        let mut roots: Vec<Descriptor> = self.read_index()?.manifests;
        roots.extend(self.cache_roots()?);
        self.reachable_from(roots)
    }

    /// The digests reachable from `index.json` alone (named images).
    pub(crate) fn image_reachable_blobs(&self) -> Result<BTreeSet<Digest>, StoreError> {
        self.reachable_from(self.read_index()?.manifests)
    }

    /// `roots` and, recursively, the children of every manifest and index among them.
    fn reachable_from(&self, roots: Vec<Descriptor>) -> Result<BTreeSet<Digest>, StoreError> {
        let mut reachable = BTreeSet::new();
        let mut todo = roots;
        while let Some(d) = todo.pop() {
            if !reachable.insert(d.digest.clone()) {
                continue;
            }
            if !(d.media_type.is_manifest() || d.media_type.is_index()) || !self.has_blob(&d.digest)
            {
                continue;
            }
            match self.read_manifest(&d)? {
                AnyManifest::Image(m) => {
                    todo.push(m.config);
                    todo.extend(m.layers);
                    todo.extend(m.subject);
                }
                AnyManifest::Index(i) => {
                    todo.extend(i.manifests);
                    todo.extend(i.subject);
                }
            }
        }
        Ok(reachable)
    }

    /// Removes blobs not reachable from `index.json` and temp files, but only those not
    /// modified for `grace` (see [`DEFAULT_GC_GRACE`]), so a writer that has committed blobs
    /// and not yet named its image keeps them. Holds the index lock, so no `put_image` runs
    /// meanwhile, and `put_image` re-checks its blobs under that lock.
    pub fn gc(&self, grace: Duration) -> Result<GcReport, StoreError> {
        let _lock = self.lock()?;
        let mut reachable = self.reachable_blobs()?;
        // What running builds rely on (cache hits whose records may be gone).
        reachable.extend(self.leased_blobs()?);
        let now = SystemTime::now();
        let mut report = GcReport::default();
        let blobs = self.root().join("blobs");
        for alg_entry in read_dir(&blobs)? {
            let alg_dir = alg_entry.path();
            let Some(algorithm) = alg_entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !alg_dir.is_dir() {
                continue;
            }
            for entry in read_dir(&alg_dir)? {
                let name = entry.file_name();
                let Some(encoded) = name.to_str() else {
                    continue;
                };
                let Ok(digest) = Digest::parse(&format!("{algorithm}:{encoded}")) else {
                    continue;
                };
                if reachable.contains(&digest) {
                    report.kept_blobs += 1;
                    continue;
                }
                let path = entry.path();
                let Some(len) = older_than(&path, now, grace)? else {
                    continue;
                };
                remove(&path)?;
                tracing::debug!(%digest, "gc removed blob");
                report.removed_bytes += len;
                report.removed_blobs.push(digest);
            }
        }
        // Temp files: blob writers' (everything in the ingest dir) and those of atomic
        // replacements of index.json and cache records (`.<name>.<random>.tmp`).
        let mut temp_files: Vec<std::path::PathBuf> = read_dir(&self.ingest_dir())?
            .iter()
            .map(|e| e.path())
            .collect();
        let cache_dir = self.root().join(crate::cache::CACHE_DIR).join("sha256");
        for dir in [self.root().to_path_buf(), cache_dir] {
            if !dir.is_dir() {
                continue;
            }
            temp_files.extend(read_dir(&dir)?.iter().map(|e| e.path()).filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
            }));
        }
        for path in temp_files {
            if older_than(&path, now, grace)?.is_some() {
                remove(&path)?;
                report.removed_temp_files += 1;
            }
        }
        tracing::info!(
            removed = report.removed_blobs.len(),
            bytes = report.removed_bytes,
            temp_files = report.removed_temp_files,
            kept = report.kept_blobs,
            "gc done"
        );
        Ok(report)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(StoreError::io("list", dir))
}

/// The file's size if it was last modified at least `grace` ago; `None` if younger or gone.
fn older_than(path: &Path, now: SystemTime, grace: Duration) -> Result<Option<u64>, StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("stat", path)(e)),
    };
    let modified = meta.modified().map_err(StoreError::io("stat", path))?;
    let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
    Ok((age >= grace).then_some(meta.len()))
}

fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}
