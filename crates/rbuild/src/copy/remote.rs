//! ADD of a remote file: an HTTP(S) GET through `rbuild-registry`'s transport (redirects
//! followed, rustls with the system's roots, connect and read timeouts, retries), the body
//! streamed to a temporary file with a size limit and hashed on the way, `--checksum` verified,
//! the file written 0600 with `Last-Modified` as its mtime, as BuildKit does.

use std::io::{Seek, SeekFrom};
use std::time::UNIX_EPOCH;

use super::staging::{EntryMeta, Staging};
use super::CopyRequest;
use rbuild_oci::Digest;
use rbuild_registry::{redact_url, CredentialChain, DownloadedUrl, RegistryClient, UrlDownload};

/// Fetches `url` into the staging tree.
pub fn add_url(
    url: &str,
    request: &CopyRequest<'_>,
    dest_abs: &str,
    dest_slash: bool,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    // The build's TLS options, retries and timeouts apply; no registry credentials are sent
    // to an ADD URL, as in BuildKit.
    let client = RegistryClient::new(
        request.url_options.clone().unwrap_or_default(),
        CredentialChain::empty(),
    );
    let (mut file, downloaded) = download(&client, url)?;
    if let Some(expected) = &request.checksum {
        let expected = Digest::parse(expected)
            .map_err(|e| format!("ADD failed: --checksum {expected}: {e}"))?;
        if downloaded.digest != expected {
            return Err(format!(
                "ADD failed: digest mismatch for {}: expected {expected}, got {}",
                redact_url(url),
                downloaded.digest
            ));
        }
    }
    let name = downloaded
        .final_url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .find(|s| !s.is_empty() && !s.contains(':'))
        .unwrap_or("__unnamed__")
        .to_string();
    let target = if dest_slash || staging.is_dir_in_stage(dest_abs) {
        format!("{}/{name}", dest_abs.trim_end_matches('/'))
    } else {
        dest_abs.to_string()
    };
    let (uid, gid) = request.chown.unwrap_or((0, 0));
    let mode = request
        .chmod
        .as_ref()
        .map_or(0o600, |c| c.apply(0o600, false));
    let mtime = downloaded
        .last_modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(request.time);
    staging
        .put_file(
            &target,
            &mut file,
            EntryMeta {
                mode,
                uid,
                gid,
                mtime: (mtime, 0),
            },
        )
        .map_err(|e| e.to_string())
}

/// Downloads `url` with `client` into an anonymous temporary file (never into memory): the
/// file, positioned at its start, and what the download gave.
fn download(client: &RegistryClient, url: &str) -> Result<(std::fs::File, DownloadedUrl), String> {
    let fail = |m: String| format!("ADD failed: {m}");
    let mut file = tempfile::tempfile().map_err(|e| {
        fail(format!(
            "cannot create a temporary file for {}: {e}",
            redact_url(url)
        ))
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the download runtime: {e}")))?;
    let downloaded = runtime
        .block_on(client.download_url(UrlDownload::new(url, &mut file)))
        .map_err(|e| fail(e.to_string()))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| fail(format!("{}: {e}", redact_url(url))))?;
    Ok((file, downloaded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_registry::RegistryOptions;
    use std::io::Read;
    use std::time::{Duration, Instant};

    #[test]
    fn a_silent_server_fails_with_a_timeout_within_the_read_timeout() {
        // Accepts, reads the request, never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = done_rx.recv();
        });
        let options = RegistryOptions {
            read_timeout: Duration::from_millis(500),
            retry: rbuild_registry::RetryPolicy::none(),
            ..RegistryOptions::default()
        };
        let client = RegistryClient::new(options, CredentialChain::default());
        let started = Instant::now();
        let error = download(&client, &format!("http://127.0.0.1:{port}/file")).unwrap_err();
        let elapsed = started.elapsed();
        done_tx.send(()).unwrap();
        server.join().unwrap();
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert!(
            error.starts_with(&format!("ADD failed: cannot reach 127.0.0.1:{port} for download of http://127.0.0.1:{port}/file: ")),
            "{error}"
        );
        assert!(error.contains("timed out"), "{error}");
    }
}
