//! ADD of a remote file: an HTTP(S) GET (redirects followed, rustls with the system's roots),
//! `--checksum` verified, the file written 0600 with `Last-Modified` as its mtime, as BuildKit
//! does.

use super::staging::{EntryMeta, Staging};
use super::CopyRequest;
use rbuild_oci::Digest;

/// Fetches `url` into the staging tree.
pub fn add_url(
    url: &str,
    request: &CopyRequest<'_>,
    dest_abs: &str,
    dest_slash: bool,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let (body, last_modified, final_url) = fetch(url)?;
    if let Some(expected) = &request.checksum {
        let expected = Digest::parse(expected)
            .map_err(|e| format!("ADD failed: --checksum {expected}: {e}"))?;
        let actual = Digest::sha256_of(&body);
        if actual != expected {
            return Err(format!(
                "ADD failed: digest mismatch for {url}: expected {expected}, got {actual}"
            ));
        }
    }
    let name = final_url
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
    let mtime = last_modified.unwrap_or(request.time);
    staging
        .put_file(
            &target,
            &mut body.as_slice(),
            EntryMeta {
                mode,
                uid,
                gid,
                mtime: (mtime, 0),
            },
        )
        .map_err(|e| e.to_string())
}

/// GETs `url` (redirects followed): the body, the `Last-Modified` time and the URL finally
/// served.
fn fetch(url: &str) -> Result<(Vec<u8>, Option<i64>, String), String> {
    let fail = |m: String| format!("ADD failed: {url}: {m}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("HTTP status {status}")));
        }
        let final_url = response.url().to_string();
        let last_modified = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        let body = response.bytes().await.map_err(|e| fail(error_chain(&e)))?;
        Ok((body.to_vec(), last_modified, final_url))
    })
}

/// An error with its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])? as i64
        + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("garbage"), None);
    }
}
