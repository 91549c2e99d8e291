//! The upload tee of a layer being written: the compressed bytes go to the store and, in
//! 1 MiB chunks, to an upload session of the first destination, so a layer of the pushed
//! image is in the registry when its step ends. The session is finished (`PUT` with the
//! digest) only after the store has committed the blob; a layer that fails to write, or an
//! upload that fails, deletes the session. A failed upload does not fail the build: the
//! push at the end finds the blob missing and uploads it the ordinary way.

use crate::remote::Remote;
use rbuild_oci::{Digest, Reference};
use rbuild_registry::RegistryError;
use std::io::{self, Write};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The size of one `PATCH`.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Chunks queued for the upload thread; the layer writer waits when they are all taken.
const CHUNKS_QUEUED: usize = 4;

/// Why a streamed layer did not reach the registry (the push then uploads it).
#[derive(Debug, thiserror::Error)]
pub(super) enum UploadError {
    /// The session was abandoned before it was finished.
    #[error("the upload was cancelled")]
    Cancelled,
    /// The registry refused or failed the upload.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The upload thread panicked.
    #[error("the upload thread panicked")]
    Panicked,
}

/// An upload running beside a layer write.
pub(super) struct LayerUpload {
    chunks: Option<mpsc::Sender<Vec<u8>>>,
    pending: Vec<u8>,
    finish: Option<oneshot::Sender<Digest>>,
    thread: Option<JoinHandle<Result<bool, RegistryError>>>,
    destination: Reference,
    /// Time the layer writer waited for the upload thread to take a chunk.
    waited: Duration,
}

impl LayerUpload {
    /// Opens a session in `destination`'s repository on a thread of its own.
    pub(super) fn start(remote: &Remote, destination: &Reference) -> io::Result<LayerUpload> {
        let (chunks, mut received) = mpsc::channel::<Vec<u8>>(CHUNKS_QUEUED);
        let (finish, finished) = oneshot::channel::<Digest>();
        let remote = remote.clone();
        let to = destination.clone();
        let thread = std::thread::Builder::new()
            .name("layer-upload".into())
            .spawn(move || {
                remote.block_on(async {
                    let mut upload = remote.client().start_stream_upload(&to).await?;
                    while let Some(chunk) = received.recv().await {
                        if let Err(e) = upload.send_chunk(chunk).await {
                            upload.abort().await;
                            return Err(e);
                        }
                    }
                    match finished.await {
                        Ok(digest) => upload.finish(&digest).await.map(|()| true),
                        Err(_) => {
                            upload.abort().await;
                            Ok(false)
                        }
                    }
                })
            })?;
        Ok(LayerUpload {
            chunks: Some(chunks),
            pending: Vec::with_capacity(UPLOAD_CHUNK),
            finish: Some(finish),
            thread: Some(thread),
            destination: destination.clone(),
            waited: Duration::ZERO,
        })
    }

    /// Queues `data`; full chunks go to the upload thread (waiting while it is busy).
    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.chunks.is_some() {
            let n = data.len().min(UPLOAD_CHUNK - self.pending.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == UPLOAD_CHUNK {
                self.send_pending();
            }
        }
    }

    fn send_pending(&mut self) {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(UPLOAD_CHUNK));
        let started = Instant::now();
        let sent = self
            .chunks
            .as_ref()
            .is_some_and(|tx| tx.blocking_send(chunk).is_ok());
        self.waited += started.elapsed();
        if !sent {
            // The session failed: the thread says why when joined; nothing more is queued.
            self.chunks = None;
            self.pending = Vec::new();
        }
    }

    /// How long the layer writer has waited for the upload so far.
    pub(super) fn waited(&self) -> Duration {
        self.waited
    }

    /// Sends what is left and finishes the session with `digest` (the blob the store has
    /// committed). Returns the reason when the blob did not reach the registry.
    pub(super) fn finish(mut self, digest: &Digest) -> Result<(), UploadError> {
        if !self.pending.is_empty() {
            self.send_pending();
        }
        self.chunks = None;
        if let Some(finish) = self.finish.take() {
            let _ = finish.send(digest.clone());
        }
        match self.join() {
            Some(Ok(true)) => {
                tracing::debug!(%digest, destination = %self.destination, "layer streamed to the registry");
                Ok(())
            }
            Some(Ok(false)) => Err(UploadError::Cancelled),
            Some(Err(e)) => Err(UploadError::Registry(e)),
            None => Err(UploadError::Panicked),
        }
    }

    /// [`LayerUpload::finish`], a failure only a warning: the push uploads the blob then.
    pub(super) fn finish_or_warn(self, digest: &Digest) {
        if let Err(reason) = self.finish(digest) {
            tracing::warn!(%digest, %reason, "streaming the layer to the registry failed; the push will upload it");
        }
    }

    fn join(&mut self) -> Option<Result<bool, RegistryError>> {
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for LayerUpload {
    /// An upload never finished (the layer failed) is cancelled: the session is deleted.
    fn drop(&mut self) {
        self.chunks = None;
        self.finish = None;
        if let Some(Err(e)) = self.join() {
            tracing::debug!(destination = %self.destination, error = %e, "abandoned layer upload");
        }
    }
}

/// Writes to `out` and copies what was written into `upload`, if any.
pub(super) struct UploadTee<'a, W: Write> {
    /// Where the blob is stored.
    pub out: W,
    /// The upload fed alongside.
    pub upload: Option<&'a mut LayerUpload>,
}

impl<W: Write> Write for UploadTee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(upload) = self.upload.as_deref_mut() {
            upload.push(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Layer uploads whose last `PUT` runs in the background, each on its own thread.
#[derive(Default)]
pub(super) struct FinishingUploads {
    running: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl FinishingUploads {
    /// Finishes `upload` with `digest` (the committed blob) on a thread of its own; a failure
    /// is a warning: the push uploads the blob the ordinary way.
    pub(super) fn start(&self, upload: LayerUpload, digest: Digest) {
        let finish = move || upload.finish_or_warn(&digest);
        match std::thread::Builder::new()
            .name("layer-upload-finish".into())
            .spawn(finish)
        {
            Ok(handle) => self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle),
            Err(e) => {
                tracing::debug!(error = %e, "no thread to finish a layer upload: the push uploads it")
            }
        }
    }

    /// Waits until every upload started is finished (or has failed); also when a build
    /// fails (dropped).
    pub(super) fn wait(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in running {
            let _ = handle.join();
        }
    }
}

impl Drop for FinishingUploads {
    fn drop(&mut self) {
        self.wait();
    }
}
