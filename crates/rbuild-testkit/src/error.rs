//! The test kit's error type.

/// Why a test fixture could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The registry binary is not installed.
    #[error("{0} not found: apt-get install docker-registry")]
    MissingRegistry(String),
    /// The registry did not become ready.
    #[error("docker-registry did not start: {0}")]
    RegistryStart(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// Password hashing failed.
    #[error("htpasswd: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
    /// Building a test image failed.
    #[error("test image: {0}")]
    Image(String),
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> TestkitError {
        TestkitError::Io {
            context: context.into(),
            source,
        }
    }
}
