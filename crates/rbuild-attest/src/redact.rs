//! Which build args are secret-like: their values never reach a document.

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Parts of a name that mark a secret (`NPM_TOKEN`, `DB_PASSWORD`, `AWS_SECRET_ACCESS_KEY`,
/// `api_key`, `GITHUB_AUTH`...), compared without case.
const SECRET_MARKERS: [&str; 12] = [
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "COOKIE",
    "SESSION",
    "SIGNATURE",
];

/// Proxy args carry `user:password@` often enough to be treated as secrets too.
const PROXY_ARGS: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY"];

/// Whether a build arg named `name` is secret-like.
pub fn is_secret_like(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|m| upper.contains(m)) || PROXY_ARGS.contains(&upper.as_str())
}

/// `value`, or [`REDACTED`] when `name` is secret-like.
pub fn redacted_value<'a>(name: &str, value: &'a str) -> &'a str {
    if is_secret_like(name) {
        REDACTED
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_like_names() {
        for n in [
            "NPM_TOKEN",
            "db_password",
            "AWS_SECRET_ACCESS_KEY",
            "api_key",
            "https_proxy",
            "GH_AUTH",
            "SSH_PRIVATE",
        ] {
            assert!(is_secret_like(n), "{n}");
        }
        for n in ["VERSION", "BASE", "NO_PROXY", "TARGETPLATFORM"] {
            assert!(!is_secret_like(n), "{n}");
        }
        assert_eq!(redacted_value("MY_TOKEN", "abc"), REDACTED);
        assert_eq!(redacted_value("VERSION", "1.2"), "1.2");
    }
}
