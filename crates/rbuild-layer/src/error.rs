//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

use rbuild_oci::{Compression, Digest};

/// Everything that can go wrong while finding changes, writing a layer or applying one.
///
/// Each variant names the file or the layer entry it is about, so that its one-line `Display`
/// tells a user what is wrong and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A system call on a file failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `creating`, ...).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Moving a step's overlayfs upper dir into its lower dir failed (see
    /// [`crate::merge_overlay_upper`]).
    #[error("merging a step's changes into the stage's filesystem: {source}")]
    Merge {
        /// What failed, on which path (relative to the directory).
        #[source]
        source: rbuild_fs::FsError,
    },
    /// A path given to this crate is not a clean relative path inside the tree.
    #[error("invalid path {}: {reason}", path.display())]
    InvalidPath {
        /// The rejected path.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file changed while it was being written into a layer.
    #[error("{} changed while it was being written into the layer ({reason})", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// What was seen.
        reason: String,
    },
    /// Something this crate deliberately does not handle (for example overlayfs `redirect_dir`).
    #[error("unsupported: {} {what}", path.display())]
    Unsupported {
        /// The file it was found on.
        path: PathBuf,
        /// What is not supported.
        what: String,
    },
    /// A layer entry would create or change something outside the target directory, or is
    /// otherwise unsafe; the layer is refused.
    #[error("layer entry {entry:?} refused: {reason}")]
    UnsafeEntry {
        /// The entry's name as it appears in the tar (lossily decoded).
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The layer is not a well-formed tar (truncated, bad header, unsupported entry type...).
    #[error("malformed layer at {entry}: {reason}")]
    Malformed {
        /// The entry (or `entry #N` when no name could be read).
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// The uncompressed layer does not hash to the expected diffID.
    #[error("{}", diff_id_mismatch(layer.as_ref(), expected, actual))]
    DiffIdMismatch {
        /// The layer's blob digest, when known (an image's layer).
        layer: Option<Digest>,
        /// The diffID the caller expected (an image config's `rootfs.diff_ids` entry).
        expected: Digest,
        /// The diffID of the bytes read.
        actual: Digest,
    },
    /// An image's layer has a media type that is not a layer this crate can unpack.
    #[error(
        "layer {layer} has media type {media_type:?}, which is not a layer rbuild can unpack \
         (a tar, plain or gzip- or zstd-compressed): the image is refused"
    )]
    UnsupportedMediaType {
        /// The layer's blob digest.
        layer: Digest,
        /// Its media type, as the manifest gives it.
        media_type: String,
    },
    /// An image's layer is not compressed as its media type says.
    #[error(
        "layer {layer} is labelled {media_type} but its bytes are {}: the image's manifest \
         does not describe its layer, the image is refused",
        describe(*found)
    )]
    MediaTypeMismatch {
        /// The layer's blob digest.
        layer: Digest,
        /// Its media type, as the manifest gives it.
        media_type: String,
        /// What its first bytes are.
        found: Compression,
    },
    /// Writing the layer stream failed.
    #[error("writing the layer stream: {0}")]
    Output(#[source] io::Error),
    /// Reading an uncompressed layer to compress it failed.
    #[error("reading the uncompressed layer: {0}")]
    Input(#[source] io::Error),
    /// A worker thread of the write pipeline panicked (a bug).
    #[error("layer write pipeline failed: {0}")]
    Pipeline(&'static str),
}

impl LayerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LayerError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn unsafe_entry(entry: &[u8], reason: impl Into<String>) -> Self {
        LayerError::UnsafeEntry {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(entry: &[u8], reason: impl Into<String>) -> Self {
        LayerError::Malformed {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }
}

fn diff_id_mismatch(layer: Option<&Digest>, expected: &Digest, actual: &Digest) -> String {
    match layer {
        Some(layer) => format!(
            "layer {layer}: its uncompressed bytes have diffID {actual} but the image config says \
             {expected}: the image is refused"
        ),
        None => format!("layer diffID mismatch: expected {expected}, got {actual}"),
    }
}

fn describe(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "not compressed (no gzip or zstd magic)",
        Compression::Gzip => "gzip-compressed",
        Compression::Zstd => "zstd-compressed",
    }
}
