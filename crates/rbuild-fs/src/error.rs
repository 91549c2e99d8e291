//! The one error type of the crate: which operation failed on which path (relative to its
//! root), and why.

use std::path::PathBuf;

/// Why an operation inside a root failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// A system call failed.
    #[error("{op} {}: {source}", shown(path))]
    Io {
        /// What was being done (`open`, `list`, `read link`...).
        op: &'static str,
        /// The path, relative to the root it was resolved in.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Resolving the path met more symbolic links than [`crate::MAX_SYMLINKS`].
    #[error(
        "{}: more than {} symbolic links to follow",
        shown(path),
        crate::MAX_SYMLINKS
    )]
    TooManyLinks {
        /// The path being resolved.
        path: PathBuf,
    },
    /// The path names something of the wrong type (a directory expected, a regular file...).
    #[error("{}: {what}", shown(path))]
    WrongType {
        /// The path concerned.
        path: PathBuf,
        /// What it should have been (`not a directory`, `not a regular file`).
        what: &'static str,
    },
}

impl FsError {
    /// Whether the error says the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(rustix::io::Errno) -> FsError {
        let path = path.into();
        move |e| FsError::Io {
            op,
            path,
            source: e.into(),
        }
    }
}

/// A relative path as errors show it: `.` for the root itself.
fn shown(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        ".".into()
    } else {
        path.display().to_string()
    }
}
