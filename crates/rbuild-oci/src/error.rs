//! The one error type of this crate.

/// Everything that can be wrong with an OCI value: a malformed digest, reference, platform or
/// media type, undecodable JSON, or a decoded document that fails `validate()`.
///
/// Each variant's `Display` is complete and none has a `source()`, so printing the error as a
/// chain shows every cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// A digest string does not follow the OCI grammar `algorithm:encoded`.
    #[error(
        "invalid digest {:?}: {reason}",
        crate::truncate_for_message(input, crate::MAX_MESSAGE_INPUT_CHARS)
    )]
    InvalidDigest {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image reference cannot be parsed.
    #[error(
        "invalid image reference {:?}: {reason}",
        crate::truncate_for_message(input, crate::MAX_MESSAGE_INPUT_CHARS)
    )]
    InvalidReference {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A platform string such as `linux/arm64/v8` cannot be parsed.
    #[error(
        "invalid platform {:?}: {reason}",
        crate::truncate_for_message(input, crate::MAX_MESSAGE_INPUT_CHARS)
    )]
    InvalidPlatform {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document could not be decoded.
    #[error(
        "cannot decode {what}: {}",
        crate::truncate_for_message(&error.to_string(), crate::MAX_MESSAGE_INPUT_CHARS)
    )]
    Json {
        /// Which kind of document (for example `image manifest`).
        what: &'static str,
        /// The decoder's error, with line and column (shown in this error's message, cut
        /// short: it may quote the document).
        error: serde_json::Error,
    },
    /// A document is larger than its limit; it was not decoded.
    #[error("{what} of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Which kind of document (for example `image config`).
        what: &'static str,
        /// Its size (as read so far, or as its descriptor says).
        size: u64,
        /// The limit ([`crate::MAX_MANIFEST_BYTES`] or [`crate::MAX_CONFIG_BYTES`]).
        limit: u64,
    },
    /// A decoded document breaks a rule of the OCI or Docker specification.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which kind of document or field (for example `image config`).
        what: &'static str,
        /// What is wrong, naming the field.
        reason: String,
    },
}

impl OciError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        OciError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}
