//! Layer scans for the report and the SBOM. A layer this build writes is scanned from its tar
//! as it is written ([`TarScanner`], fed by `LayerWriter::copying_tar_to`: no decompression,
//! in parallel with the compression). The others (a base image's, a cached step's) are read
//! from their blobs when the image is committed, several at once, while it is pushed. A scan
//! depends only on the uncompressed tar, so it is kept in the store under
//! `.rbuild-scans/<diffID hex>.json` (the diffID the scan computed itself) and no layer is
//! read twice.

use rbuild_attest::{scan_layer, scan_written_tar, ChunkReader, LayerScan, ScanOptions};
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
    // The config's diffIDs find kept scans; a layer not found is read and kept by the diffID
    // its scan computes (never by what the config claims).
    let diff_ids: Vec<Digest> = store
        .read_config(&manifest.config.digest)
        .map(|c| c.rootfs.diff_ids)
        .unwrap_or_default();
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
                        let scan = scan_one(store, layer, diff_ids.get(i), options);
                        done.push((i, (layer.clone(), scan)));
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

fn scan_one(
    store: &Store,
    layer: &Descriptor,
    diff_id: Option<&Digest>,
    options: ScanOptions,
) -> Result<LayerScan, String> {
    if let Some(kept) = diff_id.and_then(|d| std::fs::read(kept_path(store, d)).ok()) {
        if let Ok(scan) = serde_json::from_slice::<LayerScan>(&kept) {
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
    keep(store, &scan);
    Ok(scan)
}

/// Scans a layer's tar while the layer writer produces it.
pub(crate) struct TarScanner {
    sender: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: std::thread::JoinHandle<Result<LayerScan, rbuild_attest::AttestError>>,
}

impl TarScanner {
    /// Chunks of tar queued for the scan at most (256 KiB each): the scan is faster than the
    /// writer, so it rarely holds the writer back.
    const QUEUE: usize = 64;

    /// Starts the scanning thread.
    pub(crate) fn start(options: ScanOptions) -> TarScanner {
        let (sender, chunks) = std::sync::mpsc::sync_channel(Self::QUEUE);
        let thread = std::thread::spawn(move || {
            scan_written_tar(ChunkReader::new(chunks), options, "the layer being written")
        });
        TarScanner {
            sender: Some(sender),
            thread,
        }
    }

    /// Where the writer sends the tar.
    pub(crate) fn sender(&self) -> std::sync::mpsc::SyncSender<Vec<u8>> {
        self.sender
            .clone()
            .unwrap_or_else(|| std::sync::mpsc::sync_channel(0).0)
    }

    /// Waits for the scan of the finished layer (every other sender gone) and keeps it under
    /// `diff_id`, the diffID the layer writer computed of the same tar.
    pub(crate) fn finish(mut self, store: &Store, diff_id: &Digest) {
        drop(self.sender.take());
        match self.thread.join() {
            Ok(Ok(mut scan)) => {
                scan.diff_id = Some(diff_id.to_string());
                keep(store, &scan)
            }
            Ok(Err(e)) => {
                tracing::debug!(%diff_id, error = %e, "layer scan failed; the blob will be read")
            }
            Err(_) => tracing::debug!(%diff_id, "layer scan panicked"),
        }
    }
}

fn kept_path(store: &Store, digest: &Digest) -> PathBuf {
    store
        .root()
        .join(SCAN_DIR)
        .join(format!("{}.json", digest.encoded()))
}

/// Keeps a scan under the diffID it computed (atomically: a temporary file renamed into
/// place); failing to is harmless.
fn keep(store: &Store, scan: &LayerScan) {
    let Some(diff_id) = scan.diff_id.as_deref().and_then(|d| Digest::parse(d).ok()) else {
        return;
    };
    let path = &kept_path(store, &diff_id);
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
