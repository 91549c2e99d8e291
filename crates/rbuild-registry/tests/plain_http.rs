//! Push and pull against a real `docker-registry` over plain HTTP, checked with skopeo.

mod common;

use common::*;
use rbuild_oci::{Descriptor, Index, MediaType, Platform};
use rbuild_registry::{BlobPush, DirBlobs, MemoryBlobs, RegistryOptions};
use rbuild_testkit::{skopeo, RegistryAuth, TestRegistry};

#[tokio::test]
async fn push_then_pull_round_trip_checked_by_skopeo() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(1);
    let client = anonymous_client();
    let destination = reference(&format!("{}/team/app:v1", registry.host()));
    let outcomes = push(&client, &image, std::slice::from_ref(&destination)).await;
    assert_eq!(outcomes[0].digest, image.digest());
    assert_eq!(outcomes[0].uploaded(), 4, "config + 3 layers");
    assert!(registry.has_tag("team/app", "v1"));

    // An independent client sees exactly our manifest and can fetch every blob.
    if skopeo::available_or_skip() {
        let access = skopeo::Access::default();
        let raw =
            skopeo::inspect_raw(&format!("{}/team/app:v1", registry.host()), &access).unwrap();
        assert_eq!(raw, image.manifest_bytes);
        let layout = tempfile::tempdir().unwrap();
        skopeo::copy_to_oci_dir(
            &format!("{}/team/app:v1", registry.host()),
            &access,
            layout.path(),
        )
        .unwrap();
    }
    // Pull into a directory store with a fresh client.
    let store_dir = tempfile::tempdir().unwrap();
    let store = DirBlobs::new(store_dir.path());
    let pulled = anonymous_client()
        .pull_image(
            &destination,
            &Platform::parse("linux/amd64").unwrap(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest());
    assert_eq!(pulled.manifest_bytes, image.manifest_bytes);
    for (descriptor, data) in &image.blobs {
        assert_eq!(
            &std::fs::read(store.blob_path(&descriptor.digest)).unwrap(),
            data
        );
    }

    // Pushing again uploads nothing: every blob exists.
    let again = push(&client, &image, &[destination]).await;
    assert!(again[0].blobs.iter().all(|(_, p)| *p == BlobPush::Existed));
}

#[tokio::test]
async fn second_destination_mounts_instead_of_uploading() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(2);
    let client = anonymous_client();
    let first = reference(&format!("{}/team/first:v1", registry.host()));
    let second = reference(&format!("{}/other/second:v1", registry.host()));
    let outcomes = push(&client, &image, &[first, second]).await;
    assert_eq!(outcomes[0].uploaded(), 4);
    assert_eq!(outcomes[1].uploaded(), 0);
    assert_eq!(outcomes[1].mounted(), 4);
    assert!(outcomes[1].blobs.iter().all(|(_, p)| *p
        == BlobPush::Mounted {
            from: "team/first".into()
        }));

    // The registry's own log: mounts answered 201, and no upload bytes went to other/second.
    let requests = registry.requests();
    let mounts: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/v2/other/second/blobs/uploads/?mount="))
        .collect();
    assert_eq!(mounts.len(), 4, "{requests:#?}");
    assert!(mounts.iter().all(|r| r.status == 201));
    assert!(
        !requests
            .iter()
            .any(|r| (r.method == "PUT" || r.method == "PATCH")
                && r.path.starts_with("/v2/other/second/blobs/")),
        "no upload to the mount destination: {requests:#?}"
    );
    assert!(registry.has_tag("other/second", "v1"));
}

#[tokio::test]
async fn pull_records_holders_so_push_to_another_repo_mounts() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(3);
    let base = reference(&format!("{}/library/base:1", registry.host()));
    push(&anonymous_client(), &image, std::slice::from_ref(&base)).await;
    // A new client (a new build) pulls the base, then pushes an image with the same layers.
    let client = anonymous_client();
    let blobs = MemoryBlobs::new();
    client
        .pull_image(&base, &Platform::parse("linux/amd64").unwrap(), &blobs)
        .await
        .unwrap();
    let out = client
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs,
            &[reference(&format!("{}/team/derived:1", registry.host()))],
        )
        .await
        .unwrap();
    assert_eq!(out[0].mounted(), 4);
}

