//! Client options (Kaniko's flags as data) and which hosts to contact for a registry.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::registry_hostname;
use crate::retry::RetryPolicy;

/// Whether an operation reads from or writes to a registry; some options apply to one only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Pulling base images (mirrors and registry maps apply).
    Pull,
    /// Pushing results.
    Push,
}

/// How plain HTTP may be used for one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// HTTPS only.
    Never,
    /// HTTPS first; plain HTTP when the host does not speak TLS at all (never after a
    /// certificate error). Docker's rule for `localhost` and `127.0.0.0/8`.
    FallbackIfNoTls,
    /// The user declared the host insecure: HTTPS without verification, then plain HTTP.
    Insecure,
}

/// Options of a [`crate::RegistryClient`]; `Default` is secure and Docker-like.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `--insecure`: push destinations may use plain HTTP.
    pub insecure_push: bool,
    /// `--insecure-pull`: pulled registries may use plain HTTP.
    pub insecure_pull: bool,
    /// `--insecure-registry HOST`: these hosts may use plain HTTP.
    pub insecure_registries: Vec<String>,
    /// `--skip-tls-verify`: do not verify certificates of push destinations.
    pub skip_tls_verify_push: bool,
    /// `--skip-tls-verify-pull`: do not verify certificates when pulling.
    pub skip_tls_verify_pull: bool,
    /// `--skip-tls-verify-registry HOST`.
    pub skip_tls_verify_registries: Vec<String>,
    /// `--registry-certificate HOST=ca.pem`: extra trusted CAs per host.
    pub ca_certificates: Vec<(String, PathBuf)>,
    /// `--registry-client-cert HOST=cert.pem,key.pem`: a client certificate per host.
    pub client_certificates: Vec<(String, PathBuf, PathBuf)>,
    /// `--registry-mirror HOST`: tried in order before Docker Hub when pulling from it.
    pub registry_mirrors: Vec<String>,
    /// `--registry-map ORIG=NEW`: pull from NEW instead of ORIG, falling back to ORIG.
    pub registry_maps: Vec<(String, String)>,
    /// `--skip-default-registry-fallback`: an image of a registry that has mirrors or maps is
    /// pulled from those only, never from the registry itself.
    pub skip_default_registry_fallback: bool,
    /// `--push-ignore-immutable-tag-errors`: a destination refusing to overwrite an existing
    /// immutable tag is a warning, not a failure.
    pub push_ignore_immutable_tag_errors: bool,
    /// `--push-retry` and backoff, also used for pulls.
    pub retry: RetryPolicy,
    /// How many blobs are transferred at once.
    pub max_concurrent_blobs: usize,
    /// Blobs up to this size are uploaded with one PUT; larger ones in PATCH chunks.
    pub monolithic_upload_limit: u64,
    /// The size of one PATCH chunk for large blobs.
    pub upload_chunk_size: u64,
    /// Giving up on establishing a connection.
    pub connect_timeout: Duration,
    /// A connection that sends nothing for this long is considered stalled and broken.
    pub read_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_push: false,
            insecure_pull: false,
            insecure_registries: Vec::new(),
            skip_tls_verify_push: false,
            skip_tls_verify_pull: false,
            skip_tls_verify_registries: Vec::new(),
            ca_certificates: Vec::new(),
            client_certificates: Vec::new(),
            registry_mirrors: Vec::new(),
            registry_maps: Vec::new(),
            skip_default_registry_fallback: false,
            push_ignore_immutable_tag_errors: false,
            retry: RetryPolicy::default(),
            max_concurrent_blobs: 4,
            monolithic_upload_limit: 8 << 20,
            upload_chunk_size: 64 << 20,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            user_agent: format!("rbuild/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// One host to contact, with how to contact it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to (e.g. `registry-1.docker.io`).
    pub host: String,
    /// Plain HTTP policy for it.
    pub plain_http: PlainHttp,
    /// Whether certificate verification is off.
    pub skip_tls_verify: bool,
}

