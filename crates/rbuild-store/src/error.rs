//! The store's error type.

use std::io;
use std::path::PathBuf;

use rbuild_oci::{Digest, OciError};

/// Everything that can go wrong in the store. Every variant names the file, blob or image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `rename`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The directory exists but is not an OCI image layout rbuild can use.
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A file of the layout (`index.json`, a manifest) is damaged.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Written content does not have the expected digest; nothing was stored.
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the caller expected.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Written content does not have the expected size; nothing was stored.
    #[error("blob size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The digest of what was written.
        digest: Digest,
        /// What the caller expected.
        expected: u64,
        /// What was written.
        actual: u64,
    },
    /// Only sha256 blobs can be written and verified.
    #[error("unsupported digest algorithm in {0} (only sha256 is supported)")]
    UnsupportedDigest(Digest),
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    /// No image of that name is in the store.
    #[error("no image named {0:?} in the store")]
    ImageNotFound(String),
    /// An image name is not a valid `org.opencontainers.image.ref.name`.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The image is an index with no manifest for the wanted platform.
    #[error("image {name:?} has no manifest for platform {platform}")]
    NoPlatform {
        /// The image name.
        name: String,
        /// The wanted platform.
        platform: String,
    },
    /// An image's config does not have one `rootfs.diff_ids` entry per manifest layer: its
    /// layers could not be checked, and an image built on it would be corrupt.
    #[error(
        "image manifest {manifest} lists {layers} layers but its config {config} has {diff_ids} \
         rootfs.diff_ids: the image is refused (it is corrupt or forged)"
    )]
    LayerCountMismatch {
        /// The manifest's digest.
        manifest: Digest,
        /// The config's digest.
        config: Digest,
        /// The number of layers in the manifest.
        layers: usize,
        /// The number of diffIDs in the config.
        diff_ids: usize,
    },
    /// A stored document does not decode or validate.
    #[error("{what}: {source}")]
    Oci {
        /// Which document (for example `manifest sha256:…`).
        what: String,
        /// The decoding or validation error.
        #[source]
        source: OciError,
    },
}

impl StoreError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}
