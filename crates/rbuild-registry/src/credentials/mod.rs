//! Where credentials come from, in Docker's order.
//!
//! For each configuration file (first `REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`, then `$XDG_RUNTIME_DIR/containers/auth.json`): `credHelpers[host]`
//! → `credsStore` (both run `docker-credential-NAME get`) → `auths[host]` (`auth`,
//! `username`/`password`, `identitytoken`, `registrytoken`). The first hit wins. Below every
//! file entry come GitLab's job variables `CI_REGISTRY`, `CI_REGISTRY_USER`,
//! `CI_REGISTRY_PASSWORD`, for that one registry.

mod config_file;
mod helper;

use std::path::{Path, PathBuf};

pub use config_file::{registry_hostname, write_login, ConfigFile, DOCKER_HUB_AUTH_KEY};
pub use helper::{run_helper_get, run_helper_store};

use crate::secret::Secret;

/// A credential for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password: sent as Basic auth, or to the token endpoint.
    Basic {
        /// The user name.
        username: String,
        /// The password or personal access token.
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken(Secret),
    /// A bearer token sent to the registry as is (`registrytoken`).
    RegistryToken(Secret),
}

/// A credential and where it was found (for messages; never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCredential {
    /// The credential.
    pub credential: Credential,
    /// Human description of the source, e.g. `auths in /root/.docker/config.json`.
    pub source: String,
}

/// Why credentials could not be read. Never contains a credential. Each message is complete
/// and no variant has a `source()`, so a chain shows every cause once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A configuration file exists but could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause (shown in this error's message).
        error: std::io::Error,
    },
    /// A configuration file is not valid JSON of the expected shape.
    #[error("{path}:{line}:{column}: invalid credentials file: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An `auths` entry is malformed (e.g. `auth` is not base64 of `user:password`).
    #[error("{path}: auths entry {entry:?}: {message}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// The key of the entry.
        entry: String,
        /// What is wrong.
        message: String,
    },
    /// A credential helper could not be run or failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {message}")]
    Helper {
        /// The helper's name (without the `docker-credential-` prefix).
        helper: String,
        /// The registry asked for.
        registry: String,
        /// What went wrong (exit status and the helper's first error line).
        message: String,
    },
    /// Writing a login entry failed.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause (shown in this error's message).
        error: std::io::Error,
    },
}

/// GitLab's job variables: a credential for exactly one registry.
#[derive(Debug, Clone)]
struct CiCredential {
    registry: String,
    username: String,
    password: Secret,
}

/// The ordered list of credential sources to search.
#[derive(Debug, Clone, Default)]
pub struct CredentialChain {
    explicit: Vec<(String, Credential)>,
    files: Vec<PathBuf>,
    ci: Option<CiCredential>,
    helper_dir: Option<PathBuf>,
}

impl CredentialChain {
    /// A chain with no source at all (every registry is accessed anonymously).
    pub fn empty() -> CredentialChain {
        CredentialChain::default()
    }

    /// The chain Docker, Podman and GitLab CI users expect, read from the process environment.
    pub fn from_env() -> CredentialChain {
        CredentialChain::from_vars(|name| std::env::var(name).ok())
    }

    /// Like [`CredentialChain::from_env`] with the variables given by `var` (for tests and for
    /// embedding without touching the process environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> CredentialChain {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut chain = CredentialChain::empty();
        if let Some(file) = non_empty("REGISTRY_AUTH_FILE") {
            chain.files.push(PathBuf::from(file));
        }
        if let Some(dir) = non_empty("DOCKER_CONFIG") {
            chain.files.push(Path::new(&dir).join("config.json"));
        } else if let Some(home) = non_empty("HOME") {
            chain
                .files
                .push(Path::new(&home).join(".docker/config.json"));
        }
        if let Some(runtime) = non_empty("XDG_RUNTIME_DIR") {
            chain
                .files
                .push(Path::new(&runtime).join("containers/auth.json"));
        }
        if let (Some(registry), Some(username), Some(password)) = (
            non_empty("CI_REGISTRY"),
            non_empty("CI_REGISTRY_USER"),
            non_empty("CI_REGISTRY_PASSWORD"),
        ) {
            chain = chain.with_ci_registry(&registry, &username, Secret::new(password));
        }
        chain
    }

    /// Puts a credential for `registry` above every file (e.g. from `--username`/`--password`
    /// flags, or to check a login before `rbuild login` stores it).
    pub fn with_credential(mut self, registry: &str, credential: Credential) -> CredentialChain {
        self.explicit
            .push((registry_hostname(registry), credential));
        self
    }

    /// Appends a configuration file (searched after those already in the chain).
    pub fn with_config_file(mut self, path: impl Into<PathBuf>) -> CredentialChain {
        self.files.push(path.into());
        self
    }

    /// Sets the lowest-priority credential for one registry (GitLab's `CI_REGISTRY*`).
    pub fn with_ci_registry(
        mut self,
        registry: &str,
        username: &str,
        password: Secret,
    ) -> CredentialChain {
        self.ci = Some(CiCredential {
            registry: registry_hostname(registry),
            username: username.to_owned(),
            password,
        });
        self
    }

    /// Looks for `docker-credential-*` helpers in `dir` before `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> CredentialChain {
        self.helper_dir = Some(dir.into());
        self
    }

    /// The directory searched for credential helpers before `PATH`, if any.
    pub fn helper_dir(&self) -> Option<&Path> {
        self.helper_dir.as_deref()
    }

    /// The configuration files searched, in order (existing or not).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The file `rbuild login` writes to: the Docker config file of this chain.
    pub fn login_file(&self) -> Option<&Path> {
        self.files
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == "config.json"))
            .or(self.files.first())
            .map(PathBuf::as_path)
    }

    /// Finds the credential for `registry` (a host, `host:port`, or `docker.io`).
    ///
    /// Runs credential helpers as child processes, so call it off the async executor's hot path.
    pub fn lookup(&self, registry: &str) -> Result<Option<FoundCredential>, CredentialError> {
        let host = registry_hostname(registry);
        if let Some((_, credential)) = self.explicit.iter().find(|(h, _)| *h == host) {
            return Ok(Some(FoundCredential {
                credential: credential.clone(),
                source: "the credentials given explicitly".to_owned(),
            }));
        }
        for path in &self.files {
            let Some(file) = ConfigFile::load(path)? else {
                continue;
            };
            if let Some(found) = file.lookup(registry, self.helper_dir.as_deref())? {
                return Ok(Some(found));
            }
        }
        if let Some(ci) = &self.ci {
            if ci.registry == registry_hostname(registry) {
                return Ok(Some(FoundCredential {
                    credential: Credential::Basic {
                        username: ci.username.clone(),
                        password: ci.password.clone(),
                    },
                    source: "CI_REGISTRY_USER/CI_REGISTRY_PASSWORD".to_owned(),
                }));
            }
        }
        Ok(None)
    }

    /// A short description of where [`CredentialChain::lookup`] searched, for error messages.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        if names.is_empty() {
            "no credentials file configured".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// The message for "nothing found for `registry`": names the files searched.
    pub fn missing_message(&self, registry: &str) -> String {
        if self.files.is_empty() {
            format!("no credentials for {registry} (no config.json or auth.json configured)")
        } else {
            format!("no credentials in {} for {registry}", self.describe())
        }
    }
}

#[cfg(test)]
mod tests;