#[tokio::test]
async fn large_blobs_go_in_patch_chunks() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image =
        rbuild_testkit::TestImage::build(&[rbuild_testkit::TestLayer::random("big", 2_500_000, 9)])
            .unwrap();
    let options = RegistryOptions {
        monolithic_upload_limit: 1 << 20,
        upload_chunk_size: 1 << 20,
        ..fast_options()
    };
    let client =
        rbuild_registry::RegistryClient::new(options, rbuild_registry::CredentialChain::empty());
    let destination = reference(&format!("{}/team/big:v1", registry.host()));
    push(&client, &image, std::slice::from_ref(&destination)).await;
    let patches = registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with("/v2/team/big/blobs/uploads/"))
        .count();
    assert_eq!(patches, 3, "2.5 MB in 1 MiB chunks");
    let store = MemoryBlobs::new();
    anonymous_client()
        .pull_image(
            &destination,
            &Platform::parse("linux/amd64").unwrap(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(
        &*store.get(&image.manifest.layers[0].digest).unwrap(),
        &image.blobs[1].1
    );
}

#[tokio::test]
async fn index_resolves_to_the_requested_platform() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let amd = small_image(4);
    let arm = small_image(5);
    let client = anonymous_client();
    let repo = format!("{}/team/multi", registry.host());
    let mut entries = Vec::new();
    for (image, platform) in [(&amd, "linux/amd64"), (&arm, "linux/arm64/v8")] {
        let by_digest = reference(&format!("{repo}@{}", image.digest()));
        client
            .push_blobs(
                &by_digest,
                &image
                    .blobs
                    .iter()
                    .map(|(d, _)| d.clone())
                    .collect::<Vec<_>>(),
                &blobs_of(image),
            )
            .await
            .unwrap();
        client
            .push_manifest(&by_digest, &image.manifest_bytes, &image.media_type)
            .await
            .unwrap();
        let mut descriptor = Descriptor::of_bytes(MediaType::OciManifest, &image.manifest_bytes);
        descriptor.platform = Some(Platform::parse(platform).unwrap());
        entries.push(descriptor);
    }
    let index = Index {
        manifests: entries,
        media_type: Some(MediaType::OciIndex),
        ..Index::default()
    };
    let index_bytes = index.to_canonical_json();
    let tagged = reference(&format!("{repo}:latest"));
    client
        .push_manifest(&tagged, &index_bytes, &MediaType::OciIndex)
        .await
        .unwrap();

    let resolved = client
        .resolve_image(&tagged, &Platform::parse("linux/arm64").unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.digest, arm.digest());
    assert_eq!(
        resolved.index_digest,
        Some(rbuild_oci::Digest::sha256_of(&index_bytes))
    );
    let err = client
        .resolve_image(&tagged, &Platform::parse("linux/s390x").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no image for platform linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_tag_and_unreachable_registry_are_clear() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let client = anonymous_client();
    let err = client
        .fetch_manifest(&reference(&format!("{}/team/none:v1", registry.host())))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "404 from {} for pull of team/none:v1",
            registry.host()
        )),
        "{text}"
    );
    assert!(
        text.contains("MANIFEST_UNKNOWN") || text.contains("NAME_UNKNOWN"),
        "{text}"
    );

    // A port where nothing listens: the host and the cause are named.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = client
        .fetch_manifest(&reference(&format!("127.0.0.1:{port}/team/app:v1")))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(err.is_retryable());
    assert!(
        text.starts_with(&format!(
            "cannot reach 127.0.0.1:{port} for pull of team/app:v1"
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn registry_map_is_tried_first_and_falls_back() {
    let Some(origin) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let Some(mirror) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let only_origin = small_image(6);
    let both = small_image(7);
    push(
        &anonymous_client(),
        &only_origin,
        &[reference(&format!("{}/team/a:v1", origin.host()))],
    )
    .await;
    for host in [origin.host(), mirror.host()] {
        push(
            &anonymous_client(),
            &both,
            &[reference(&format!("{host}/team/b:v1"))],
        )
        .await;
    }
    let options = RegistryOptions {
        registry_maps: vec![(origin.host(), mirror.host())],
        ..fast_options()
    };
    let client =
        rbuild_registry::RegistryClient::new(options, rbuild_registry::CredentialChain::empty());
    let platform = Platform::parse("linux/amd64").unwrap();
    let store = MemoryBlobs::new();
    let origin_before = origin.requests().len();
    let from_mirror = client
        .pull_image(
            &reference(&format!("{}/team/b:v1", origin.host())),
            &platform,
            &store,
        )
        .await
        .unwrap();
    assert_eq!(from_mirror.host, mirror.host());
    let fallback = client
        .pull_image(
            &reference(&format!("{}/team/a:v1", origin.host())),
            &platform,
            &store,
        )
        .await
        .unwrap();
    assert_eq!(fallback.host, origin.host());
    assert_eq!(fallback.digest, only_origin.digest());
    assert!(
        !origin.requests()[origin_before..]
            .iter()
            .any(|r| r.path.contains("/team/b/")),
        "b came from the mirror only"
    );
}

#[tokio::test]
async fn relative_location_headers_are_followed() {
    if !TestRegistry::available() {
        return;
    }
    let registry = TestRegistry::start_with(RegistryAuth::None, true).unwrap();
    // The registry really answers with a relative Location.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(registry.addr()).unwrap();
        raw.write_all(b"POST /v2/probe/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).unwrap();
        assert!(
            answer.contains("Location: /v2/probe/x/blobs/uploads/"),
            "{answer}"
        );
    }
    let image =
        rbuild_testkit::TestImage::build(&[rbuild_testkit::TestLayer::random("big", 1_500_000, 8)])
            .unwrap();
    let options = RegistryOptions {
        monolithic_upload_limit: 1 << 20,
        upload_chunk_size: 1 << 20,
        ..fast_options()
    };
    let client =
        rbuild_registry::RegistryClient::new(options, rbuild_registry::CredentialChain::empty());
    let destination = reference(&format!("{}/team/rel:v1", registry.host()));
    push(&client, &image, std::slice::from_ref(&destination)).await;
    let patches = registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.status == 202)
        .count();
    assert_eq!(patches, 2);
    assert!(registry.has_tag("team/rel", "v1"));
}

#[tokio::test]
async fn mount_answered_202_uploads_into_the_offered_session() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(13);
    let client = anonymous_client();
    // A wrong hint: the "holder" never had these blobs, so the registry answers the mount
    // with 202 and an upload session, which must be used.
    for (descriptor, _) in &image.blobs {
        client.note_blob_holder(&registry.host(), "ghost/repo", &descriptor.digest);
    }
    let out = push(
        &client,
        &image,
        &[reference(&format!("{}/team/app:v1", registry.host()))],
    )
    .await;
    assert_eq!(out[0].uploaded(), 4);
    let requests = registry.requests();
    let mounts: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("mount="))
        .collect();
    assert_eq!(mounts.len(), 4);
    assert!(mounts.iter().all(|r| r.status == 202), "{mounts:#?}");
    let plain_posts = requests
        .iter()
        .filter(|r| r.method == "POST" && !r.path.contains("mount="))
        .count();
    assert_eq!(plain_posts, 0, "the mount's upload session is reused");
    assert!(registry.has_tag("team/app", "v1"));
}