impl RegistryOptions {
    /// The hosts to try, in order, for `registry` (`docker.io`, `host:port`).
    ///
    /// Pulls go through registry maps, then (for Docker Hub) mirrors, then the registry
    /// itself; pushes go to the registry itself only.
    pub fn endpoints(&self, registry: &str, direction: Direction) -> Vec<Endpoint> {
        let name = registry_hostname(registry);
        let mut hosts: Vec<String> = Vec::new();
        if direction == Direction::Pull {
            for (from, to) in &self.registry_maps {
                if registry_hostname(from) == name {
                    hosts.push(strip_scheme(to));
                }
            }
            if name == "docker.io" {
                hosts.extend(self.registry_mirrors.iter().map(|m| strip_scheme(m)));
            }
        }
        if hosts.is_empty() || !self.skip_default_registry_fallback {
            hosts.push(api_host(&name));
        }
        hosts.dedup();
        hosts
            .into_iter()
            .map(|host| self.endpoint(&host, direction))
            .collect()
    }

    /// How to contact `host` for `direction`.
    pub fn endpoint(&self, host: &str, direction: Direction) -> Endpoint {
        let listed = |list: &[String]| list.iter().any(|h| strip_scheme(h) == host);
        let insecure = listed(&self.insecure_registries)
            || match direction {
                Direction::Pull => self.insecure_pull,
                Direction::Push => self.insecure_push,
            };
        let skip_tls_verify = listed(&self.skip_tls_verify_registries)
            || match direction {
                Direction::Pull => self.skip_tls_verify_pull,
                Direction::Push => self.skip_tls_verify_push,
            };
        let plain_http = if insecure {
            PlainHttp::Insecure
        } else if is_loopback_host(host) {
            PlainHttp::FallbackIfNoTls
        } else {
            PlainHttp::Never
        };
        Endpoint {
            host: host.to_owned(),
            plain_http,
            skip_tls_verify: skip_tls_verify || insecure,
        }
    }
}

/// Docker Hub's API host for `docker.io`; every other registry is its own API host.
fn api_host(name: &str) -> String {
    if name == "docker.io" {
        "registry-1.docker.io".to_owned()
    } else {
        name.to_owned()
    }
}

fn strip_scheme(value: &str) -> String {
    value
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_ascii_lowercase()
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    without_port.eq_ignore_ascii_case("localhost")
        || without_port
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_pull_goes_through_map_then_mirrors() {
        let options = RegistryOptions {
            registry_mirrors: vec!["https://mirror.example/".into()],
            registry_maps: vec![("index.docker.io".into(), "map.example:5000".into())],
            ..RegistryOptions::default()
        };
        let hosts: Vec<String> = options
            .endpoints("docker.io", Direction::Pull)
            .into_iter()
            .map(|e| e.host)
            .collect();
        assert_eq!(
            hosts,
            ["map.example:5000", "mirror.example", "registry-1.docker.io"]
        );
        let push: Vec<String> = options
            .endpoints("docker.io", Direction::Push)
            .into_iter()
            .map(|e| e.host)
            .collect();
        assert_eq!(push, ["registry-1.docker.io"]);
        let no_fallback = RegistryOptions {
            skip_default_registry_fallback: true,
            ..options
        };
        let hosts: Vec<String> = no_fallback
            .endpoints("docker.io", Direction::Pull)
            .into_iter()
            .map(|e| e.host)
            .collect();
        assert_eq!(hosts, ["map.example:5000", "mirror.example"]);
        let other: Vec<String> = no_fallback
            .endpoints("ghcr.io", Direction::Pull)
            .into_iter()
            .map(|e| e.host)
            .collect();
        assert_eq!(other, ["ghcr.io"], "no mirror: the registry itself");
    }

    #[test]
    fn plain_http_rules() {
        let options = RegistryOptions {
            insecure_registries: vec!["reg.internal:5000".into()],
            skip_tls_verify_pull: true,
            ..RegistryOptions::default()
        };
        let e = options.endpoint("reg.internal:5000", Direction::Push);
        assert_eq!(e.plain_http, PlainHttp::Insecure);
        let e = options.endpoint("ghcr.io", Direction::Push);
        assert_eq!((e.plain_http, e.skip_tls_verify), (PlainHttp::Never, false));
        let e = options.endpoint("ghcr.io", Direction::Pull);
        assert_eq!((e.plain_http, e.skip_tls_verify), (PlainHttp::Never, true));
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.2.1",
            "[::1]:5000",
            "::1",
        ] {
            assert_eq!(
                options.endpoint(host, Direction::Push).plain_http,
                PlainHttp::FallbackIfNoTls,
                "{host}"
            );
        }
        assert_eq!(
            options
                .endpoint("128.0.0.1:5000", Direction::Push)
                .plain_http,
            PlainHttp::Never
        );
    }
}
