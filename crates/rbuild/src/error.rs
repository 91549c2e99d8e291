//! The engine's errors: one typed variant per kind of failure, each a single line that names
//! the file, line or entry concerned.

use std::path::PathBuf;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The build context cannot be used.
    #[error("build context {path}: {reason}")]
    Context {
        /// The context as given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The Dockerfile cannot be read.
    #[error("Dockerfile {path}: {reason}")]
    Dockerfile {
        /// The path tried.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The Dockerfile does not parse or plan (`Dockerfile:LINE:COL: message`).
    #[error("{0}")]
    Plan(String),
    /// A `.dockerignore` pattern is malformed.
    #[error("{file}: {source}")]
    Ignore {
        /// The ignore file.
        file: PathBuf,
        /// The bad pattern.
        source: crate::dockerignore::PatternError,
    },
    /// A step failed (`Dockerfile:3: COPY failed: file not found in build context: x`).
    #[error("{file}:{line}: {message}")]
    Step {
        /// The Dockerfile's name.
        file: String,
        /// The step's line.
        line: usize,
        /// What went wrong, starting with the instruction.
        message: String,
    },
    /// RUN cannot run: no sandbox works here.
    #[error("{file}:{line}: RUN needs a sandbox: {reason}")]
    RunUnavailable {
        /// The Dockerfile's name.
        file: String,
        /// The step's line.
        line: usize,
        /// Why none is available.
        reason: String,
    },
    /// A RUN command exited with a non-zero code.
    #[error("{file}:{line}: RUN {command} exited with code {code}")]
    RunFailed {
        /// The Dockerfile's name.
        file: String,
        /// The step's line.
        line: usize,
        /// The command as written.
        command: String,
        /// Its exit code.
        code: i32,
    },
    /// A base image is not in the store.
    #[error("base image {reference}: {reason}")]
    BaseImage {
        /// The normalised reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A registry operation (pull or push) failed, said in the engine's words.
    #[error("registry: {0}")]
    Registry(String),
    /// A registry client call failed: what the engine was doing, and the client's error.
    #[error("registry: {}{source}", doing_prefix(.doing))]
    RegistryCall {
        /// What the engine was doing (`push failed`, a repository...), when it says more
        /// than the client's error.
        doing: Option<String>,
        /// The client's error.
        #[source]
        source: Box<rbuild_registry::RegistryError>,
    },
    /// The content store failed.
    #[error("store: {0}")]
    Store(#[from] rbuild_store::StoreError),
    /// Writing or applying a layer failed.
    #[error("layer: {0}")]
    Layer(#[from] rbuild_layer::LayerError),
    /// A file operation of the engine failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the engine was doing.
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A path inside a tree the build reads or stages (the context, a stage's or an image's
    /// filesystem, a staging tree) could not be used; paths never leave that tree.
    #[error("{tree}: {source}")]
    Fs {
        /// The tree on the host.
        tree: PathBuf,
        /// What failed, on which path inside the tree.
        source: rbuild_fs::FsError,
    },
    /// An output (OCI layout, docker-archive, digest file) could not be written.
    #[error("output {path}: {reason}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A provenance or SBOM document could not be made.
    #[error("attestation: {0}")]
    Attestation(#[from] rbuild_attest::AttestError),
    /// The build was cancelled through its [`CancelToken`](crate::CancelToken).
    #[error("build cancelled")]
    Cancelled,
}

/// `doing: ` before a registry client's error, or nothing.
fn doing_prefix(doing: &Option<String>) -> String {
    doing
        .as_deref()
        .map(|d| format!("{d}: "))
        .unwrap_or_default()
}

impl BuildError {
    /// The exit code a CLI should end with for this error: the failing RUN's own code, `None`
    /// for every other error (which means 1).
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            BuildError::RunFailed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A failure inside the tree at `tree`.
    pub(crate) fn fs(tree: &std::path::Path) -> impl FnOnce(rbuild_fs::FsError) -> BuildError + '_ {
        move |source| BuildError::Fs {
            tree: tree.to_path_buf(),
            source,
        }
    }

    /// A registry client's error, with what the engine was doing when it says more.
    pub(crate) fn registry(
        doing: Option<String>,
    ) -> impl FnOnce(rbuild_registry::RegistryError) -> BuildError {
        move |source| BuildError::RegistryCall {
            doing,
            source: Box::new(source),
        }
    }

    /// An I/O error while doing `what` to `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { what, path, source }
    }
}