#[tokio::test]
async fn every_finished_blob_is_reported_to_the_progress_callback() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let image = small_image(77);
    let client = anonymous_client();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    client.set_progress(std::sync::Arc::new(move |t: &rbuild_registry::Transfer| {
        sink.lock()
            .unwrap()
            .push((t.kind, t.digest.clone(), t.bytes_moved()));
    }));
    let destination = reference(&format!("{}/team/progress:v1", registry.host()));
    push(&client, &image, std::slice::from_ref(&destination)).await;
    let blobs = image.blobs.len();
    let total: u64 = image.blobs.iter().map(|(_, data)| data.len() as u64).sum();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), blobs, "{seen:?}");
        assert!(seen
            .iter()
            .all(|(k, _, _)| *k == rbuild_registry::TransferKind::Uploaded));
        assert_eq!(seen.iter().map(|(_, _, b)| b).sum::<u64>(), total);
    }
    seen.lock().unwrap().clear();
    push(&client, &image, std::slice::from_ref(&destination)).await;
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|(k, _, b)| *k == rbuild_registry::TransferKind::Existed && *b == 0));
    seen.lock().unwrap().clear();
    let store = MemoryBlobs::new();
    client
        .pull_image(&destination, &rbuild_oci::Platform::host(), &store)
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), blobs, "{seen:?}");
    assert!(seen
        .iter()
        .all(|(k, _, _)| *k == rbuild_registry::TransferKind::Downloaded));
    assert_eq!(seen.iter().map(|(_, _, b)| b).sum::<u64>(), total);
}
