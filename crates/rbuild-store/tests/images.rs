//! Images as values, index.json contents, gc and export to another layout.

mod common;

use std::time::Duration;

use rbuild_oci::{Descriptor, Digest, Index, MediaType, Platform, ANNOTATION_REF_NAME};
use rbuild_store::{Store, StoreError};

#[test]
fn put_get_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (d1, m1) = common::put_test_image(&store, "docker.io/library/one:1", "one");
    let (d2, _) = common::put_test_image(&store, "two", "two");
    let (got_d, got_m, config) = store.get_image("docker.io/library/one:1").unwrap();
    assert_eq!(got_d.digest, d1.digest);
    assert_eq!(got_m, m1);
    assert_eq!(config.os, "linux");
    assert_eq!(got_d.platform.as_ref().unwrap().os, "linux");
    let names: Vec<String> = store
        .list_images()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["docker.io/library/one:1", "two"]);

    // Same name again replaces the entry.
    let (d2b, _) = common::put_test_image(&store, "two", "two, again");
    assert_ne!(d2b.digest, d2.digest);
    assert_eq!(store.list_images().unwrap().len(), 2);
    assert_eq!(store.resolve("two").unwrap().digest, d2b.digest);

    assert!(store.remove_image("two").unwrap());
    assert!(!store.remove_image("two").unwrap());
    assert!(matches!(
        store.get_image("two"),
        Err(StoreError::ImageNotFound(_))
    ));
    // index.json on disk is a valid index naming the image.
    let raw = std::fs::read(dir.path().join("index.json")).unwrap();
    let index = Index::from_json(&raw).unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(
        index.manifests[0].annotations[ANNOTATION_REF_NAME],
        "docker.io/library/one:1"
    );
}

#[test]
fn put_image_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, manifest) = common::put_test_image(&store, "ok", "x");
    let bytes = manifest.to_canonical_json();
    let err = store
        .put_image("bad name", &bytes, MediaType::OciManifest)
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidName { .. }), "{err}");
    let err = store
        .put_image("x", b"{not json", MediaType::OciManifest)
        .unwrap_err();
    assert!(err.to_string().contains("manifest for \"x\""), "{err}");

    // A manifest whose layer is not in the store is refused and not named.
    let mut missing = manifest.clone();
    missing.layers[0] = Descriptor::new(MediaType::OciLayerGzip, Digest::sha256_of(b"absent"), 6);
    let err = store
        .put_image(
            "missing",
            &missing.to_canonical_json(),
            MediaType::OciManifest,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::BlobNotFound(_)), "{err}");
    assert!(store.resolve("missing").is_err());
}

#[test]
fn index_images_resolve_per_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (mut host, _) = common::put_test_image(&store, "host-only", "host");
    host.annotations.clear();
    let other = Descriptor {
        platform: Some(Platform::parse("linux/s390x").unwrap()),
        ..Descriptor::new(MediaType::OciManifest, Digest::sha256_of(b"not pulled"), 10)
    };
    let index = Index {
        manifests: vec![other, host.clone()],
        ..Index::default()
    };
    store
        .put_image(
            "multi:latest",
            &index.to_canonical_json(),
            MediaType::OciIndex,
        )
        .unwrap();
    let (d, _, _) = store.get_image("multi:latest").unwrap();
    assert_eq!(d.digest, host.digest);
    let err = store
        .get_image_for_platform("multi:latest", &Platform::parse("windows/amd64").unwrap())
        .unwrap_err();
    assert!(matches!(err, StoreError::NoPlatform { .. }), "{err}");
}

