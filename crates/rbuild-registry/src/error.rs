//! The one error type of the registry client: it says what failed where, carries the
//! registry's status and error codes, and whether trying again can help.

use std::fmt;
use std::time::Duration;

use rbuild_oci::{truncate_for_message, Digest, MAX_MESSAGE_INPUT_CHARS};

use crate::credentials::CredentialError;

/// One entry of a registry's `{"errors": [{"code", "message"}]}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode {
    /// The code, e.g. `BLOB_UNKNOWN`, `DENIED`, `MANIFEST_BLOB_UNKNOWN`.
    pub code: String,
    /// The registry's message.
    pub message: String,
}

impl ErrorCode {
    /// Parses the error codes from a registry's error body; empty when the body has none.
    pub fn parse_body(body: &[u8]) -> Vec<ErrorCode> {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        serde_json::from_slice::<Body>(body)
            .map(|b| {
                b.errors
                    .into_iter()
                    .map(|e| ErrorCode {
                        code: e.code,
                        message: e.message,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// ` (announced N bytes)` or nothing.
struct SizeSuffix(Option<u64>);

impl fmt::Display for SizeSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(size) => write!(f, " ({size} bytes)"),
            None => Ok(()),
        }
    }
}

/// Formats error codes as ` (CODE: message; CODE2: message)`, or nothing.
struct CodesSuffix<'a>(&'a [ErrorCode]);

impl fmt::Display for CodesSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(" (")?;
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            // A registry's text, cut short: a hostile one could send 64 KiB of it.
            let code = truncate_for_message(&c.code, MAX_MESSAGE_INPUT_CHARS);
            if c.message.is_empty() {
                write!(f, "{code}")?;
            } else {
                let message = truncate_for_message(&c.message, MAX_MESSAGE_INPUT_CHARS);
                write!(f, "{code}: {message}")?;
            }
        }
        f.write_str(")")
    }
}

/// Content that does not match its descriptor (boxed in [`RegistryError`] to keep it small).
#[derive(Debug, thiserror::Error)]
#[error("{what} from {registry} does not match its descriptor: expected {expected} ({expected_size} bytes), got {}", ActualSuffix(actual, *actual_size))]
pub struct DigestMismatch {
    /// The registry host.
    pub registry: String,
    /// `blob sha256:…` or `manifest team/app:tag`.
    pub what: String,
    /// The digest asked for.
    pub expected: Digest,
    /// The size asked for.
    pub expected_size: u64,
    /// The digest received; `None` when the registry sent more bytes than the descriptor
    /// says and the download was stopped (the digest of a cut-off body means nothing).
    pub actual: Option<Digest>,
    /// The size received (for a stopped download: how many bytes had arrived).
    pub actual_size: u64,
}

/// `sha256:… (N bytes)`, or `more than N bytes (stopped)` for a body cut off at its limit.
struct ActualSuffix<'a>(&'a Option<Digest>, u64);

impl fmt::Display for ActualSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(digest) => write!(f, "{digest} ({} bytes)", self.1),
            None => write!(f, "at least {} bytes (download stopped)", self.1),
        }
    }
}

