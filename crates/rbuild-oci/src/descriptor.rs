//! Content descriptors: what a manifest or index points at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, MediaType, OciError, Platform};

/// A pointer to a blob: its media type, digest and size, plus optional metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: MediaType,
    /// The digest of the referenced content.
    pub digest: Digest,
    /// The size of the referenced content in bytes.
    pub size: u64,
    /// Other places the content may be fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform of the referenced image (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of the referenced manifest, if it is an artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type,
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The descriptor of `bytes` with the given media type (sha256).
    pub fn of_bytes(media_type: MediaType, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64)
    }

    /// Checks the media type's shape, the size and the URLs. `what` names the field in errors
    /// (for example `layers[2]`).
    pub fn validate_as(&self, what: &str) -> Result<(), OciError> {
        let bad = |reason: String| OciError::invalid("descriptor", format!("{what}: {reason}"));
        if !self.media_type.is_well_formed() {
            return Err(bad(format!(
                "media type {:?} is not type/subtype",
                self.media_type.as_str()
            )));
        }
        if self.size > i64::MAX as u64 {
            return Err(bad(format!(
                "size {} is larger than the spec allows",
                self.size
            )));
        }
        for url in &self.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(bad(format!("url {url:?} is not http(s)")));
            }
        }
        if let Some(p) = &self.platform {
            if p.os.is_empty() || p.architecture.is_empty() {
                return Err(bad("platform needs os and architecture".into()));
            }
        }
        Ok(())
    }

    /// [`Descriptor::validate_as`] with a generic name.
    pub fn validate(&self) -> Result<(), OciError> {
        self.validate_as("descriptor")
    }
}
