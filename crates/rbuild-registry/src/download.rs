//! Plain HTTP(S) downloads (a Dockerfile's `ADD https://…`) through the same transport as
//! registry requests: the client's TLS options for the URL's host, connect and read timeouts,
//! retries with backoff. The body is streamed into a file, hashed on the way, and cut off at a
//! size limit, so neither a huge nor an endless nor a silent server can exhaust the build.

use std::io::{Seek, SeekFrom, Write};
use std::time::SystemTime;

use rbuild_oci::{Digest, Sha256Hasher};
use reqwest::header::LAST_MODIFIED;

use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::options::Direction;
use crate::secret::redact_url;
use crate::transport::{build_http, is_retryable_status};
use crate::transport_error::describe_send_error;

/// The default limit on a downloaded URL's body (`ADD https://…`): 8 GiB. BuildKit has none;
/// ours stops an endless body before it fills the disk.
pub const MAX_URL_DOWNLOAD_BYTES: u64 = 8 << 30;

/// One download: where from, where to, and how much at most.
#[derive(Debug)]
pub struct UrlDownload<'a> {
    /// An `http://` or `https://` URL (redirects are followed).
    pub url: &'a str,
    /// The file the body is written to, from its start (it is truncated before a retry).
    pub file: &'a mut std::fs::File,
    /// Bodies larger than this are refused: unread when announced so, cut off otherwise.
    pub max_bytes: u64,
}

impl<'a> UrlDownload<'a> {
    /// A download of `url` into `file` with the default limit, [`MAX_URL_DOWNLOAD_BYTES`].
    pub fn new(url: &'a str, file: &'a mut std::fs::File) -> UrlDownload<'a> {
        UrlDownload {
            url,
            file,
            max_bytes: MAX_URL_DOWNLOAD_BYTES,
        }
    }
}

/// What a finished download gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedUrl {
    /// The URL finally served, after redirects (credentials in it are not redacted: it is
    /// used for the file name; show it with [`redact_url`]).
    pub final_url: String,
    /// The server's `Last-Modified`, if it sent a valid one.
    pub last_modified: Option<SystemTime>,
    /// The sha256 of the body.
    pub digest: Digest,
    /// The body's size in bytes.
    pub size: u64,
}

/// A URL to fetch: parsed, shown (credentials redacted, cut), its host and an HTTP client
/// with the client's TLS options for that host.
pub(crate) struct UrlTarget {
    pub shown: String,
    pub parsed: reqwest::Url,
    pub host: String,
    pub http: reqwest::Client,
}

impl RegistryClient {
    /// Checks an `http(s)://` URL and makes the HTTP client for its host.
    pub(crate) fn url_target(&self, url: &str) -> Result<UrlTarget, RegistryError> {
        let shown =
            rbuild_oci::truncate_for_message(&redact_url(url), rbuild_oci::MAX_MESSAGE_INPUT_CHARS)
                .into_owned();
        let invalid = |reason: String| RegistryError::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("only http and https can be downloaded".to_owned()));
        }
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(invalid("no host".to_owned())),
        };
        let options = self.options();
        let http = build_http(options, &options.endpoint(&host, Direction::Pull))?;
        Ok(UrlTarget {
            shown,
            parsed,
            host,
            http,
        })
    }

    /// Downloads `request.url` into `request.file`, retrying refused or broken connections,
    /// timeouts, 5xx and 429 per the client's [`crate::RetryPolicy`] (a broken body starts
    /// over). Errors name the URL (credentials redacted): [`RegistryError::Connect`] for a
    /// server that cannot be reached or goes silent longer than the read timeout,
    /// [`RegistryError::Status`] for an HTTP error, [`RegistryError::TooLarge`] for a body
    /// above `max_bytes`.
    pub async fn download_url(
        &self,
        request: UrlDownload<'_>,
    ) -> Result<DownloadedUrl, RegistryError> {
        let UrlTarget {
            shown,
            parsed,
            host,
            http,
        } = self.url_target(request.url)?;
        let options = self.options();
        let action = format!("download of {shown}");
        let policy = options.retry;
        let local = |error: std::io::Error| RegistryError::LocalFile {
            what: format!("writing the download of {shown}"),
            error,
        };
        let mut attempt = 0u32;
        loop {
            let failure = match http.get(parsed.clone()).send().await {
                Err(e) => RegistryError::Connect {
                    registry: host.clone(),
                    action: action.clone(),
                    cause: describe_send_error(&e).0,
                },
                Ok(response) if is_retryable_status(response.status()) => {
                    crate::transport::status_error(&host, &action, response).await
                }
                Ok(response) if !response.status().is_success() => {
                    return Err(crate::transport::status_error(&host, &action, response).await);
                }
                Ok(mut response) => {
                    if let Some(announced) = response.content_length() {
                        if announced > request.max_bytes {
                            return Err(RegistryError::TooLarge {
                                registry: host,
                                action,
                                what: "body".to_owned(),
                                size: Some(announced),
                                limit: request.max_bytes,
                            });
                        }
                    }
                    let final_url = response.url().to_string();
                    let last_modified = response
                        .headers()
                        .get(LAST_MODIFIED)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| httpdate::parse_http_date(v).ok());
                    request.file.set_len(0).map_err(local)?;
                    request.file.seek(SeekFrom::Start(0)).map_err(local)?;
                    let mut hasher = Sha256Hasher::new();
                    let broken = loop {
                        match response.chunk().await {
                            Ok(Some(chunk)) => {
                                if hasher.len() + chunk.len() as u64 > request.max_bytes {
                                    return Err(RegistryError::TooLarge {
                                        registry: host,
                                        action,
                                        what: "body".to_owned(),
                                        size: None,
                                        limit: request.max_bytes,
                                    });
                                }
                                hasher.update(&chunk);
                                request.file.write_all(&chunk).map_err(local)?;
                            }
                            Ok(None) => break None,
                            Err(e) => break Some(describe_send_error(&e).0),
                        }
                    };
                    match broken {
                        None => {
                            request.file.flush().map_err(local)?;
                            let (digest, size) = hasher.finish();
                            return Ok(DownloadedUrl {
                                final_url,
                                last_modified,
                                digest,
                                size,
                            });
                        }
                        Some(cause) => RegistryError::Connect {
                            registry: host.clone(),
                            action: action.clone(),
                            cause: format!("{cause} after {} bytes", hasher.len()),
                        },
                    }
                }
            };
            if !failure.is_retryable() || attempt >= policy.max_retries {
                return Err(failure);
            }
            attempt += 1;
            tracing::warn!(url = %shown, error = %failure, attempt, "download failed; retrying");
            tokio::time::sleep(policy.delay(attempt, failure.retry_after())).await;
        }
    }
}
