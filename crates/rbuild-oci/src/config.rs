//! The image config: the runtime defaults, the rootfs diff IDs and the history of an image.
//!
//! These are plain serde structs rather than `oci-spec`'s, because `oci-spec` drops Docker's
//! `Healthcheck`, `OnBuild`, `Shell` and `ArgsEscaped`, which a Dockerfile builder must carry
//! from a base image to the images built on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, OciError};

/// An empty JSON object, the value type of `ExposedPorts` and `Volumes` (`{"80/tcp": {}}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// An image config (OCI `application/vnd.oci.image.config.v1+json` and Docker's
/// `application/vnd.docker.container.image.v1+json`, which share this shape).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system (`linux`, ...).
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub os_features: Vec<String>,
    /// CPU variant (`v8`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The runtime defaults.
    #[serde(
        default,
        skip_serializing_if = "ContainerConfig::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub config: ContainerConfig,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
    /// One entry per Dockerfile step, `empty_layer` for those that made no layer.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub history: Vec<History>,
}

/// The runtime defaults of an image, with Docker's capitalised keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `user[:group]`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub user: String,
    /// `port/proto` keys.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    /// `NAME=value` entries.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub env: Vec<String>,
    /// The entrypoint; `None` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The default arguments; `None` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Volume mount points.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub volumes: BTreeMap<String, EmptyObject>,
    /// The working directory.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub working_dir: String,
    /// Labels.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub labels: BTreeMap<String, String>,
    /// The signal that stops the container.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub stop_signal: String,
    /// Docker's health check (dropped by oci-spec, kept here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Docker's ONBUILD triggers.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub on_build: Vec<String>,
    /// Docker's SHELL.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub shell: Vec<String>,
    /// Docker's ArgsEscaped (Windows command lines).
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub args_escaped: bool,
}

impl ContainerConfig {
    /// Whether nothing is set (then the `config` key is left out).
    pub fn is_empty(&self) -> bool {
        self == &ContainerConfig::default()
    }

    /// The value of environment variable `name`, if set.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    }
}

