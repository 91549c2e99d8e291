//! Writing a layer: tar generation and the diffID on one thread, compression and the blob digest
//! on the calling thread (gzip on several worker threads, see [`crate::parallel_gzip`]), joined
//! by a bounded channel of fixed-size chunks. One pass over the
//! files gives the compressed stream, both digests and both sizes; memory stays bounded.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::sync_channel;

use std::sync::Arc;
use std::time::Instant;

use rbuild_oci::{Compression, Digest, MediaType};

use crate::changes::ChangeSet;
use crate::chunk_sink::ChunkSink;
use crate::error::LayerError;
use crate::parallel_gzip;
use crate::profile::{Phase, TimedDigest, WriteProfile};
use crate::tar_stream::{self, OwnerMap};

/// The input size of one zstd worker job (a fixed value: it shapes the output).
const ZSTD_JOB_SIZE: u32 = 1024 * 1024;

/// Chunks in flight between the tar thread and the compressor (each `CHUNK_SIZE` bytes).
const CHUNKS_IN_FLIGHT: usize = 4;

/// How to write a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerOptions {
    /// The compression of the blob. Default gzip.
    pub compression: Compression,
    /// The compression level; `None` means gzip 6, zstd 3.
    pub level: Option<i32>,
    /// When set, mtimes later than this (seconds since the epoch) are written as this value, and
    /// whiteouts carry it; earlier ones are kept.
    pub source_date_epoch: Option<i64>,
    /// Threads compressing (gzip or zstd); `None` means one per available core (at most 8).
    /// The output is the same whatever the number.
    pub threads: Option<usize>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip,
            level: None,
            source_date_epoch: None,
            threads: None,
        }
    }
}

/// What a written layer is: what an image manifest and config need to reference it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// sha256 of the blob as written (the manifest's layer digest).
    pub digest: Digest,
    /// Size of the blob as written.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// The OCI layer media type for the compression used.
    pub media_type: MediaType,
    /// The number of tar entries (whiteouts and implied parent directories included).
    pub entries: u64,
}

/// Writes layers with fixed [`LayerOptions`].
#[derive(Clone, Debug, Default)]
pub struct LayerWriter {
    options: LayerOptions,
    profile: Option<Arc<WriteProfile>>,
    tar_copy: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl LayerWriter {
    /// A writer with these options.
    pub fn new(options: LayerOptions) -> Self {
        LayerWriter {
            options,
            profile: None,
            tar_copy: None,
        }
    }

    /// The same writer, adding the time of each part of its writes to `profile`.
    pub fn profiled(&self, profile: Arc<WriteProfile>) -> LayerWriter {
        LayerWriter {
            profile: Some(profile),
            ..self.clone()
        }
    }

    /// The same writer, also sending the uncompressed tar of each write, in order, chunk by
    /// chunk, to `copy` (the sender is dropped when the write ends: the end of the stream).
    /// Lets a reader of the tar (the build report's layer scan) see it without decompressing
    /// the blob; a receiver that hangs up early only stops the copies.
    pub fn copying_tar_to(&self, copy: std::sync::mpsc::SyncSender<Vec<u8>>) -> LayerWriter {
        LayerWriter {
            tar_copy: Some(copy),
            ..self.clone()
        }
    }

    /// The options in use.
    pub fn options(&self) -> &LayerOptions {
        &self.options
    }

    /// Writes the layer for `changes`, with file contents and metadata read from `root`, to
    /// `out`. On error, what was written to `out` is not a valid layer and must be discarded.
    pub fn write<W: Write>(
        &self,
        root: &Path,
        changes: &ChangeSet,
        out: W,
    ) -> Result<LayerInfo, LayerError> {
        self.write_with_owners(root, changes, &OwnerMap::new(), out)
    }

    /// [`LayerWriter::write`], with the owners of the paths in `owners` (relative to `root`)
    /// taken from there rather than from the files.
    pub fn write_with_owners<W: Write>(
        &self,
        root: &Path,
        changes: &ChangeSet,
        owners: &OwnerMap,
        out: W,
    ) -> Result<LayerInfo, LayerError> {
        let epoch = self.options.source_date_epoch;
        self.pipeline(
            |sink| tar_stream::write_tar(root, changes, owners, epoch, sink),
            out,
        )
    }

    /// Compresses `tar`, an uncompressed layer (as this crate writes with
    /// [`Compression::None`]), with this writer's options: the blob is byte for byte the one
    /// [`LayerWriter::write`] gives for the tree the tar was written from, so a layer kept
    /// uncompressed can be compressed when it first leaves the machine. `entries` is 0 (the
    /// tar is not parsed).
    pub fn compress_tar<R: Read + Send, W: Write>(
        &self,
        mut tar: R,
        out: W,
    ) -> Result<LayerInfo, LayerError> {
        self.pipeline(
            move |sink| {
                let mut buf = vec![0; 256 * 1024];
                loop {
                    let n = match tar.read(&mut buf) {
                        Ok(0) => return Ok(0),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(LayerError::Input(e)),
                    };
                    sink.write_bytes(&buf[..n]).map_err(LayerError::Output)?;
                }
            },
            out,
        )
    }

    /// Runs `produce` (which writes the tar into the sink and returns its entry count) on a
    /// thread of its own and compresses what it writes into `out`.
    fn pipeline<P, W>(&self, produce: P, out: W) -> Result<LayerInfo, LayerError>
    where
        P: FnOnce(&mut ChunkSink<'_>) -> Result<u64, LayerError> + Send,
        W: Write,
    {
        let unprofiled = WriteProfile::default();
        let profile = self.profile.as_deref().unwrap_or(&unprofiled);
        let (tx, rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 2);
        let copy = self.tar_copy.clone();
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || {
                let start = Instant::now();
                let mut sink = ChunkSink::new(tx, recycle_rx, profile).copying_to(copy);
                let entries = produce(&mut sink)?;
                let (diff_id, size, others) = sink.finish().map_err(LayerError::Output)?;
                // The tar thread's own work: not its hashing, not its waits.
                profile.add(Phase::Tar, start.elapsed().saturating_sub(others));
                Ok::<_, LayerError>((diff_id, size, entries))
            });
            let compressed = compress_chunks(&self.options, rx, recycle_tx, out, profile);
            let produced = producer
                .join()
                .map_err(|_| LayerError::Pipeline("the tar thread panicked"))?;
            // An error of the tar thread comes first, as it explains the compressor's; but a
            // tar thread that only saw the compressor stop reports the compressor's error.
            let ((diff_id, uncompressed_size, entries), (digest, size)) =
                match (produced, compressed) {
                    (Ok(p), Ok(c)) => (p, c),
                    (Err(LayerError::Output(_)), Err(c)) => return Err(c),
                    (Err(p), _) => return Err(p),
                    (Ok(_), Err(c)) => return Err(c),
                };
            tracing::debug!(%diff_id, %digest, size, uncompressed_size, entries, "layer written");
            Ok(LayerInfo {
                diff_id,
                digest,
                size,
                uncompressed_size,
                media_type: media_type(self.options.compression),
                entries,
            })
        })
    }

    /// Writes every path under `root` as one layer (as for a base image or `COPY --link`).
    pub fn write_tree<W: Write>(&self, root: &Path, out: W) -> Result<LayerInfo, LayerError> {
        let changes = ChangeSet::whole_tree(root)?;
        self.write(root, &changes, out)
    }
}

