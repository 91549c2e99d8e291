//! Registries, through `rbuild-registry`: base images missing from the store are pulled into
//! it, and a built image is pushed from it to any number of destinations. The registry client
//! is async; [`Remote`] runs it on a runtime of its own so the engine stays synchronous.

use crate::error::BuildError;
use rbuild_oci::{Descriptor, Digest, MediaType, Platform, Reference};
use rbuild_registry::{
    BlobSink, BlobSource, BlobWrite, CredentialChain, PushOutcome, RegistryClient, RegistryOptions,
};
use rbuild_store::{BlobWriter, Store};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// A registry client and the runtime it runs on; cheap to clone.
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Inner>,
}

struct Inner {
    client: RegistryClient,
    /// Taken (and shut down without blocking) on drop: a runtime dropped the ordinary way
    /// inside the caller's async runtime would panic.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}

impl Remote {
    /// A client with these options and credentials.
    pub fn new(
        options: RegistryOptions,
        credentials: CredentialChain,
    ) -> Result<Remote, BuildError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BuildError::Registry(format!("cannot start the registry runtime: {e}")))?;
        Ok(Remote {
            inner: Arc::new(Inner {
                client: RegistryClient::new(options, credentials),
                runtime: Some(runtime),
            }),
        })
    }

    /// The registry client.
    pub fn client(&self) -> &RegistryClient {
        &self.inner.client
    }

    /// Pulls `reference` for `platform` into `store` (blobs it lacks), naming it
    /// `reference.to_string()` there. Returns the manifest's descriptor.
    pub fn pull_into_store(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Descriptor, BuildError> {
        let blobs = StoreBlobs { store };
        let image = self
            .blocking(|me| me.block_on(me.inner.client.pull_image(reference, platform, &blobs)))
            .map_err(BuildError::registry(None))?;
        tracing::info!(%reference, digest = %image.digest, "pulled");
        Ok(store.put_image(
            &reference.to_string(),
            &image.manifest_bytes,
            image.media_type,
        )?)
    }

    /// Like [`Remote::pull_into_store`], but fetches only the manifest and the config, and
    /// names nothing in the store (a named image has all its blobs): the layers stay in the
    /// registry until something needs their bytes ([`Remote::fetch_blob_into_store`]).
    /// Returns the descriptor of the platform's image manifest, whose blob is in the store.
    pub fn pull_config_into_store(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Descriptor, BuildError> {
        let blobs = StoreBlobs { store };
        let client = &self.inner.client;
        let image = self
            .blocking(|me| {
                me.block_on(async {
                    let image = client.resolve_image(reference, platform).await?;
                    client
                        .fetch_blob(reference, &image.manifest.config, &blobs)
                        .await?;
                    Ok::<_, rbuild_registry::RegistryError>(image)
                })
            })
            .map_err(BuildError::registry(None))?;
        for layer in &image.manifest.layers {
            client.note_blob_holder(reference.registry(), reference.repository(), &layer.digest);
        }
        tracing::info!(%reference, digest = %image.digest, "resolved (layers left remote)");
        Ok(store.put_blob(&image.manifest_bytes, image.media_type)?)
    }

    /// Downloads one blob of `reference`'s repository into `store` (nothing if it has it).
    pub fn fetch_blob_into_store(
        &self,
        store: &Store,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<(), BuildError> {
        let blobs = StoreBlobs { store };
        self.blocking(|me| me.block_on(me.inner.client.fetch_blob(reference, descriptor, &blobs)))
            .map_err(BuildError::registry(Some(reference.to_string())))
    }

    /// Runs a registry future to completion on this remote's runtime (callable from any
    /// number of threads at once).
    /// Not for a thread inside an async runtime: the public methods go through
    /// [`Remote::blocking`], and the engine's calls run off the caller's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime().block_on(future)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.inner
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the remote")
    }

    /// Runs `work` (which blocks on this remote's runtime) safely also when called from a
    /// task of the caller's async runtime: see [`crate::off_runtime`]. The futures are made
    /// and driven on the thread that blocks.
    fn blocking<T: Send>(&self, work: impl FnOnce(&Remote) -> T + Send) -> T {
        crate::off_runtime::off_runtime(|| work(self))
    }

    /// Makes `blobs` (read from `store`) present in `destination`'s repository, mounting
    /// those another repository of its registry is known to hold.
    pub(crate) fn push_blobs_from_store(
        &self,
        store: &Store,
        destination: &Reference,
        blobs: &[Descriptor],
    ) -> Result<(), BuildError> {
        let source = StoreBlobs { store };
        self.block_on(self.inner.client.push_blobs(destination, blobs, &source))
            .map(|_| ())
            .map_err(BuildError::registry(None))
    }

    /// Pushes an artifact manifest with a `subject` (its blobs in `store`) to
    /// `destination`'s repository and makes it findable as a referrer of the subject.
    pub(crate) fn push_referrer_from_store(
        &self,
        store: &Store,
        destination: &Reference,
        manifest_bytes: &[u8],
    ) -> Result<rbuild_registry::ReferrerAttach, BuildError> {
        let source = StoreBlobs { store };
        self.block_on(
            self.inner
                .client
                .push_referrer(destination, manifest_bytes, &source),
        )
        .map_err(BuildError::registry(Some("attestation push failed".into())))
    }

    /// Makes `blobs` present in `destination`'s repository, then puts the manifest (or
    /// index) there: by its digest when `by_digest`, else under the destination's tag.
    pub(crate) fn push_manifest_from_store(
        &self,
        store: &Store,
        destination: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
        blobs: &[Descriptor],
        by_digest: bool,
    ) -> Result<Digest, BuildError> {
        let doing = || Some("attestation push failed".to_string());
        let target = if by_digest {
            Reference::parse(&format!(
                "{}@{}",
                destination.name(),
                Digest::sha256_of(bytes)
            ))
            .map_err(|e| BuildError::Registry(format!("attestation push failed: {e}")))?
        } else {
            destination.clone()
        };
        let source = StoreBlobs { store };
        let client = &self.inner.client;
        self.block_on(async {
            client.push_blobs(&target, blobs, &source).await?;
            client.push_manifest(&target, bytes, media_type).await
        })
        .map_err(BuildError::registry(doing()))
    }

    /// Checks that the credentials the chain has for `registry` are accepted (`rbuild login`).
    pub fn check_credentials(&self, registry: &str) -> Result<(), BuildError> {
        self.blocking(|me| me.block_on(me.inner.client.check_credentials(registry)))
            .map_err(BuildError::registry(None))
    }

    /// Checks, before a build, that every destination accepts a push (an upload session
    /// started and cancelled in each repository); the first refusal is the error.
    pub fn check_push_permissions(&self, destinations: &[Reference]) -> Result<(), BuildError> {
        for destination in destinations {
            self.blocking(|me| me.block_on(me.inner.client.check_push_permission(destination)))
                .map_err(BuildError::registry(Some(format!(
                    "{destination}: cannot push there (checked before building; \
                     --skip-push-permission-check skips the check)"
                ))))?;
        }
        Ok(())
    }

    /// Pushes the image whose manifest is `manifest_bytes` (its blobs in `store`) to every
    /// destination, in order (later ones on the same registry mount from the first).
    pub fn push_from_store(
        &self,
        store: &Store,
        manifest_bytes: &[u8],
        media_type: &MediaType,
        destinations: &[Reference],
    ) -> Result<Vec<PushOutcome>, BuildError> {
        let blobs = StoreBlobs { store };
        self.blocking(|me| {
            me.block_on(me.inner.client.push_image(
                manifest_bytes,
                media_type,
                &blobs,
                destinations,
            ))
        })
        .map_err(BuildError::registry(None))
    }
}

/// The store seen as the registry client's blob source and sink.
struct StoreBlobs<'a> {
    store: &'a Store,
}

impl BlobSource for StoreBlobs<'_> {
    fn open_blob(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut file = self.store.open_blob(digest).map_err(io::Error::other)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }
}

impl BlobSink for StoreBlobs<'_> {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest)
    }

    fn begin_blob(&self) -> io::Result<Box<dyn BlobWrite>> {
        let writer = self.store.blob_writer().map_err(io::Error::other)?;
        Ok(Box::new(StoreBlobWrite(writer)))
    }
}

struct StoreBlobWrite(BlobWriter);

impl Write for StoreBlobWrite {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl BlobWrite for StoreBlobWrite {
    fn commit(self: Box<Self>, expected: &Digest, size: u64) -> io::Result<()> {
        self.0
            .commit(Some(expected), Some(size))
            .map(|_| ())
            .map_err(io::Error::other)
    }
}
