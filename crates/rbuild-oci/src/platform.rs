//! Platforms (`os/architecture/variant`) and the matching rules Docker and containerd use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::OciError;

/// The platform an image runs on, as in an index entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's names (`amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, ...).
    pub architecture: String,
    /// Operating system in Go's names (`linux`, `windows`, ...).
    pub os: String,
    /// Operating system version (used by Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant (`v7` for arm, `v8` for arm64, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os[/arch[/variant]]` (as in `--platform linux/arm64/v8`). A lone `os` gets the
    /// host's architecture, as Docker does.
    pub fn parse(input: &str) -> Result<Platform, OciError> {
        let bad = |reason: &str| OciError::InvalidPlatform {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        if parts.len() > 3 {
            return Err(bad("expected os[/architecture[/variant]]"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(bad("empty component"));
            }
            if !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(bad("components may only contain [A-Za-z0-9_.-]"));
            }
        }
        let os = parts[0].to_ascii_lowercase();
        let platform = match parts.len() {
            1 => Platform {
                os,
                ..Platform::host()
            },
            2 => Platform::new(&os, parts[1], None),
            _ => Platform::new(&os, parts[1], Some(parts[2])),
        };
        Ok(platform)
    }

    /// The platform this process runs on, in Go's names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, architecture, variant)
    }

    /// This platform with Docker's and containerd's normalisation applied: lowercase, `x86_64`
    /// → `amd64`, `aarch64` → `arm64`, arm64 default variant `v8`, arm default `v7`, `amd64/v1`
    /// → no variant.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase);
        let (architecture, variant) = match (arch.as_str(), variant.as_deref()) {
            ("i386", v) => ("386".to_string(), v.map(str::to_string)),
            ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64".to_string(), None),
            ("x86_64" | "x86-64", v) => ("amd64".to_string(), v.map(str::to_string)),
            ("aarch64" | "arm64", None | Some("8") | Some("v8")) => {
                ("arm64".to_string(), Some("v8".to_string()))
            }
            ("aarch64", v) => ("arm64".to_string(), v.map(str::to_string)),
            ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
            ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
            ("arm", None) => ("arm".to_string(), Some("v7".to_string())),
            ("arm", Some(v)) if !v.starts_with('v') => ("arm".to_string(), Some(format!("v{v}"))),
            (a, v) => (a.to_string(), v.map(str::to_string)),
        };
        Platform {
            architecture,
            os,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant,
        }
    }

    /// Whether an image for `other` is what a request for `self` asks for: OS, architecture and
    /// variant equal after normalisation (see [`Platform::normalized`]). `os.version` and
    /// `os.features` are not compared.
    pub fn matches(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.os == b.os && a.architecture == b.architecture && a.variant == b.variant
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!((p.os.as_str(), p.architecture.as_str()), ("linux", "arm64"));
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            Platform::parse("linux").unwrap().architecture,
            Platform::host().architecture
        );
        for bad in ["", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn matching_normalises_like_containerd() {
        let m = |a: &str, b: &str| {
            Platform::parse(a)
                .unwrap()
                .matches(&Platform::parse(b).unwrap())
        };
        assert!(m("linux/amd64", "linux/x86_64"));
        assert!(m("linux/arm64", "linux/arm64/v8"));
        assert!(m("linux/aarch64", "linux/arm64"));
        assert!(m("linux/arm", "linux/arm/v7"));
        assert!(m("linux/armhf", "linux/arm/7"));
        assert!(m("linux/amd64", "linux/amd64/v1"));
        assert!(!m("linux/arm", "linux/arm/v6"));
        assert!(!m("linux/amd64", "linux/arm64"));
        assert!(!m("linux/amd64", "windows/amd64"));
        assert!(!m("linux/amd64", "linux/amd64/v3"));
    }

    #[test]
    fn serde_uses_dotted_keys() {
        let p = Platform {
            os_version: Some("10.0.17763".into()),
            ..Platform::new("windows", "amd64", None)
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763"}"#
        );
        assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
    }
}
