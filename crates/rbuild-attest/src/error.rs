//! The crate's one error type.

/// Why a report, provenance or SBOM document could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A layer blob could not be read as a (gzip, zstd or plain) tar stream.
    #[error("layer {digest}: {reason}")]
    Layer {
        /// The layer's digest.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A package database inside the image could not be read.
    #[error("{path} in the image: {reason}")]
    PackageDb {
        /// The database's path in the image.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A document could not be encoded.
    #[error("cannot encode the {what}: {source}")]
    Encode {
        /// Which document.
        what: &'static str,
        /// The encoder's error.
        source: serde_json::Error,
    },
}
