//! Referrers against the real `docker-registry` (Distribution 2.8, which lacks the referrers
//! API): artifact manifests with a `subject` are pushed by digest and listed under the
//! `sha256-<hex>` referrers tag; the image's own tag is never touched.

mod common;

use common::*;
use rbuild_oci::{Descriptor, Digest, Manifest, MediaType};
use rbuild_registry::{referrers_tag, MemoryBlobs, ReferrerAttach};
use rbuild_testkit::{skopeo, RegistryAuth, TestRegistry};

/// An artifact manifest of `document`, pointing at `subject`, with its blobs in `blobs`.
fn artifact(
    subject: &Descriptor,
    artifact_type: &str,
    document: &[u8],
    blobs: &MemoryBlobs,
) -> Vec<u8> {
    let config = Descriptor::of_bytes(
        MediaType::Other("application/vnd.oci.empty.v1+json".into()),
        b"{}",
    );
    blobs.insert(b"{}".to_vec());
    let layer = Descriptor::of_bytes(MediaType::Other(artifact_type.into()), document);
    blobs.insert(document.to_vec());
    Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: Some(artifact_type.into()),
        config,
        layers: vec![layer],
        subject: Some(subject.clone()),
        annotations: [("org.example.kind".to_string(), artifact_type.to_string())].into(),
    }
    .to_canonical_json()
}

#[tokio::test]
async fn referrers_fall_back_to_the_tag_schema_and_accumulate() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let client = anonymous_client();
    let image = small_image(7);
    let destination = reference(&format!("{}/team/app:v1", registry.host()));
    push(&client, &image, std::slice::from_ref(&destination)).await;
    let subject = Descriptor::of_bytes(MediaType::OciManifest, &image.manifest_bytes);

    let blobs = MemoryBlobs::new();
    let provenance = artifact(
        &subject,
        "application/vnd.in-toto+json",
        b"{\"_type\":\"p\"}",
        &blobs,
    );
    let sbom = artifact(
        &subject,
        "application/spdx+json",
        b"{\"spdxVersion\":\"SPDX-2.3\"}",
        &blobs,
    );
    let tag = referrers_tag(&subject.digest);
    for document in [&provenance, &sbom, &provenance] {
        let how = client
            .push_referrer(&destination, document, &blobs)
            .await
            .unwrap();
        assert_eq!(how, ReferrerAttach::TagSchema { tag: tag.clone() });
    }
    assert!(registry.has_tag("team/app", &tag));

    // A fresh client finds both, once each, with their artifact types.
    let found = anonymous_client()
        .referrers(&destination, &subject.digest)
        .await
        .unwrap();
    let listed: Vec<(Digest, Option<String>)> = found
        .manifests
        .iter()
        .map(|d| (d.digest.clone(), d.artifact_type.clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                Digest::sha256_of(&provenance),
                Some("application/vnd.in-toto+json".into())
            ),
            (
                Digest::sha256_of(&sbom),
                Some("application/spdx+json".into())
            ),
        ]
    );
    // Each referrer is fetchable by digest and names the image as its subject.
    for d in &found.manifests {
        let fetched = client
            .fetch_manifest(&reference(&format!(
                "{}/team/app@{}",
                registry.host(),
                d.digest
            )))
            .await
            .unwrap();
        let m = Manifest::from_json(&fetched.bytes).unwrap();
        assert_eq!(m.subject.unwrap().digest, subject.digest);
    }
    // The image's tag still names the image.
    let tagged = client.fetch_manifest(&destination).await.unwrap();
    assert_eq!(tagged.bytes, image.manifest_bytes);
    if skopeo::available_or_skip() {
        let raw = skopeo::inspect_raw(
            &format!("{}/team/app:{tag}", registry.host()),
            &skopeo::Access::default(),
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&raw).contains(Digest::sha256_of(&sbom).encoded()));
    }
}

#[tokio::test]
async fn a_referrer_without_subject_is_refused_before_anything_is_pushed() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let client = anonymous_client();
    let destination = reference(&format!("{}/team/app:v1", registry.host()));
    let blobs = MemoryBlobs::new();
    let image = small_image(8);
    let subject = Descriptor::of_bytes(MediaType::OciManifest, &image.manifest_bytes);
    let mut m =
        Manifest::from_json(&artifact(&subject, "application/spdx+json", b"{}", &blobs)).unwrap();
    m.subject = None;
    let e = client
        .push_referrer(&destination, &m.to_canonical_json(), &blobs)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("needs a subject"), "{e}");
    assert!(registry.requests().is_empty(), "nothing sent");
}
