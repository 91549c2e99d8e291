//! Turning transport failures into short, credential-free causes.

use std::error::Error as StdError;

/// What kind of failure a request error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendFailure {
    /// The server's certificate was refused: retrying or falling back cannot help.
    Certificate,
    /// The peer speaks TLS but the handshake failed otherwise (e.g. it refused us with an
    /// alert because it wants a client certificate).
    Handshake,
    /// The peer does not speak TLS (an HTTPS request to a plain HTTP server).
    NotTls,
    /// Refused, reset, timed out, stalled, DNS…: worth retrying.
    Connection,
}

/// The cause chain of `error` without URLs (they may carry upload state), and its class.
pub(crate) fn describe_send_error(error: &reqwest::Error) -> (String, SendFailure) {
    let mut parts: Vec<String> = Vec::new();
    let mut class = SendFailure::Connection;
    if error.is_timeout() {
        parts.push("timed out (no data within the read timeout)".to_owned());
    }
    let mut current: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(e) = current {
        if let Some(tls) = as_rustls_error(e) {
            class = match tls {
                rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::UnsupportedNameType => SendFailure::Certificate,
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                    SendFailure::NotTls
                }
                rustls::Error::AlertReceived(_)
                | rustls::Error::PeerIncompatible(_)
                | rustls::Error::PeerMisbehaved(_) => SendFailure::Handshake,
                _ => class,
            };
        }
        let text = e.to_string();
        // hyper's wrapper lines say nothing a person can act on.
        let noise = text.starts_with("client error (")
            || text == "error sending request"
            // The timeout is already said, with what it means.
            || (error.is_timeout() && text.contains("timed out"));
        if !noise && !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    if parts.is_empty() {
        parts.push(error.without_url_ref());
    }
    (parts.join(": "), class)
}

/// `io::Error` hides its inner error from `source()` (and may wrap another `io::Error`);
/// look inside every layer.
fn as_rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = e;
    for _ in 0..8 {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner: &(dyn StdError + 'static) =
            current.downcast_ref::<std::io::Error>()?.get_ref()?;
        current = inner;
    }
    None
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(&format!(" ({url})"), "");
            text = text.replace(url.as_str(), "<url>");
        }
        text
    }
}
