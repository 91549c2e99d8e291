//! Reading response bodies with a limit: a body announced larger than its limit is refused
//! unread, and one that grows past it while arriving is cut off, so a hostile server can never
//! make the client buffer without bound.

use reqwest::Response;

use crate::error::RegistryError;
use crate::transport_error::describe_send_error;

/// The most of a registry's error body read to find its error codes (64 KiB); the rest is
/// ignored. Real error bodies are a few hundred bytes.
pub const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;

/// The largest token server answer accepted (1 MiB). Real answers are a few KiB.
pub const MAX_TOKEN_RESPONSE_BYTES: u64 = 1 << 20;

/// What a limited body is, for messages.
pub(crate) struct BodyLabel<'a> {
    /// The host that sent it.
    pub registry: &'a str,
    /// What we were doing.
    pub action: &'a str,
    /// What the body is, e.g. `manifest team/app:1`.
    pub what: &'a str,
}

/// Reads all of `response`'s body, refusing it unread when its `Content-Length` is above
/// `limit` and stopping as soon as more than `limit` bytes arrived.
pub(crate) async fn read_limited(
    mut response: Response,
    limit: u64,
    label: &BodyLabel<'_>,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = |size: Option<u64>| RegistryError::TooLarge {
        registry: label.registry.to_owned(),
        action: label.action.to_owned(),
        what: label.what.to_owned(),
        size,
        limit,
    };
    if let Some(announced) = response.content_length() {
        if announced > limit {
            return Err(too_large(Some(announced)));
        }
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() as u64 + chunk.len() as u64 > limit {
                    return Err(too_large(None));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(e) => {
                return Err(RegistryError::Connect {
                    registry: label.registry.to_owned(),
                    action: label.action.to_owned(),
                    cause: describe_send_error(&e).0,
                })
            }
        }
    }
}

/// The first [`MAX_ERROR_BODY_BYTES`] of an error answer's body (empty when it cannot be
/// read): enough for the registry's error codes, never more.
pub(crate) async fn read_error_body(mut response: Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = (MAX_ERROR_BODY_BYTES as usize).saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() as u64 >= MAX_ERROR_BODY_BYTES {
            break;
        }
    }
    bytes
}
