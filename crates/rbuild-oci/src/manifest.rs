//! Image manifests and indexes (OCI and Docker v2 schema 2 / manifest list).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Descriptor, MediaType, OciError, Platform};

/// An image manifest: one config and its layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// `OciManifest` or `DockerManifest` (required by Docker, recommended by OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// The artifact type, for artifact manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default, deserialize_with = "crate::null_default::deserialize")]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// Decodes and validates a manifest (refused unread above [`crate::MAX_MANIFEST_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, OciError> {
        crate::check_document_size(
            "image manifest",
            bytes.len() as u64,
            crate::MAX_MANIFEST_BYTES,
        )?;
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|error| OciError::Json {
            what: "image manifest",
            error,
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The manifest as canonical JSON (see [`crate::canonical_json`]).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        crate::canonical_json(self)
    }

    /// Checks the rules of the image manifest specs.
    pub fn validate(&self) -> Result<(), OciError> {
        const WHAT: &str = "image manifest";
        if self.schema_version != 2 {
            return Err(OciError::invalid(
                WHAT,
                format!("schemaVersion is {}, expected 2", self.schema_version),
            ));
        }
        if let Some(mt) = &self.media_type {
            if !mt.is_manifest() {
                return Err(OciError::invalid(
                    WHAT,
                    format!("mediaType {:?} is not an image manifest type", mt.as_str()),
                ));
            }
        }
        self.config.validate_as("config")?;
        if self.media_type == Some(MediaType::DockerManifest)
            && self.config.media_type != MediaType::DockerConfig
        {
            return Err(OciError::invalid(
                WHAT,
                format!(
                    "config.mediaType {:?} in a Docker manifest, expected {:?}",
                    self.config.media_type.as_str(),
                    MediaType::DockerConfig.as_str()
                ),
            ));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            layer.validate_as(&format!("layers[{i}]"))?;
        }
        if let Some(subject) = &self.subject {
            subject.validate_as("subject")?;
        }
        Ok(())
    }

    /// Whether this is an image (its config is an image config), not an artifact.
    pub fn is_image(&self) -> bool {
        self.config.media_type.is_config()
    }
}

/// An index (OCI) or manifest list (Docker): manifests for several platforms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// `OciIndex` or `DockerManifestList`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    /// The artifact type, for artifact indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests.
    #[serde(default, deserialize_with = "crate::null_default::deserialize")]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Arbitrary metadata.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::null_default::deserialize"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(MediaType::OciIndex),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

impl Index {
    /// Decodes and validates an index (refused unread above [`crate::MAX_MANIFEST_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<Index, OciError> {
        crate::check_document_size("image index", bytes.len() as u64, crate::MAX_MANIFEST_BYTES)?;
        let index: Index = serde_json::from_slice(bytes).map_err(|error| OciError::Json {
            what: "image index",
            error,
        })?;
        index.validate()?;
        Ok(index)
    }

    /// The index as canonical JSON (see [`crate::canonical_json`]).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        crate::canonical_json(self)
    }

    /// Checks the rules of the image index specs.
    pub fn validate(&self) -> Result<(), OciError> {
        const WHAT: &str = "image index";
        if self.schema_version != 2 {
            return Err(OciError::invalid(
                WHAT,
                format!("schemaVersion is {}, expected 2", self.schema_version),
            ));
        }
        if let Some(mt) = &self.media_type {
            if !mt.is_index() {
                return Err(OciError::invalid(
                    WHAT,
                    format!("mediaType {:?} is not an index type", mt.as_str()),
                ));
            }
        }
        for (i, m) in self.manifests.iter().enumerate() {
            m.validate_as(&format!("manifests[{i}]"))?;
        }
        if let Some(subject) = &self.subject {
            subject.validate_as("subject")?;
        }
        Ok(())
    }

    /// The first manifest entry for `platform` (see [`Platform::matches`]). Entries without a
    /// platform are skipped (they are attestations or artifacts).
    pub fn find_platform(&self, platform: &Platform) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.media_type.is_manifest() && d.platform.as_ref().is_some_and(|p| platform.matches(p))
        })
    }
}

/// A manifest document of either kind, as fetched from a registry or a layout.
// Both variants are large and short-lived; boxing one would only add noise at match sites.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnyManifest {
    /// An image manifest.
    Image(Manifest),
    /// An index or manifest list.
    Index(Index),
}

impl AnyManifest {
    /// Decodes and validates a manifest or index. The kind is taken from `media_type` (for
    /// example a registry's `Content-Type`) when it names one, else from the document's own
    /// `mediaType`, else from its shape (`manifests` means an index).
    pub fn from_json(
        bytes: &[u8],
        media_type: Option<&MediaType>,
    ) -> Result<AnyManifest, OciError> {
        crate::check_document_size("manifest", bytes.len() as u64, crate::MAX_MANIFEST_BYTES)?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<MediaType>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        let is_index = match media_type {
            Some(mt) if mt.is_index() => true,
            Some(mt) if mt.is_manifest() => false,
            _ => {
                let probe: Probe =
                    serde_json::from_slice(bytes).map_err(|error| OciError::Json {
                        what: "manifest",
                        error,
                    })?;
                match probe.media_type {
                    Some(mt) if mt.is_index() => true,
                    Some(mt) if mt.is_manifest() => false,
                    _ => probe.manifests.is_some(),
                }
            }
        };
        if is_index {
            Index::from_json(bytes).map(AnyManifest::Index)
        } else {
            Manifest::from_json(bytes).map(AnyManifest::Image)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn d(n: u8) -> String {
        Digest::sha256_of(&[n]).to_string()
    }

    fn docker_manifest() -> String {
        format!(
            r#"{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469, "digest": "{}"}},
   "layers": [
      {{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 3408729, "digest": "{}"}},
      {{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "size": 5, "digest": "{}",
        "urls": ["https://example.com/layer"]}}
   ]
}}"#,
            d(1),
            d(2),
            d(3)
        )
    }

