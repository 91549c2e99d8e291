//! Attestation documents as OCI 1.1 artifacts: an image manifest whose `artifactType` names
//! the document, whose config is the empty descriptor, whose one layer is the document, and
//! whose `subject` is the image. Or, for tools that read BuildKit's form
//! ([`buildkit_index`]), one attestation manifest of in-toto statements listed beside the
//! image in an index.

use rbuild_oci::{Descriptor, Digest, Index, Manifest, MediaType, Platform};
use std::collections::BTreeMap;

/// The empty config blob.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The empty config's media type.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// An in-toto statement's media type.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// An SPDX JSON document's media type.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// The SPDX predicate type, for the SBOM wrapped in an in-toto statement.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
/// The annotation naming a statement's predicate type.
pub const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// A document to attach and everything to push for it.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `provenance` or `sbom`.
    pub kind: &'static str,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// Its descriptor (media type, digest, size, artifact type).
    pub descriptor: Descriptor,
    /// The blobs it references (config, document), with their bytes.
    pub blobs: Vec<(Descriptor, Vec<u8>)>,
}

/// The empty config descriptor.
pub fn empty_config() -> Descriptor {
    Descriptor::of_bytes(MediaType::Other(EMPTY_MEDIA_TYPE.into()), EMPTY_CONFIG)
}

/// An artifact manifest for `document` (of `media_type`), pointing at `subject`.
pub fn artifact(
    kind: &'static str,
    media_type: &str,
    document: Vec<u8>,
    predicate_type: Option<&str>,
    subject: &Descriptor,
    created: &str,
) -> Attachment {
    let mut layer = Descriptor::of_bytes(MediaType::Other(media_type.into()), &document);
    if let Some(p) = predicate_type {
        layer
            .annotations
            .insert(PREDICATE_ANNOTATION.into(), p.into());
    }
    let config = empty_config();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    );
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: Some(media_type.to_string()),
        config: config.clone(),
        layers: vec![layer.clone()],
        subject: Some(Descriptor::new(
            subject.media_type.clone(),
            subject.digest.clone(),
            subject.size,
        )),
        annotations: annotations.clone(),
    };
    let bytes = manifest.to_canonical_json();
    let mut descriptor = Descriptor::of_bytes(MediaType::OciManifest, &bytes);
    descriptor.artifact_type = Some(media_type.to_string());
    descriptor.annotations = annotations;
    Attachment {
        kind,
        manifest: bytes,
        descriptor,
        blobs: vec![(config, EMPTY_CONFIG.to_vec()), (layer, document)],
    }
}

/// Wraps an SPDX document in an in-toto statement about `subject` (BuildKit's SBOM form).
pub fn spdx_statement(subject_name: &str, subject: &Digest, spdx: &[u8]) -> Vec<u8> {
    let predicate: serde_json::Value = serde_json::from_slice(spdx).unwrap_or_default();
    let statement = serde_json::json!({
        "_type": crate::provenance::STATEMENT_TYPE,
        "subject": [{ "name": subject_name, "digest": { subject.algorithm(): subject.encoded() } }],
        "predicateType": SPDX_PREDICATE,
        "predicate": predicate,
    });
    serde_json::to_vec(&statement).unwrap_or_default()
}

/// BuildKit's form: one attestation manifest (`unknown/unknown` platform, its layers the
/// in-toto statements) and an index listing the image and it. Returns the attestation
/// manifest (as an [`Attachment`] whose subject-less manifest refers to the image through
/// the index annotations) and the index bytes.
pub fn buildkit_index(
    image: &Descriptor,
    platform: Platform,
    statements: &[(&str, Vec<u8>)],
) -> (Attachment, Vec<u8>) {
    let config = empty_config();
    let mut blobs = vec![(config.clone(), EMPTY_CONFIG.to_vec())];
    let mut layers = Vec::new();
    for (predicate, statement) in statements {
        let mut layer =
            Descriptor::of_bytes(MediaType::Other(IN_TOTO_MEDIA_TYPE.into()), statement);
        layer
            .annotations
            .insert(PREDICATE_ANNOTATION.into(), predicate.to_string());
        layers.push(layer.clone());
        blobs.push((layer, statement.clone()));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = manifest.to_canonical_json();
    let mut descriptor = Descriptor::of_bytes(MediaType::OciManifest, &bytes);
    descriptor.platform = Some(Platform {
        architecture: "unknown".into(),
        os: "unknown".into(),
        ..Platform::default()
    });
    descriptor.annotations.insert(
        "vnd.docker.reference.digest".into(),
        image.digest.to_string(),
    );
    descriptor.annotations.insert(
        "vnd.docker.reference.type".into(),
        "attestation-manifest".into(),
    );
    let mut image_entry =
        Descriptor::new(image.media_type.clone(), image.digest.clone(), image.size);
    image_entry.platform = Some(platform);
    let index = Index {
        schema_version: 2,
        media_type: Some(MediaType::OciIndex),
        artifact_type: None,
        manifests: vec![image_entry, descriptor.clone()],
        subject: None,
        annotations: BTreeMap::new(),
    };
    (
        Attachment {
            kind: "attestations",
            manifest: bytes,
            descriptor,
            blobs,
        },
        index.to_canonical_json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_manifest_points_at_its_subject() {
        let image = Descriptor::of_bytes(MediaType::OciManifest, b"image");
        let a = artifact(
            "sbom",
            SPDX_MEDIA_TYPE,
            b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec(),
            None,
            &image,
            "2026-01-01T00:00:00Z",
        );
        let m = Manifest::from_json(&a.manifest).unwrap();
        assert_eq!(m.subject.unwrap().digest, image.digest);
        assert_eq!(m.artifact_type.as_deref(), Some(SPDX_MEDIA_TYPE));
        assert_eq!(m.config.digest, Digest::sha256_of(b"{}"));
        assert_eq!(a.descriptor.digest, Digest::sha256_of(&a.manifest));
        assert_eq!(a.blobs[1].0.digest, m.layers[0].digest);
        let linux = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Platform::default()
        };
        let (att, index) = buildkit_index(
            &image,
            linux,
            &[("https://slsa.dev/provenance/v1", b"{}".to_vec())],
        );
        let i = Index::from_json(&index).unwrap();
        assert_eq!(i.manifests[0].digest, image.digest);
        assert_eq!(i.manifests[1].digest, att.descriptor.digest);
        assert_eq!(
            i.manifests[1].annotations["vnd.docker.reference.digest"],
            image.digest.to_string()
        );
    }
}