/// Docker's HEALTHCHECK. Durations are nanoseconds, as Docker writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub test: Vec<String>,
    /// Time between checks, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time a check may take, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start-up grace period, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Time between checks during the start period, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Failures in a row before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The layers of an image by their uncompressed digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub typ: String,
    /// The diff IDs, base first.
    #[serde(default, deserialize_with = "crate::null_default::deserialize")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            typ: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One step of an image's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// A free comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether the step made no layer.
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Decodes and validates an image config (refused unread above [`crate::MAX_CONFIG_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, OciError> {
        crate::check_document_size("image config", bytes.len() as u64, crate::MAX_CONFIG_BYTES)?;
        let config: ImageConfig =
            serde_json::from_slice(bytes).map_err(|error| OciError::Json {
                what: "image config",
                error,
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The config as canonical JSON (see [`crate::canonical_json`]).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        crate::canonical_json(self)
    }

    /// Checks the rules of the image config spec: os and architecture set, rootfs type
    /// `layers`, well-formed env, ports and timestamps. History against diff IDs is checked
    /// separately by [`ImageConfig::check_history`], because published images break that rule
    /// and a builder must still accept them as bases (BuildKit repairs them).
    pub fn validate(&self) -> Result<(), OciError> {
        const WHAT: &str = "image config";
        let bad = |reason: String| Err(OciError::invalid(WHAT, reason));
        if self.architecture.is_empty() {
            return bad("architecture is empty".into());
        }
        if self.os.is_empty() {
            return bad("os is empty".into());
        }
        if self.rootfs.typ != "layers" {
            return bad(format!(
                "rootfs.type is {:?}, expected \"layers\"",
                self.rootfs.typ
            ));
        }
        if let Some(created) = &self.created {
            if !looks_like_rfc3339(created) {
                return bad(format!("created {created:?} is not an RFC 3339 time"));
            }
        }
        for (i, h) in self.history.iter().enumerate() {
            if let Some(created) = &h.created {
                if !looks_like_rfc3339(created) {
                    return bad(format!(
                        "history[{i}].created {created:?} is not an RFC 3339 time"
                    ));
                }
            }
        }
        for (i, e) in self.config.env.iter().enumerate() {
            if e.is_empty() || e.starts_with('=') {
                return bad(format!("config.Env[{i}] {e:?} has no variable name"));
            }
        }
        for port in self.config.exposed_ports.keys() {
            let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
            let number_ok = match number.split_once('-') {
                Some((a, b)) => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
                None => number.parse::<u16>().is_ok(),
            };
            if !number_ok || !matches!(proto, "tcp" | "udp" | "sctp") {
                return bad(format!(
                    "config.ExposedPorts key {port:?} is not port[/tcp|udp|sctp]"
                ));
            }
        }
        Ok(())
    }
}

impl ImageConfig {
    /// Checks that the history has one non-empty entry per diff ID (the spec's rule; rbuild's
    /// own images always satisfy it).
    pub fn check_history(&self) -> Result<(), OciError> {
        if self.history.is_empty() {
            return Ok(());
        }
        let with_layer = self.history.iter().filter(|h| !h.empty_layer).count();
        if with_layer != self.rootfs.diff_ids.len() {
            return Err(OciError::invalid(
                "image config",
                format!(
                    "history has {with_layer} non-empty entries but rootfs has {} diff_ids",
                    self.rootfs.diff_ids.len()
                ),
            ));
        }
        Ok(())
    }
}

/// A cheap shape check of an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`).
fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONFIG: &str = r#"{"architecture":"amd64","config":{"Cmd":["/bin/sh"],"Entrypoint":null,"Env":["PATH=/usr/bin:/bin"],"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3},"Labels":null,"OnBuild":["RUN echo hi"],"Shell":["/bin/bash","-c"],"ArgsEscaped":true,"User":"1000","Volumes":{"/data":{}},"WorkingDir":"/app","StopSignal":"SIGTERM"},"container_config":{"Cmd":null},"created":"2024-01-02T03:04:05.123456789Z","history":[{"created":"2024-01-02T03:04:05Z","created_by":"ADD rootfs.tar /"},{"created_by":"CMD [\"/bin/sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#;

    #[test]
    fn docker_fields_survive_a_round_trip() {
        let config = ImageConfig::from_json(DOCKER_CONFIG.as_bytes()).unwrap();
        let c = &config.config;
        assert_eq!(c.shell, ["/bin/bash", "-c"]);
        assert_eq!(c.on_build, ["RUN echo hi"]);
        assert!(c.args_escaped);
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(hc.interval, Some(30_000_000_000));
        assert_eq!(hc.retries, Some(3));
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.env_var("PATH"), Some("/usr/bin:/bin"));
        let again = ImageConfig::from_json(&config.to_canonical_json()).unwrap();
        assert_eq!(again, config);
        // Output has the Docker keys.
        let text = String::from_utf8(config.to_canonical_json()).unwrap();
        for key in [
            "\"Healthcheck\"",
            "\"OnBuild\"",
            "\"Shell\"",
            "\"ArgsEscaped\":true",
            "\"StopSignal\"",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn broken_configs_are_refused_with_the_field_named() {
        let cases = [
            (r#""os":"linux""#, r#""os":"""#, "os is empty"),
            (r#""type":"layers""#, r#""type":"tar""#, "rootfs.type"),
            (r#""Env":["#, r#""Env":["=x","#, "config.Env[0]"),
            (r#""80/tcp""#, r#""80/xyz""#, "ExposedPorts"),
            (
                r#""created":"2024-01-02T03:04:05.123456789Z""#,
                r#""created":"yesterday""#,
                "created",
            ),
        ];
        for (from, to, needle) in cases {
            let text = DOCKER_CONFIG.replacen(from, to, 1);
            assert_ne!(text, DOCKER_CONFIG);
            let err = ImageConfig::from_json(text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err:?} does not name {needle:?}");
        }
    }

    #[test]
    fn history_mismatch_is_a_separate_check() {
        let text = DOCKER_CONFIG.replacen(r#""empty_layer":true"#, r#""empty_layer":false"#, 1);
        let config = ImageConfig::from_json(text.as_bytes()).unwrap();
        let err = config.check_history().unwrap_err().to_string();
        assert!(
            err.contains("history has 2 non-empty entries but rootfs has 1"),
            "{err}"
        );
        ImageConfig::from_json(DOCKER_CONFIG.as_bytes())
            .unwrap()
            .check_history()
            .unwrap();
    }

    #[test]
    fn rfc3339_shapes() {
        for ok in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.5+01:00",
            "1970-01-01T00:00:00-00:00",
        ] {
            assert!(looks_like_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2024-01-02",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05+0100",
        ] {
            assert!(!looks_like_rfc3339(bad), "{bad}");
        }
    }
}