/// The OCI media type of a layer with this compression.
pub fn media_type(compression: Compression) -> MediaType {
    match compression {
        Compression::None => MediaType::OciLayer,
        Compression::Gzip => MediaType::OciLayerGzip,
        Compression::Zstd => MediaType::OciLayerZstd,
    }
}

/// The Docker v2 schema 2 media type of a layer with this compression, for images written in
/// Docker format (Docker has no zstd layer type; BuildKit then uses the OCI one, and so does
/// this function).
pub fn docker_media_type(compression: Compression) -> MediaType {
    match compression {
        Compression::None => {
            MediaType::Other("application/vnd.docker.image.rootfs.diff.tar".into())
        }
        Compression::Gzip => MediaType::DockerLayerGzip,
        Compression::Zstd => MediaType::OciLayerZstd,
    }
}

fn compress_chunks<W: Write>(
    options: &LayerOptions,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
    out: W,
    profile: &WriteProfile,
) -> Result<(Digest, u64), LayerError> {
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
        .max(1);
    if options.compression == Compression::Gzip {
        let level = options.level.unwrap_or(6).clamp(0, 9) as u32;
        return parallel_gzip::gzip_chunks(rx, recycle, level, threads, out, profile);
    }
    let counted = TimedDigest::new(out, profile);
    let mut encoder = match options.compression {
        Compression::None | Compression::Gzip => Encoder::Plain(counted),
        Compression::Zstd => {
            let mut encoder =
                zstd::stream::write::Encoder::new(counted, options.level.unwrap_or(3))
                    .map_err(LayerError::Output)?;
            // zstd's worker mode gives the same bytes for any number of workers >= 1 (not the
            // same as its single-threaded mode, which is therefore never used).
            encoder
                .multithread(threads as u32)
                .map_err(LayerError::Output)?;
            // Small jobs keep memory low (zstd's default job is several times its window).
            encoder
                .set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))
                .map_err(LayerError::Output)?;
            Encoder::Zstd(encoder)
        }
    };
    // The tar thread ends a complete stream with an empty chunk; a channel that closes without
    // it means the tar thread failed, and the compressed stream is then left unfinished so that
    // it cannot pass for a valid layer.
    let mut complete = false;
    for chunk in rx {
        if chunk.is_empty() {
            complete = true;
            break;
        }
        encoder.write_all(&chunk, profile)?;
        // The tar thread may be gone or have enough buffers: then the chunk is just freed.
        let _ = recycle.try_send(chunk);
    }
    if !complete {
        return Err(LayerError::Pipeline("the tar stream ended early"));
    }
    let mut counted = encoder.finish(profile)?;
    counted.flush().map_err(LayerError::Output)?;
    Ok(counted.finish())
}

enum Encoder<W: Write> {
    Plain(W),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn write_all(&mut self, data: &[u8], profile: &WriteProfile) -> Result<(), LayerError> {
        match self {
            Encoder::Plain(w) => w.write_all(data),
            Encoder::Zstd(w) => compressing(profile, || w.write_all(data)),
        }
        .map_err(LayerError::Output)
    }

    fn finish(self, profile: &WriteProfile) -> Result<W, LayerError> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Zstd(w) => compressing(profile, || w.finish()),
        }
        .map_err(LayerError::Output)
    }
}

/// Runs `f`, a call into the compressor, and adds its time, less the hashing and output it
/// did (its writes into the blob), to [`Phase::Compress`].
fn compressing<T>(profile: &WriteProfile, f: impl FnOnce() -> T) -> T {
    let spent = profile.hash() + profile.output();
    let start = Instant::now();
    let out = f();
    let others = (profile.hash() + profile.output()).saturating_sub(spent);
    profile.add(Phase::Compress, start.elapsed().saturating_sub(others));
    out
}
