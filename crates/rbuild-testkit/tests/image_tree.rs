//! Snapshots of images made here with rbuild-layer: every attribute the comparator looks at,
//! and clear errors for bad inputs.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use rbuild_layer::{LayerOptions, LayerWriter};
use rbuild_oci::{Descriptor, ImageConfig, Manifest, MediaType, RootFs};
use rbuild_store::Store;
use rbuild_testkit::{compare, AllowList, Aspect, EntryKind, ImageTree};

/// Writes `root` as a one-layer image named `name` into `store`.
fn image_of(store: &Store, name: &str, root: &Path) {
    let mut blob = Vec::new();
    let options = LayerOptions {
        source_date_epoch: Some(0),
        ..LayerOptions::default()
    };
    let info = LayerWriter::new(options)
        .write_tree(root, &mut blob)
        .unwrap();
    let layer = store.put_blob(&blob, info.media_type.clone()).unwrap();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: vec![info.diff_id],
            ..RootFs::default()
        },
        ..ImageConfig::default()
    };
    let config = store
        .put_blob(&config.to_canonical_json(), MediaType::OciConfig)
        .unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config,
        layers: vec![Descriptor::new(info.media_type, layer.digest, layer.size)],
        subject: None,
        annotations: Default::default(),
    };
    store
        .put_image(name, &manifest.to_canonical_json(), MediaType::OciManifest)
        .unwrap();
}

/// A `security.capability` value (VFS_CAP_REVISION_2, effective) with capability `cap`: the
/// one xattr a layer carries (as BuildKit's).
fn capability(cap: u32) -> Vec<u8> {
    let mut v = 0x0200_0001u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u32 << cap).to_le_bytes());
    v.extend_from_slice(&[0; 12]);
    v
}

fn xattrs_supported(path: &Path) -> bool {
    xattr::set(path, "security.capability", &capability(10)).is_ok()
}

#[test]
fn snapshot_keeps_hardlinks_symlinks_special_modes_and_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    std::fs::write(root.join("d/file"), "content\n").unwrap();
    std::fs::hard_link(root.join("d/file"), root.join("d/sub/hard")).unwrap();
    symlink("file", root.join("d/link")).unwrap();
    std::fs::write(root.join("d/setuid"), "").unwrap();
    std::fs::set_permissions(
        root.join("d/setuid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(root.join("d/sub"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let with_xattrs = xattrs_supported(&root.join("d/file"));
    if with_xattrs {
        // Other xattrs never reach a layer.
        let _ = xattr::set(root.join("d/file"), "user.origin", b"test");
    }

    let store = Store::open(dir.path().join("store")).unwrap();
    image_of(&store, "first", &root);
    let tree = ImageTree::from_store(&store, "first").unwrap();

    let file = tree.get("/d/file").unwrap();
    assert_eq!((file.kind, file.size), (EntryKind::File, 8));
    assert_eq!(
        file.sha256.as_ref().unwrap().as_str(),
        rbuild_oci::Digest::sha256_of(b"content\n").as_str()
    );
    assert_eq!(file.hardlink_group.as_deref(), Some("/d/file"));
    assert_eq!(
        tree.get("/d/sub/hard").unwrap().hardlink_group.as_deref(),
        Some("/d/file")
    );
    assert_eq!(
        tree.get("/d/link").unwrap().link_target.as_deref(),
        Some("file")
    );
    assert_eq!(tree.get("/d/link").unwrap().hardlink_group, None);
    assert_eq!(tree.get("/d/setuid").unwrap().mode, 0o4755);
    assert_eq!(tree.get("/d/sub").unwrap().mode, 0o1777);
    assert_eq!(tree.get("d/sub/").map(|e| e.path.as_str()), Some("/d/sub"));
    if with_xattrs {
        assert_eq!(
            file.xattrs.get("security.capability"),
            Some(&capability(10))
        );
        assert_eq!(file.xattrs.get("user.origin"), None);
    }
    let paths: Vec<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries sorted by path");

    // Break the hardlink, change a mode, the owner and an xattr: each shows as its aspect.
    std::fs::remove_file(root.join("d/sub/hard")).unwrap();
    std::fs::write(root.join("d/sub/hard"), "content\n").unwrap();
    std::fs::set_permissions(
        root.join("d/setuid"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::lchown(root.join("d/link"), Some(1000), Some(1000)).unwrap();
    if with_xattrs {
        xattr::set(root.join("d/file"), "security.capability", &capability(13)).unwrap();
    }
    image_of(&store, "second", &root);
    let changed = ImageTree::from_store(&store, "second").unwrap();
    let diff = compare(&changed, &tree, &AllowList::default());
    let aspects: Vec<(&str, Aspect)> = diff
        .differences
        .iter()
        .map(|d| (d.subject.as_str(), d.aspect.unwrap()))
        .collect();
    assert!(
        aspects.contains(&("/d/sub/hard", Aspect::Hardlink)),
        "{diff}"
    );
    assert!(aspects.contains(&("/d/file", Aspect::Hardlink)), "{diff}");
    assert!(aspects.contains(&("/d/setuid", Aspect::Mode)), "{diff}");
    assert!(aspects.contains(&("/d/link", Aspect::Owner)), "{diff}");
    assert!(
        !aspects.iter().any(|(_, a)| *a == Aspect::Content),
        "{diff}"
    );
    if with_xattrs {
        assert!(aspects.contains(&("/d/file", Aspect::Xattrs)), "{diff}");
        assert!(
            diff.to_string()
                .contains("security.capability=0100000200200000"),
            "{diff}"
        );
    }
    assert!(
        diff.to_string().contains("/d/setuid: mode 0755 != 4755"),
        "{diff}"
    );
}

#[test]
fn bad_inputs_give_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.tar");
    let err = ImageTree::from_path(&missing).unwrap_err().to_string();
    assert!(err.contains("nothing.tar") && !err.contains('\n'), "{err}");

    let not_archive = dir.path().join("empty.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&not_archive).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "hello.txt", &b"hi"[..])
        .unwrap();
    builder.finish().unwrap();
    drop(builder);
    let err = ImageTree::from_path(&not_archive).unwrap_err().to_string();
    assert!(err.contains("empty.tar: read manifest.json"), "{err}");

    // A layout whose layer does not match the config's diffID.
    let store = Store::open(dir.path().join("layout")).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a"), "a").unwrap();
    image_of(&store, "good", &root);
    let (_, manifest, mut config) = store.get_image("good").unwrap();
    config.rootfs.diff_ids[0] = rbuild_oci::Digest::sha256_of(b"other");
    let config = store
        .put_blob(&config.to_canonical_json(), MediaType::OciConfig)
        .unwrap();
    let bad = Manifest { config, ..manifest };
    store
        .put_image("bad", &bad.to_canonical_json(), MediaType::OciManifest)
        .unwrap();
    let err = ImageTree::from_oci_layout(store.root(), Some("bad"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("apply layer") && err.contains("blobs/sha256/"),
        "{err}"
    );
    let err = ImageTree::from_oci_layout(store.root(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected one image in index.json, found 2"),
        "{err}"
    );
}
