//! Media types of OCI and Docker v2 schema 2 documents and layers.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

/// A media type. The known ones are variants; anything else is kept verbatim in `Other`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaType {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.oci.image.config.v1+json`
    OciConfig,
    /// `application/vnd.oci.image.layer.v1.tar`
    OciLayer,
    /// `application/vnd.oci.image.layer.v1.tar+gzip`
    OciLayerGzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`
    OciLayerZstd,
    /// `application/vnd.docker.distribution.manifest.v2+json` (Docker v2 schema 2)
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
    /// `application/vnd.docker.container.image.v1+json`
    DockerConfig,
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`
    DockerLayerGzip,
    /// `application/vnd.docker.image.rootfs.foreign.diff.tar.gzip`
    DockerForeignLayerGzip,
    /// Any other media type, verbatim.
    Other(String),
}

const KNOWN: [(MediaType, &str); 11] = [
    (
        MediaType::OciManifest,
        "application/vnd.oci.image.manifest.v1+json",
    ),
    (
        MediaType::OciIndex,
        "application/vnd.oci.image.index.v1+json",
    ),
    (
        MediaType::OciConfig,
        "application/vnd.oci.image.config.v1+json",
    ),
    (
        MediaType::OciLayer,
        "application/vnd.oci.image.layer.v1.tar",
    ),
    (
        MediaType::OciLayerGzip,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ),
    (
        MediaType::OciLayerZstd,
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ),
    (
        MediaType::DockerManifest,
        "application/vnd.docker.distribution.manifest.v2+json",
    ),
    (
        MediaType::DockerManifestList,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ),
    (
        MediaType::DockerConfig,
        "application/vnd.docker.container.image.v1+json",
    ),
    (
        MediaType::DockerLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ),
    (
        MediaType::DockerForeignLayerGzip,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ),
];

impl MediaType {
    /// The media type as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Other(s) => s,
            known => KNOWN
                .iter()
                .find(|(k, _)| k == known)
                .map(|(_, s)| *s)
                .unwrap_or_default(),
        }
    }

    /// An OCI index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self, MediaType::OciIndex | MediaType::DockerManifestList)
    }

    /// An OCI image manifest or a Docker v2 schema 2 manifest.
    pub fn is_manifest(&self) -> bool {
        matches!(self, MediaType::OciManifest | MediaType::DockerManifest)
    }

    /// An image config (OCI or Docker).
    pub fn is_config(&self) -> bool {
        matches!(self, MediaType::OciConfig | MediaType::DockerConfig)
    }

    /// A filesystem layer (OCI, including non-distributable ones, or Docker).
    pub fn is_layer(&self) -> bool {
        match self {
            MediaType::OciLayer
            | MediaType::OciLayerGzip
            | MediaType::OciLayerZstd
            | MediaType::DockerLayerGzip
            | MediaType::DockerForeignLayerGzip => true,
            MediaType::Other(s) => {
                s.starts_with("application/vnd.oci.image.layer.")
                    || s.starts_with("application/vnd.docker.image.rootfs.")
            }
            _ => false,
        }
    }

    /// How a layer of this type is compressed (`None` for anything that is not a known
    /// compressed layer).
    pub fn compression(&self) -> Compression {
        match self {
            MediaType::OciLayerGzip
            | MediaType::DockerLayerGzip
            | MediaType::DockerForeignLayerGzip => Compression::Gzip,
            MediaType::OciLayerZstd => Compression::Zstd,
            MediaType::Other(s) if s.ends_with("+gzip") || s.ends_with(".tar.gzip") => {
                Compression::Gzip
            }
            MediaType::Other(s) if s.ends_with("+zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// Whether the text has the `type/subtype` shape of RFC 6838.
    pub fn is_well_formed(&self) -> bool {
        let s = self.as_str();
        let restricted = |part: &str| {
            !part.is_empty()
                && part.len() <= 127
                && part
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                && part.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(
                            b,
                            b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                        )
                })
        };
        match s.split_once('/') {
            Some((t, sub)) => restricted(t) && restricted(sub),
            None => false,
        }
    }
}

impl From<&str> for MediaType {
    fn from(s: &str) -> Self {
        KNOWN
            .iter()
            .find(|(_, text)| *text == s)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| MediaType::Other(s.to_string()))
    }
}

impl FromStr for MediaType {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(MediaType::from(s))
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(MediaType::from(text.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_round_trip_through_text() {
        for (known, text) in KNOWN.iter() {
            assert_eq!(known.as_str(), *text);
            assert_eq!(&MediaType::from(*text), known);
            assert!(known.is_well_formed());
        }
        let other = MediaType::from("application/vnd.example+json");
        assert_eq!(
            other,
            MediaType::Other("application/vnd.example+json".into())
        );
        assert_eq!(other.as_str(), "application/vnd.example+json");
    }

    #[test]
    fn classification() {
        assert!(MediaType::DockerManifestList.is_index());
        assert!(MediaType::OciManifest.is_manifest());
        assert!(!MediaType::OciManifest.is_layer());
        assert_eq!(MediaType::OciLayerZstd.compression(), Compression::Zstd);
        assert_eq!(MediaType::DockerLayerGzip.compression(), Compression::Gzip);
        assert_eq!(MediaType::OciLayer.compression(), Compression::None);
        let nondist =
            MediaType::from("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip");
        assert!(nondist.is_layer());
        assert_eq!(nondist.compression(), Compression::Gzip);
        assert!(!MediaType::from("nonsense").is_well_formed());
    }
}