/// Everything that can go wrong talking to a registry. No variant ever holds a credential.
///
/// Each variant's `Display` is complete and no variant has a `source()` (the wrapped
/// [`CredentialError`] is transparent), so printing the error as a chain shows every cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// 401 or 403: missing, wrong or insufficient credentials. Never retried.
    #[error(
        "{status} from {registry} for {action}: {reason}{}",
        CodesSuffix(codes)
    )]
    Auth {
        /// 401 or 403.
        status: u16,
        /// The registry host.
        registry: String,
        /// What we were doing, e.g. `push to team/app`.
        action: String,
        /// What to fix, e.g. `no credentials in /root/.docker/config.json for host`.
        reason: String,
        /// The registry's error codes.
        codes: Vec<ErrorCode>,
    },
    /// Any other unexpected HTTP status.
    #[error("{status} from {registry} for {action}{}", CodesSuffix(codes))]
    Status {
        /// The HTTP status.
        status: u16,
        /// The registry host.
        registry: String,
        /// What we were doing.
        action: String,
        /// The registry's error codes.
        codes: Vec<ErrorCode>,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The registry could not be reached, or the connection broke or stalled.
    #[error("cannot reach {registry} for {action}: {cause}")]
    Connect {
        /// The registry host.
        registry: String,
        /// What we were doing.
        action: String,
        /// The cause chain, e.g. `connection refused`.
        cause: String,
    },
    /// The server's TLS certificate is not trusted (or another TLS failure). Not retried.
    #[error("TLS with {registry} failed for {action}: {cause}{hint}")]
    Tls {
        /// The registry host.
        registry: String,
        /// What we were doing.
        action: String,
        /// The TLS library's reason, e.g. `invalid peer certificate: UnknownIssuer`.
        cause: String,
        /// What the user can do about it.
        hint: &'static str,
    },
    /// Content did not match its digest or size; nothing was stored or tagged.
    #[error("{0}")]
    DigestMismatch(Box<DigestMismatch>),
    /// The registry answered something we cannot use.
    #[error("invalid response from {registry} for {action}: {message}")]
    InvalidResponse {
        /// The registry host.
        registry: String,
        /// What we were doing.
        action: String,
        /// What is wrong with it.
        message: String,
    },
    /// An index has no manifest for the platform asked for.
    #[error("{reference} has no image for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The image reference.
        reference: String,
        /// The platform asked for, with its variant (`linux/arm/v7`).
        platform: String,
        /// The entries the index lists, with variants, nested indexes marked as such
        /// (`linux/amd64, linux/arm/v7, linux/arm64 (an index)`), or `none`.
        available: String,
    },
    /// A document or body is larger than its limit; it was refused before being read whole.
    #[error("{what} from {registry} for {action} is larger than the limit of {limit} bytes{}", SizeSuffix(*size))]
    TooLarge {
        /// The host.
        registry: String,
        /// What we were doing.
        action: String,
        /// What was too large, e.g. `image config sha256:…` or `body of http://host/file`.
        what: String,
        /// The size it announced (or had reached when reading stopped), if known.
        size: Option<u64>,
        /// The limit.
        limit: u64,
    },
    /// Reading the credentials failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A local blob source or sink failed.
    #[error("local blob {digest}: {message}")]
    Local {
        /// The blob.
        digest: Digest,
        /// What failed.
        message: String,
    },
    /// A document could not be decoded or is invalid.
    #[error("{context}: {error}")]
    Oci {
        /// Where it came from.
        context: String,
        /// The decoder's or validator's error (shown in this error's message).
        error: rbuild_oci::OciError,
    },
    /// A URL to download cannot be used (not http or https, no host, malformed).
    #[error("URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, credentials redacted, cut short.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing a download to its local file failed.
    #[error("{what}: {error}")]
    LocalFile {
        /// What was being written, e.g. `the download of http://host/file`.
        what: String,
        /// The OS error (shown in this error's message).
        error: std::io::Error,
    },
    /// A client option is invalid (e.g. an unreadable CA file).
    #[error("registry option: {0}")]
    Config(String),
}

impl RegistryError {
    /// Whether trying the same request again may succeed: 5xx, 429, 408 and connection
    /// errors; never authentication, TLS or digest errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            RegistryError::Connect { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status, if the error is an HTTP answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Auth { status, .. } | RegistryError::Status { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The registry's error codes (empty when it sent none).
    pub fn codes(&self) -> &[ErrorCode] {
        match self {
            RegistryError::Auth { codes, .. } | RegistryError::Status { codes, .. } => codes,
            _ => &[],
        }
    }

    /// The server's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_parsed_and_shown() {
        let codes = ErrorCode::parse_body(
            br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:x"}]}"#,
        );
        let e = RegistryError::Status {
            status: 400,
            registry: "r:5000".into(),
            action: "push of manifest team/app:v1".into(),
            codes,
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "400 from r:5000 for push of manifest team/app:v1 (MANIFEST_BLOB_UNKNOWN: blob unknown to registry)"
        );
        assert!(!e.is_retryable());
        assert_eq!(e.codes()[0].code, "MANIFEST_BLOB_UNKNOWN");
        assert!(ErrorCode::parse_body(b"<html>").is_empty());
    }

    #[test]
    fn long_registry_messages_are_cut_short() {
        let body = format!(
            r#"{{"errors":[{{"code":"DENIED","message":"{}"}}]}}"#,
            "m".repeat(60_000)
        );
        let e = RegistryError::Status {
            status: 400,
            registry: "r".into(),
            action: "a".into(),
            codes: ErrorCode::parse_body(body.as_bytes()),
            retry_after: None,
        };
        let text = e.to_string();
        assert!(text.len() < 400, "{}", text.len());
        assert!(text.ends_with("…(59800 more characters))"), "{text}");
    }

    #[test]
    fn retryable_classes() {
        let status = |s| RegistryError::Status {
            status: s,
            registry: "r".into(),
            action: "a".into(),
            codes: vec![],
            retry_after: None,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(404).is_retryable());
        let auth = RegistryError::Auth {
            status: 401,
            registry: "127.0.0.1:5001".into(),
            action: "push to team/app".into(),
            reason: "no credentials in config.json for 127.0.0.1:5001".into(),
            codes: vec![],
        };
        assert!(!auth.is_retryable());
        assert_eq!(
            auth.to_string(),
            "401 from 127.0.0.1:5001 for push to team/app: no credentials in config.json for 127.0.0.1:5001"
        );
    }
}
