//! What names a remote file's version without downloading it (`ADD https://…` without
//! `--checksum`): the server's `ETag`, else its `Last-Modified`, read with one `HEAD` request.
//! The step cache keys such an ADD by it, so an unchanged file is not fetched again.

use reqwest::header::{ETAG, LAST_MODIFIED};

use crate::client::RegistryClient;
use crate::error::RegistryError;

/// The longest validator kept: a longer header is not a version name but noise.
const MAX_VALIDATOR_CHARS: usize = 1024;

impl RegistryClient {
    /// `etag:<ETag>` or `last-modified:<Last-Modified>` of `url` (redirects followed), from a
    /// `HEAD`; `None` when the server sends neither (the file must then be downloaded to be
    /// known). Errors name the URL with its credentials redacted.
    pub async fn url_validator(&self, url: &str) -> Result<Option<String>, RegistryError> {
        let target = self.url_target(url)?;
        let action = format!("HEAD of {}", target.shown);
        let response = target
            .http
            .head(target.parsed.clone())
            .send()
            .await
            .map_err(|e| RegistryError::Connect {
                registry: target.host.clone(),
                action: action.clone(),
                cause: crate::transport_error::describe_send_error(&e).0,
            })?;
        if !response.status().is_success() {
            return Err(crate::transport::status_error(&target.host, &action, response).await);
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= MAX_VALIDATOR_CHARS)
                .map(str::to_owned)
        };
        Ok(header(ETAG)
            .map(|e| format!("etag:{e}"))
            .or_else(|| header(LAST_MODIFIED).map(|t| format!("last-modified:{t}"))))
    }
}
