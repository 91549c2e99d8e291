//! Layer scans for the report and the SBOM, one pass per layer blob, several layers at once,
//! started as soon as the image is committed (so they run while it is pushed). A scan depends
//! only on the blob's bytes, so it is kept in the store under `.rbuild-scans/<digest hex>.json`
//! and a layer already scanned (a base image's, a cached step's) is never read again.

use rbuild_attest::{scan_layer, LayerScan, ScanOptions};
use rbuild_oci::{Descriptor, Digest, Manifest};
use rbuild_store::Store;
use std::path::PathBuf;

/// The directory of kept scans in the store.
const SCAN_DIR: &str = ".rbuild-scans";

/// One layer and what its scan found (or why there is none).
pub(super) type LayerScanResult = (Descriptor, Result<LayerScan, String>);

/// Scans every layer of the image whose manifest is `manifest_digest`, up to `threads` at once.
pub(super) fn scan_image(
    store: &Store,
    manifest_digest: &Digest,
    options: ScanOptions,
) -> Vec<LayerScanResult> {
    let manifest = match store
        .read_blob(manifest_digest)
        .map_err(|e| e.to_string())
        .and_then(|b| Manifest::from_json(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the image manifest for the report");
            return Vec::new();
        }
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(manifest.layers.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, LayerScanResult)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(layer) = manifest.layers.get(i) else {
                            break;
                        };
                        done.push((i, (layer.clone(), scan_one(store, layer, options))));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn scan_one(store: &Store, layer: &Descriptor, options: ScanOptions) -> Result<LayerScan, String> {
    let kept = kept_path(store, &layer.digest);
    if let Ok(bytes) = std::fs::read(&kept) {
        if let Ok(scan) = serde_json::from_slice::<LayerScan>(&bytes) {
            if scan.serves(options) {
                return Ok(scan);
            }
        }
    }
    if !store.has_blob(&layer.digest) {
        return Err("not in the local store (left in the registry)".into());
    }
    let blob = store.open_blob(&layer.digest).map_err(|e| e.to_string())?;
    let scan = scan_layer(blob, options, layer.digest.as_str()).map_err(|e| e.to_string())?;
    keep(&kept, &scan);
    Ok(scan)
}

fn kept_path(store: &Store, digest: &Digest) -> PathBuf {
    store
        .root()
        .join(SCAN_DIR)
        .join(format!("{}.json", digest.encoded()))
}

/// Keeps a scan (atomically: a temporary file renamed into place); failing to is harmless.
fn keep(path: &std::path::Path, scan: &LayerScan) {
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = tempfile::NamedTempFile::new_in(dir)?;
        let mut out = std::io::BufWriter::new(temp.as_file());
        serde_json::to_writer(&mut out, scan).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut out)?;
        drop(out);
        temp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::debug!(error = %e, path = %path.display(), "layer scan not kept");
    }
}