    fn oci_index() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":100,
                "platform":{{"architecture":"arm","os":"linux","variant":"v7"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":100,
                "platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":100,
                "platform":{{"architecture":"unknown","os":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}],
              "annotations":{{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}}}"#,
            d(1),
            d(2),
            d(3)
        )
    }

    #[test]
    fn docker_manifest_decodes_and_round_trips() {
        let m = Manifest::from_json(docker_manifest().as_bytes()).unwrap();
        assert_eq!(m.media_type, Some(MediaType::DockerManifest));
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.layers[0].size, 3408729);
        assert_eq!(m.layers[1].media_type, MediaType::DockerForeignLayerGzip);
        assert_eq!(m.layers[1].urls, ["https://example.com/layer"]);
        assert!(m.is_image());
        let canonical = m.to_canonical_json();
        assert_eq!(Manifest::from_json(&canonical).unwrap(), m);
        // Canonical: sorted keys, no whitespace, empty fields left out.
        let text = String::from_utf8(canonical).unwrap();
        assert!(text.starts_with(r#"{"config":{"digest":"#), "{text}");
        assert!(
            !text.contains(' ') && !text.contains("annotations"),
            "{text}"
        );
        assert_eq!(m.to_canonical_json(), text.as_bytes(), "deterministic");
    }

    #[test]
    fn index_decodes_and_picks_platforms() {
        let i = Index::from_json(oci_index().as_bytes()).unwrap();
        assert_eq!(i.manifests.len(), 3);
        let arm = i
            .find_platform(&Platform::parse("linux/arm").unwrap())
            .unwrap();
        assert_eq!(arm.digest.to_string(), d(1));
        let amd = i
            .find_platform(&Platform::parse("linux/x86_64").unwrap())
            .unwrap();
        assert_eq!(amd.digest.to_string(), d(2));
        assert!(i
            .find_platform(&Platform::parse("linux/arm64").unwrap())
            .is_none());
        assert_eq!(Index::from_json(&i.to_canonical_json()).unwrap(), i);
    }

    #[test]
    fn any_manifest_tells_the_kinds_apart() {
        let m = docker_manifest();
        let i = oci_index();
        assert!(matches!(
            AnyManifest::from_json(m.as_bytes(), None),
            Ok(AnyManifest::Image(_))
        ));
        assert!(matches!(
            AnyManifest::from_json(i.as_bytes(), None),
            Ok(AnyManifest::Index(_))
        ));
        // The Content-Type wins over the document.
        assert!(AnyManifest::from_json(i.as_bytes(), Some(&MediaType::OciManifest)).is_err());
        // No mediaType at all: an index is recognised by its `manifests`.
        let bare = i.replace(
            r#""mediaType":"application/vnd.oci.image.index.v1+json","#,
            "",
        );
        assert!(matches!(
            AnyManifest::from_json(bare.as_bytes(), None),
            Ok(AnyManifest::Index(_))
        ));
    }

    #[test]
    fn invalid_documents_name_the_problem() {
        let m = docker_manifest();
        let cases = [
            (
                m.replace("\"schemaVersion\": 2", "\"schemaVersion\": 1"),
                "schemaVersion is 1",
            ),
            (
                m.replace(
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.oci.image.index.v1+json",
                ),
                "is not an image manifest type",
            ),
            (
                m.replace(
                    "application/vnd.docker.container.image.v1+json",
                    "application/vnd.oci.image.config.v1+json",
                ),
                "config.mediaType",
            ),
            (
                m.replace("https://example.com/layer", "ftp://x"),
                "layers[1]: url",
            ),
            (
                m.replace("\"size\": 3408729", "\"size\": -1"),
                "invalid value",
            ),
            (m.replace(&d(2), "sha256:abc"), "sha256 needs exactly 64"),
            (
                m.replace("3408729, \"digest\"", "\"x\", \"digest\""),
                "invalid type",
            ),
            ("{".to_string(), "EOF"),
            ("null".to_string(), "invalid type"),
        ];
        for (doc, needle) in cases {
            let err = Manifest::from_json(doc.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} does not contain {needle:?}");
        }
        let i = oci_index();
        let err = Index::from_json(
            i.replacen("\"size\":100", "\"size\":100,\"mediaType\":\"bogus\"", 1)
                .as_bytes(),
        );
        assert!(err.is_err());
        let err =
            Index::from_json(i.replace("\"os\":\"linux\"", "\"os\":\"\"").as_bytes()).unwrap_err();
        assert!(err.to_string().contains("manifests[0]: platform"), "{err}");
    }

    #[test]
    fn descriptor_serialisation_skips_empty_fields() {
        let desc = Descriptor::of_bytes(MediaType::OciLayerGzip, b"x");
        let json = String::from_utf8(crate::canonical_json(&desc)).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"digest":"{}","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":1}}"#,
                Digest::sha256_of(b"x")
            )
        );
        let with_artifact = Descriptor {
            artifact_type: Some("application/vnd.example".into()),
            ..desc
        };
        let json = String::from_utf8(crate::canonical_json(&with_artifact)).unwrap();
        assert!(
            json.contains(r#""artifactType":"application/vnd.example""#),
            "{json}"
        );
    }
}
