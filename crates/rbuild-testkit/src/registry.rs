//! The real `docker-registry` (CNCF Distribution 2.8) on a free loopback port.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tls::{SigningCert, TestTls};
use crate::token_issuer::{TokenIssuer, TokenIssuerConfig};
use crate::TestkitError;

/// Where Debian's `docker-registry` package installs the server.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// How the test registry authenticates clients.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    /// No authentication, plain HTTP.
    None,
    /// htpasswd Basic auth, served over TLS with a CA generated for the test.
    Htpasswd {
        /// The one user.
        username: String,
        /// Its password.
        password: String,
    },
    /// Token auth with a token issuer started alongside (plain HTTP).
    Token(TokenIssuerConfig),
    /// No authentication, but TLS that requires a client certificate signed by the test CA
    /// (`http.tls.clientcas`).
    ClientCertificate,
    /// No authentication, TLS with a self-signed leaf certificate (CA:TRUE, as
    /// `openssl req -x509` makes): [`TestTls::ca_cert`] is that certificate.
    SelfSignedTls,
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// The HTTP method.
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The response status.
    pub status: u16,
}

/// A running registry; killed (and its storage removed) when dropped.
pub struct TestRegistry {
    child: Child,
    port: u16,
    tls: Option<TestTls>,
    issuer: Option<TokenIssuer>,
    access_log: PathBuf,
    error_log: PathBuf,
    storage: PathBuf,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl TestRegistry {
    /// Whether the registry binary is installed.
    pub fn available() -> bool {
        Path::new(REGISTRY_BINARY).is_file()
    }

    /// Starts a registry, or returns `None` after printing a notice when the binary is missing
    /// and `CI` is unset. With `CI` set, a missing binary or a failed start panics.
    // The notice is the point: a skipped test must say why to the person running it.
    #[allow(clippy::print_stderr)]
    pub fn start_or_skip(auth: RegistryAuth) -> Option<TestRegistry> {
        if !TestRegistry::available() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{REGISTRY_BINARY} not found and CI is set: apt-get install docker-registry"
                );
            }
            eprintln!("skipping: {REGISTRY_BINARY} not found (apt-get install docker-registry)");
            return None;
        }
        match TestRegistry::start(auth) {
            Ok(registry) => Some(registry),
            Err(e) => panic!("cannot start the test registry: {e}"),
        }
    }

    /// Starts a registry and waits until it accepts connections.
    pub fn start(auth: RegistryAuth) -> Result<TestRegistry, TestkitError> {
        TestRegistry::start_with(auth, false)
    }

    /// Like [`TestRegistry::start`]; with `relative_urls` the registry sends relative
    /// `Location` headers (`http.relativeurls`), as some registries and proxies do.
    pub fn start_with(
        auth: RegistryAuth,
        relative_urls: bool,
    ) -> Result<TestRegistry, TestkitError> {
        if !TestRegistry::available() {
            return Err(TestkitError::MissingRegistry(REGISTRY_BINARY.to_owned()));
        }
        let mut last_error = None;
        // A free port can be taken by someone else between probing and binding: try again.
        for _ in 0..3 {
            match TestRegistry::start_once(auth.clone(), relative_urls) {
                Ok(registry) => return Ok(registry),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| TestkitError::RegistryStart("unknown".into())))
    }

    fn start_once(auth: RegistryAuth, relative_urls: bool) -> Result<TestRegistry, TestkitError> {
        let dir = tempfile::tempdir().map_err(|e| TestkitError::io("temp dir", e))?;
        let port = free_port()?;
        let storage = dir.path().join("storage");
        let mut http_tls = String::new();
        let mut auth_yaml = String::new();
        let mut tls = None;
        let mut issuer = None;
        match &auth {
            RegistryAuth::None => {}
            RegistryAuth::Htpasswd { username, password } => {
                let material = TestTls::generate(dir.path())?;
                http_tls = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    material.server_cert.display(),
                    material.server_key.display()
                );
                let hash = bcrypt::hash_with_result(password, 4)?
                    .format_for_version(bcrypt::Version::TwoY);
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{username}:{hash}\n"))
                    .map_err(|e| TestkitError::io("write htpasswd", e))?;
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                    htpasswd.display()
                );
                tls = Some(material);
            }
            RegistryAuth::ClientCertificate => {
                let material = TestTls::generate(dir.path())?;
                http_tls = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
                    material.server_cert.display(),
                    material.server_key.display(),
                    material.ca_cert.display()
                );
                tls = Some(material);
            }
            RegistryAuth::SelfSignedTls => {
                let material = TestTls::generate_self_signed_leaf(dir.path())?;
                http_tls = format!(
                    "  tls:
    certificate: {}
    key: {}
",
                    material.server_cert.display(),
                    material.server_key.display()
                );
                tls = Some(material);
            }
            RegistryAuth::Token(config) => {
                let signer = SigningCert::generate(dir.path())?;
                let started = TokenIssuer::start(config.clone(), &signer)?;
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    started.realm(),
                    config.service,
                    config.issuer,
                    signer.bundle.display()
                );
                issuer = Some(started);
            }
        }
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-testkit-secret\n  relativeurls: {relative_urls}\n{http_tls}\
             {auth_yaml}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(|e| TestkitError::io("write config", e))?;
        let access_log = dir.path().join("access.log");
        let error_log = dir.path().join("registry.log");
        let stdout = File::create(&access_log).map_err(|e| TestkitError::io("access log", e))?;
        let stderr = File::create(&error_log).map_err(|e| TestkitError::io("registry log", e))?;
        // Distribution writes the access log to stdout and its own log to stderr.
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| TestkitError::io(format!("run {REGISTRY_BINARY}"), e))?;
        let mut registry = TestRegistry {
            child,
            port,
            tls,
            issuer,
            access_log,
            error_log,
            storage,
            dir,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(TestkitError::RegistryStart(format!(
                    "exited with {status}: {}",
                    self.log_tail()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TestkitError::RegistryStart(format!(
                    "port {} not open after 20 s: {}",
                    self.port,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.error_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// TLS material, for registries serving HTTPS.
    pub fn tls(&self) -> Option<&TestTls> {
        self.tls.as_ref()
    }

    /// The token issuer, for token-auth registries.
    pub fn token_issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// The storage root directory.
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// A scratch directory that lives as long as the registry.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The raw access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// The registry's own log (errors, auth failures) so far.
    pub fn registry_log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    /// The requests in the access log so far, oldest first.
    pub fn requests(&self) -> Vec<AccessLogEntry> {
        self.access_log()
            .lines()
            .filter_map(parse_access_line)
            .collect()
    }

    /// Whether `repository` has a tag `tag`, read from the storage directory (independent of
    /// any client).
    pub fn has_tag(&self, repository: &str, tag: &str) -> bool {
        self.storage
            .join("docker/registry/v2/repositories")
            .join(repository)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link")
            .is_file()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, TestkitError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| TestkitError::io("find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestkitError::io("find a free port", e))
}

/// Parses a combined-log-format line: `… "METHOD /path HTTP/1.1" STATUS SIZE …`.
fn parse_access_line(line: &str) -> Option<AccessLogEntry> {
    let start = line.find('"')?;
    let rest = &line[start + 1..];
    let end = rest.find('"')?;
    let mut request = rest[..end].split(' ');
    let method = request.next()?.to_owned();
    let path = request.next()?.to_owned();
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(AccessLogEntry {
        method,
        path,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line() {
        let line = r#"127.0.0.1 - - [24/Nov/2026:00:00:00 +0000] "PATCH /v2/a/b/blobs/uploads/u?_state=x HTTP/1.1" 202 0 "" "rbuild/0.1.0""#;
        assert_eq!(
            parse_access_line(line),
            Some(AccessLogEntry {
                method: "PATCH".into(),
                path: "/v2/a/b/blobs/uploads/u?_state=x".into(),
                status: 202
            })
        );
        assert_eq!(parse_access_line("time=... level=info msg=x"), None);
    }
}
