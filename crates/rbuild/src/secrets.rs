//! Build secrets (`--secret id=ID,src=PATH` / `id=ID,env=VAR`), consumed by
//! `RUN --mount=type=secret`. A secret's bytes reach only the step's private tmpfs (or its
//! environment with `env=`): never a layer, a log line, an error message, a cache key, the
//! history or the config.

use std::path::PathBuf;

/// Where a secret's bytes come from. Its `Debug` form never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file, read when a step mounts the secret (`--secret id=ID,src=PATH`).
    File(PathBuf),
    /// An environment variable of the builder, read when a step mounts the secret
    /// (`--secret id=ID,env=VAR`).
    Env(String),
    /// The bytes themselves (for embedders holding the secret in memory).
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(v) => write!(f, "Env({v})"),
            SecretSource::Bytes(b) => write!(f, "Bytes(<{} bytes redacted>)", b.len()),
        }
    }
}

impl SecretSource {
    /// Reads the secret. The error names the file or variable, never the content.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            SecretSource::File(path) => std::fs::read(path)
                .map_err(|e| format!("cannot read the file {}: {e}", path.display())),
            SecretSource::Env(var) => std::env::var_os(var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .ok_or_else(|| format!("the environment variable {var} is not set")),
            SecretSource::Bytes(b) => Ok(b.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes_and_errors_name_the_source() {
        let s = SecretSource::Bytes(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Bytes(<7 bytes redacted>)");
        assert_eq!(s.read().unwrap(), b"hunter2");
        let e = SecretSource::Env("RBUILD_TEST_SURELY_UNSET_VAR".into())
            .read()
            .unwrap_err();
        assert_eq!(
            e,
            "the environment variable RBUILD_TEST_SURELY_UNSET_VAR is not set"
        );
        let e = SecretSource::File("/nonexistent/secret".into())
            .read()
            .unwrap_err();
        assert!(
            e.starts_with("cannot read the file /nonexistent/secret:"),
            "{e}"
        );
    }
}
