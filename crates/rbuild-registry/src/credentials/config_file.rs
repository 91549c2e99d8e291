//! Docker's `config.json` (and Podman's `auth.json`): reading entries, writing a login.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use super::{helper, Credential, CredentialError, FoundCredential};
use crate::secret::Secret;

/// The key Docker uses for Docker Hub in `auths` and when asking a credential helper.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

const DOCKER_HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Reduces an `auths` key or a registry name to the host (and port) it designates, as
/// Docker's `ConvertToHostname` does: `https://host:5000/v1/` → `host:5000`. Docker Hub's
/// names all become `docker.io`.
pub fn registry_hostname(key: &str) -> String {
    let lower = key.trim().to_ascii_lowercase();
    let without_scheme = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_owned();
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        "docker.io".to_owned()
    } else {
        host
    }
}

/// The server address Docker passes to credential helpers and uses as `auths` key.
fn server_address(registry: &str) -> String {
    let host = registry_hostname(registry);
    if host == "docker.io" {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        host
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// One parsed credentials file.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    raw: RawConfig,
}

impl ConfigFile {
    /// Reads and parses `path`; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<ConfigFile>, CredentialError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(CredentialError::Read {
                    path: path.to_owned(),
                    error,
                })
            }
        };
        ConfigFile::parse(path, &text).map(Some)
    }

    /// Parses `text` as the content of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, CredentialError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_json::from_str(text).map_err(|e| CredentialError::Parse {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                message: json_message(&e),
            })?
        };
        Ok(ConfigFile {
            path: path.to_owned(),
            raw,
        })
    }

    /// The credential for `registry` from this file: `credHelpers` → `credsStore` → `auths`.
    pub fn lookup(
        &self,
        registry: &str,
        helper_dir: Option<&Path>,
    ) -> Result<Option<FoundCredential>, CredentialError> {
        let host = registry_hostname(registry);
        let helper_name = self
            .raw
            .cred_helpers
            .iter()
            .find(|(key, _)| registry_hostname(key) == host)
            .map(|(_, name)| (name, "credHelpers"))
            .or_else(|| self.raw.creds_store.as_ref().map(|n| (n, "credsStore")));
        if let Some((name, kind)) = helper_name {
            if !name.is_empty() {
                if let Some(credential) =
                    helper::run_helper_get(name, &server_address(registry), helper_dir)?
                {
                    return Ok(Some(FoundCredential {
                        credential,
                        source: format!(
                            "{kind} (docker-credential-{name}) in {}",
                            self.path.display()
                        ),
                    }));
                }
            }
        }
        // An exact key wins over a key that merely reduces to the same host.
        let mut entries: Vec<(&String, &RawAuth)> = self
            .raw
            .auths
            .iter()
            .filter(|(key, _)| registry_hostname(key) == host)
            .collect();
        entries.sort_by_key(|(key, _)| *key != registry && **key != server_address(registry));
        for (key, entry) in entries {
            if let Some(credential) = self.decode_entry(key, entry)? {
                return Ok(Some(FoundCredential {
                    credential,
                    source: format!("auths[{key:?}] in {}", self.path.display()),
                }));
            }
        }
        Ok(None)
    }

    fn decode_entry(
        &self,
        key: &str,
        entry: &RawAuth,
    ) -> Result<Option<Credential>, CredentialError> {
        let bad = |message: String| CredentialError::Entry {
            path: self.path.clone(),
            entry: key.to_owned(),
            message,
        };
        if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(Secret::new(token.clone()))));
        }
        if let Some(token) = entry.registrytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::RegistryToken(Secret::new(token.clone()))));
        }
        if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
            let decoded = STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("\"auth\" is not valid base64".to_owned()))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| bad("\"auth\" does not decode to UTF-8 text".to_owned()))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad("\"auth\" must be base64 of \"user:password\"".to_owned()))?;
            return Ok(Some(Credential::Basic {
                username: username.to_owned(),
                password: Secret::new(password),
            }));
        }
        match (&entry.username, &entry.password) {
            (Some(username), Some(password)) if !username.is_empty() => {
                Ok(Some(Credential::Basic {
                    username: username.clone(),
                    password: Secret::new(password.clone()),
                }))
            }
            _ => Ok(None),
        }
    }
}

/// Stores a login for `registry` in the Docker config file at `path`, as `docker login` does:
/// through the configured credential helper (`credHelpers[host]` or `credsStore`) with an empty
/// `auths` entry, or else as base64 `auth` in `auths`. Other content of the file is kept. The
/// file is replaced atomically and is readable by its owner only. Helpers are looked for in
/// `helper_dir` first, then in `PATH`.
pub fn write_login(
    path: &Path,
    registry: &str,
    username: &str,
    password: &Secret,
    helper_dir: Option<&Path>,
) -> Result<(), CredentialError> {
    let write_err = |error| CredentialError::Write {
        path: path.to_owned(),
        error,
    };
    let mut document: serde_json::Value = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            serde_json::from_str(&text).map_err(|e| CredentialError::Parse {
                path: path.to_owned(),
                line: e.line(),
                column: e.column(),
                message: json_message(&e),
            })?
        }
        Ok(_) => serde_json::json!({}),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(error) => {
            return Err(CredentialError::Read {
                path: path.to_owned(),
                error,
            })
        }
    };
    let parsed = ConfigFile::parse(path, &document.to_string())?;
    let host = registry_hostname(registry);
    let key = server_address(registry);
    let helper = parsed
        .raw
        .cred_helpers
        .iter()
        .find(|(k, _)| registry_hostname(k) == host)
        .map(|(_, name)| name.clone())
        .or(parsed.raw.creds_store.clone())
        .filter(|name| !name.is_empty());

    let Some(object) = document.as_object_mut() else {
        return Err(CredentialError::Parse {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: "the top level must be a JSON object".to_owned(),
        });
    };
    let auths = object
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(CredentialError::Parse {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: "\"auths\" must be a JSON object".to_owned(),
        });
    };
    let entry = match &helper {
        Some(name) => {
            helper::run_helper_store(name, &key, username, password, helper_dir)?;
            serde_json::json!({})
        }
        None => serde_json::json!({
            "auth": STANDARD.encode(format!("{username}:{}", password.expose()))
        }),
    };
    auths.insert(key, entry);

    let dir = path.parent().unwrap_or(Path::new("."));
    // As `docker login`: a directory it creates is its owner's alone (0700).
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write_err)?;
    }
    let mut temp = tempfile_in(dir).map_err(write_err)?;
    let text = serde_json::to_string_pretty(&document).map_err(|e| write_err(e.into()))?;
    temp.1.write_all(text.as_bytes()).map_err(write_err)?;
    temp.1.write_all(b"\n").map_err(write_err)?;
    temp.1.sync_all().map_err(write_err)?;
    std::fs::rename(&temp.0, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp.0);
        write_err(e)
    })
}

/// Creates a new owner-only file next to the target, for an atomic replace.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    for attempt in 0..100u32 {
        let candidate = dir.join(format!(".config.json.tmp-{}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free temporary file name",
    ))
}

/// A JSON error's message without its ` at line L column C` (the error already says where)
/// and cut short (it may quote the file).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let place = format!(" at line {} column {}", error.line(), error.column());
    let text = text.strip_suffix(&place).unwrap_or(&text);
    rbuild_oci::truncate_for_message(text, rbuild_oci::MAX_MESSAGE_INPUT_CHARS).into_owned()
}