#[test]
fn gc_keeps_referenced_and_removes_unreferenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (keep_d, keep_m) = common::put_test_image(&store, "keep", "keep");
    let (drop_d, drop_m) = common::put_test_image(&store, "drop", "drop");
    let loose = store.put_blob(b"loose blob", MediaType::OciLayer).unwrap();
    // A dead writer's temp file.
    let mut w = store.blob_writer().unwrap();
    std::io::Write::write_all(&mut w, b"half").unwrap();
    std::mem::forget(w);
    // A crashed index.json replacement.
    std::fs::write(dir.path().join(".index.json.x1Y2z3.tmp"), b"{").unwrap();
    store.remove_image("drop").unwrap();

    // Inside the grace period nothing is removed.
    let report = store.gc(Duration::from_secs(3600)).unwrap();
    assert!(report.removed_blobs.is_empty());
    assert_eq!(report.removed_temp_files, 0);
    assert!(store.has_blob(&loose.digest));

    let report = store.gc(Duration::ZERO).unwrap();
    let mut expected: Vec<Digest> = vec![
        drop_d.digest.clone(),
        drop_m.config.digest.clone(),
        drop_m.layers[0].digest.clone(),
        loose.digest.clone(),
    ];
    expected.sort();
    let mut removed = report.removed_blobs.clone();
    removed.sort();
    assert_eq!(removed, expected);
    assert_eq!(report.removed_temp_files, 2);
    assert!(!dir.path().join(".index.json.x1Y2z3.tmp").exists());
    assert_eq!(report.kept_blobs, 3);
    for d in [
        &keep_d.digest,
        &keep_m.config.digest,
        &keep_m.layers[0].digest,
    ] {
        assert!(store.has_blob(d), "{d} removed");
    }
    for d in &expected {
        assert!(!store.has_blob(d), "{d} kept");
    }
    store.get_image("keep").unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join(".rbuild-ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn export_to_another_layout_copies_only_what_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("src")).unwrap();
    let (d, m) = common::put_test_image(&store, "app:1", "app");
    common::put_test_image(&store, "other", "other");
    let dest = store
        .export_oci_layout(dir.path().join("dest"), &[("app:1", "latest")])
        .unwrap();
    let (dd, dm, _) = dest.get_image("latest").unwrap();
    assert_eq!((dd.digest, dm), (d.digest, m));
    assert_eq!(
        std::fs::read_dir(dest.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        3
    );
    assert!(matches!(
        store.export_oci_layout(dir.path().join("d2"), &[("nope", "x")]),
        Err(StoreError::ImageNotFound(_))
    ));
}

#[test]
fn cache_records_are_gc_roots() {
    use rbuild_store::CacheRecord;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let layer = store
        .put_blob(b"cached layer", MediaType::OciLayer)
        .unwrap();
    let orphan = store.put_blob(b"orphan", MediaType::OciLayer).unwrap();
    let key = Digest::sha256_of(b"RUN make");
    assert_eq!(store.get_cache_record(&key).unwrap(), None);
    let record = CacheRecord {
        descriptors: vec![layer.clone()],
        annotations: [("diff_id".to_string(), layer.digest.to_string())].into(),
    };
    store.put_cache_record(&key, &record).unwrap();
    assert_eq!(store.get_cache_record(&key).unwrap(), Some(record.clone()));

    let report = store.gc(Duration::ZERO).unwrap();
    assert_eq!(report.removed_blobs, vec![orphan.digest.clone()]);
    assert!(store.has_blob(&layer.digest));

    // A record naming an absent blob is refused; one whose blob vanished reads as a miss.
    let missing = CacheRecord {
        descriptors: vec![orphan],
        ..Default::default()
    };
    let err = store.put_cache_record(&key, &missing).unwrap_err();
    assert!(matches!(err, StoreError::BlobNotFound(_)), "{err}");
    std::fs::remove_file(store.blob_path(&layer.digest)).unwrap();
    assert_eq!(store.get_cache_record(&key).unwrap(), None);

    assert!(store.remove_cache_record(&key).unwrap());
    assert!(!store.remove_cache_record(&key).unwrap());
    // The layout still opens with the cache directory in it.
    Store::open(dir.path()).unwrap();
}

#[test]
fn docker_archive_of_a_truncated_blob_fails_instead_of_lying() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, manifest) = common::put_test_image(&store, "app:1", "app");
    let mut archive = store.export_docker_archive(&["app:1"], Vec::new()).unwrap();
    assert!(archive.len() > 1024);
    // The archive lists the layer under its blob path.
    let mut tar = tar::Archive::new(archive.as_slice());
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    let layer_path = format!("blobs/sha256/{}", manifest.layers[0].digest.encoded());
    assert!(names.contains(&layer_path), "{names:?}");
    for expected in ["manifest.json", "repositories", "index.json", "oci-layout"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    archive.clear();
    // Shrink the layer on disk behind the store's back: the export must fail.
    let path = store.blob_path(&manifest.layers[0].digest);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = store
        .export_docker_archive(&["app:1"], Vec::new())
        .unwrap_err();
    assert!(err.to_string().contains("the manifest says"), "{err}");
    let err = store
        .export_docker_archive(&["nope"], Vec::new())
        .unwrap_err();
    assert!(matches!(err, StoreError::ImageNotFound(_)), "{err}");
}

/// Issue #12, item 6: a config with fewer (or more) diffIDs than the manifest has layers.
#[test]
fn an_image_whose_config_and_layers_disagree_in_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, honest) = common::put_test_image(&store, "honest", "x");
    let config = store.read_config(&honest.config.digest).unwrap();
    for diff_ids in [0, 2] {
        let mut forged = config.clone();
        forged.rootfs.diff_ids = vec![config.rootfs.diff_ids[0].clone(); diff_ids];
        let forged_config = store
            .put_blob(&forged.to_canonical_json(), MediaType::OciConfig)
            .unwrap();
        let mut manifest = honest.clone();
        manifest.config = forged_config.clone();
        let bytes = manifest.to_canonical_json();
        let manifest_digest = Digest::sha256_of(&bytes);
        let err = store
            .put_image("forged", &bytes, MediaType::OciManifest)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::LayerCountMismatch { layers: 1, diff_ids: n, .. } if n == diff_ids),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&manifest_digest.to_string()), "{message}");
        assert!(
            message.contains(&forged_config.digest.to_string()),
            "{message}"
        );
        // Nothing looks valid: no name, and not even the manifest blob.
        assert!(matches!(
            store.get_image("forged"),
            Err(StoreError::ImageNotFound(_))
        ));
        assert!(!store.has_blob(&manifest_digest));

        // A forged image already in a layout (written by something else) is refused on read.
        let descriptor = store.put_blob(&bytes, MediaType::OciManifest).unwrap();
        let err = store.read_image(&descriptor).unwrap_err();
        assert!(
            matches!(err, StoreError::LayerCountMismatch { .. }),
            "{err:?}"
        );
        let raw = std::fs::read(dir.path().join("index.json")).unwrap();
        let mut index = Index::from_json(&raw).unwrap();
        let mut named = descriptor.clone();
        named
            .annotations
            .insert(ANNOTATION_REF_NAME.into(), "planted".into());
        index.manifests.push(named);
        std::fs::write(dir.path().join("index.json"), index.to_canonical_json()).unwrap();
        let err = store.get_image("planted").unwrap_err();
        assert!(
            matches!(err, StoreError::LayerCountMismatch { .. }),
            "{err:?}"
        );
        assert!(store.remove_image("planted").unwrap());
    }
    assert!(store
        .read_image(&store.resolve("honest").unwrap())
        .unwrap()
        .is_some());
}
