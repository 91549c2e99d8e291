//! A fault-injecting proxy between the client and a real registry: error statuses, dropped
//! connections and stalls are retried; when the budget is spent the error is clear and
//! nothing is tagged.

mod common;

use std::time::Duration;

use common::*;
use rbuild_oci::Platform;
use rbuild_registry::{MemoryBlobs, RegistryError};
use rbuild_testkit::{skopeo, Fault, FaultProxy, FaultRule, RegistryAuth, TestRegistry};

fn status(code: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status { code, retry_after }
}

#[tokio::test]
async fn push_survives_5xx_429_and_dropped_uploads() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![
            FaultRule::new("HEAD", "/blobs/sha256:", status(429, Some(1)), 1),
            FaultRule::new("POST", "/blobs/uploads/", status(500, None), 1),
            FaultRule::new("PUT", "/blobs/uploads/", status(503, None), 2),
            FaultRule::new("PUT", "/blobs/uploads/", Fault::CloseBeforeResponse, 1),
            FaultRule::new("PUT", "/manifests/", status(502, None), 1),
            FaultRule::new(
                "PUT",
                "/blobs/uploads/",
                Fault::StallBeforeResponse(Duration::from_secs(4)),
                1,
            ),
        ],
    )
    .unwrap();
    let image = small_image(30);
    let destination = reference(&format!("{}/team/app:v1", proxy.host()));
    let outcomes = // Enough budget for every fault landing on the same blob.
    rbuild_registry::RegistryClient::new(
        rbuild_registry::RegistryOptions {
            retry: rbuild_registry::RetryPolicy {
                max_retries: 8,
                ..fast_options().retry
            },
            ..fast_options()
        },
        rbuild_registry::CredentialChain::empty(),
    )
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            &[destination],
        )
        .await
        .unwrap();
    assert_eq!(outcomes[0].digest, image.digest());
    assert_eq!(
        proxy.faults_left(),
        0,
        "every fault was hit: {:#?}",
        proxy.events()
    );
    // Verified independently, straight at the registry.
    if skopeo::available_or_skip() {
        let layout = tempfile::tempdir().unwrap();
        skopeo::copy_to_oci_dir(
            &format!("{}/team/app:v1", registry.host()),
            &skopeo::Access::default(),
            layout.path(),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn pull_resumes_after_dropped_and_stalled_downloads() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(31);
    let direct = reference(&format!("{}/team/app:v1", registry.host()));
    push(&anonymous_client(), &image, &[direct]).await;
    let big_layer = image.manifest.layers[1].digest.to_string();
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![
            FaultRule::new("GET", &big_layer, Fault::DropResponseAfter(100_000), 1),
            FaultRule::new(
                "GET",
                &big_layer,
                Fault::StallResponse {
                    after_bytes: 50_000,
                    duration: Duration::from_secs(5),
                },
                1,
            ),
            FaultRule::new("GET", "/manifests/", status(503, Some(0)), 1),
        ],
    )
    .unwrap();
    let store = MemoryBlobs::new();
    let pulled = anonymous_client()
        .pull_image(
            &reference(&format!("{}/team/app:v1", proxy.host())),
            &Platform::parse("linux/amd64").unwrap(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest());
    assert_eq!(
        &*store.get(&image.manifest.layers[1].digest).unwrap(),
        &image.blobs[2].1
    );
    let resumed = |e: &String| e.contains("range=bytes=150000-") && e.ends_with("206");
    let events = proxy.events_when(|e| e.iter().any(resumed), Duration::from_secs(5));
    assert!(
        events
            .iter()
            .any(|e| e.contains("range=bytes=100000-") && e.ends_with("stalled injected")),
        "{events:#?}"
    );
    assert!(events.iter().any(resumed), "{events:#?}");
}

#[tokio::test]
async fn spent_retry_budget_fails_clearly_and_tags_nothing() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            status(503, None),
            1000,
        )],
    )
    .unwrap();
    let image = small_image(32);
    let err = anonymous_client()
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            &[reference(&format!("{}/team/app:v1", proxy.host()))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "503 from {} for push of blob sha256:",
            proxy.host()
        )),
        "{text}"
    );
    assert!(text.ends_with("(UNAVAILABLE: injected 503)"), "{text}");
    assert!(
        !registry.has_tag("team/app", "v1"),
        "nothing half-pushed is tagged"
    );
    assert!(!registry
        .requests()
        .iter()
        .any(|r| r.path.contains("/manifests/")));
}

#[tokio::test]
async fn a_corrupted_blob_is_refused_and_not_stored() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(33);
    let destination = reference(&format!("{}/team/app:v1", registry.host()));
    push(
        &anonymous_client(),
        &image,
        std::slice::from_ref(&destination),
    )
    .await;
    // Corrupt the layer in the registry's storage (same size), behind its back.
    let layer = &image.manifest.layers[1].digest;
    let data_path = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer.encoded()[..2])
        .join(layer.encoded())
        .join("data");
    let mut bytes = std::fs::read(&data_path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&data_path, bytes).unwrap();

    let store = MemoryBlobs::new();
    let err = anonymous_client()
        .pull_image(
            &destination,
            &Platform::parse("linux/amd64").unwrap(),
            &store,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains(&format!("expected {layer}")),
        "{err}"
    );
    assert!(
        store.get(layer).is_none(),
        "nothing stored for the bad blob"
    );
}

#[tokio::test]
async fn pull_restarts_a_blob_when_the_server_cannot_resume() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(34);
    push(
        &anonymous_client(),
        &image,
        &[reference(&format!("{}/team/app:v1", registry.host()))],
    )
    .await;
    let big_layer = image.manifest.layers[1].digest.to_string();
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![
            FaultRule::new("GET", &big_layer, Fault::DropResponseAfter(120_000), 1),
            FaultRule::new("GET", &big_layer, Fault::IgnoreRange, 1),
        ],
    )
    .unwrap();
    let store = MemoryBlobs::new();
    anonymous_client()
        .pull_image(
            &reference(&format!("{}/team/app:v1", proxy.host())),
            &Platform::parse("linux/amd64").unwrap(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(
        &*store.get(&image.manifest.layers[1].digest).unwrap(),
        &image.blobs[2].1
    );
    let restarted = |e: &String| e.contains("range=bytes=120000-") && e.ends_with("-> 200");
    let events = proxy.events_when(|e| e.iter().any(restarted), Duration::from_secs(5));
    assert!(events.iter().any(restarted), "{events:#?}");
}
