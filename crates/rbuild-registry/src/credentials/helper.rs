//! Docker credential helpers: `docker-credential-NAME get|store`, JSON over stdin/stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::{Credential, CredentialError};
use crate::secret::Secret;

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Asks `docker-credential-NAME get` for the credential of `server` (a host, or Docker Hub's
/// key). `Ok(None)` when the helper says it has none. The helper is looked for in `helper_dir`
/// first, then in `PATH`.
pub fn run_helper_get(
    name: &str,
    server: &str,
    helper_dir: Option<&Path>,
) -> Result<Option<Credential>, CredentialError> {
    let output = run(name, "get", server, server.as_bytes(), helper_dir)?;
    if !output.status.success() {
        let text = first_line(&output.stdout, &output.stderr);
        // The helper protocol's "not found" answer, as docker-credential-helpers prints it.
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(helper_error(name, server, output.status, &text));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|e| CredentialError::Helper {
            helper: name.to_owned(),
            registry: server.to_owned(),
            message: format!("answer is not the expected JSON ({e})"),
        })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    // `<token>` as user name marks an identity (refresh) token in the helper protocol.
    Ok(Some(if answer.username == "<token>" {
        Credential::IdentityToken(Secret::new(answer.secret))
    } else {
        Credential::Basic {
            username: answer.username,
            password: Secret::new(answer.secret),
        }
    }))
}

/// Stores a credential with `docker-credential-NAME store`.
pub fn run_helper_store(
    name: &str,
    server: &str,
    username: &str,
    password: &Secret,
    helper_dir: Option<&Path>,
) -> Result<(), CredentialError> {
    let body = serde_json::json!({
        "ServerURL": server,
        "Username": username,
        "Secret": password.expose(),
    })
    .to_string();
    let output = run(name, "store", server, body.as_bytes(), helper_dir)?;
    if output.status.success() {
        Ok(())
    } else {
        let text = first_line(&output.stdout, &output.stderr);
        Err(helper_error(name, server, output.status, &text))
    }
}

fn run(
    name: &str,
    verb: &str,
    server: &str,
    input: &[u8],
    helper_dir: Option<&Path>,
) -> Result<std::process::Output, CredentialError> {
    let program = format!("docker-credential-{name}");
    // A configured helper directory is searched first, then PATH, as the CLI's `--helper-dir`.
    let command_path = helper_dir
        .map(|dir| dir.join(&program))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(&program));
    let spawn_err = |e: std::io::Error| CredentialError::Helper {
        helper: name.to_owned(),
        registry: server.to_owned(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{program} is not installed or not in PATH")
        } else {
            format!("cannot run {program}: {e}")
        },
    };
    let mut child = Command::new(&command_path)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is not an error by itself.
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().map_err(spawn_err)
}

/// The helper's own explanation; on the error path stdout holds no credential.
fn first_line(stdout: &[u8], stderr: &[u8]) -> String {
    let pick = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    String::from_utf8_lossy(pick)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect()
}

fn helper_error(
    name: &str,
    server: &str,
    status: std::process::ExitStatus,
    text: &str,
) -> CredentialError {
    CredentialError::Helper {
        helper: name.to_owned(),
        registry: server.to_owned(),
        message: if text.is_empty() {
            format!("exited with {status}")
        } else {
            format!("exited with {status}: {text}")
        },
    }
}
