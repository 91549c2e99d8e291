//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while preparing or running a step.
///
/// A step that runs and exits non-zero is *not* an error: it is a [`crate::StepStatus`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Neither user namespaces nor chroot can be used on this host.
    #[error("{0}")]
    NoIsolation(String),
    /// The spec is unusable (named field and reason).
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// Starting or talking to the helper process failed.
    #[error("sandbox helper {helper}: {message}")]
    Helper {
        /// The binary that was re-executed.
        helper: PathBuf,
        /// What failed.
        message: String,
    },
    /// Writing the uid/gid maps of the step's user namespace failed.
    #[error("writing the id maps of the step's user namespace: {0}")]
    IdMap(String),
    /// The helper could not prepare the step's filesystem or namespaces.
    #[error("preparing the step: {0}")]
    Setup(String),
    /// USER could not be resolved against the image's `/etc/passwd` / `/etc/group`, or names
    /// an id that does not exist in the step's user namespace.
    #[error("{0}")]
    User(String),
    /// The step's executable could not be started.
    #[error("{0}")]
    Exec(String),
    /// The step was cancelled through its [`crate::CancelHandle`]; all its processes are gone.
    #[error("the step was cancelled")]
    Cancelled,
    /// A local I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
