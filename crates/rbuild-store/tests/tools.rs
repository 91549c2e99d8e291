//! Independent tools (skopeo, umoci; Debian packages) accept what the store writes.
//!
//! Without a tool the test is skipped with a notice, unless `CI` is set: then it fails.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use rbuild_store::Store;

/// Whether `tool` runs; panics in CI when it does not.
#[allow(clippy::print_stderr)]
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI (apt-get install {tool})"
        );
        eprintln!("NOTICE: {tool} not installed, skipping (install the Debian package {tool})");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Unpacks `layout:ref` rootless with umoci and returns the greeting file's text.
fn umoci_unpack_greeting(layout: &Path, reference: &str, bundle: &Path) -> String {
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--rootless")
        .arg("--image")
        .arg(format!("{}:{reference}", layout.display()))
        .arg(bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/alias")).unwrap(),
        Path::new("greeting")
    );
    std::fs::read_to_string(rootfs.join("etc/greeting")).unwrap()
}

#[test]
fn skopeo_and_umoci_read_the_layout() {
    if !have("skopeo") || !have("umoci") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let store = Store::open(&layout).unwrap();
    let (d, m) = common::put_test_image(&store, "example.com/team/app:v1", "hello from rbuild");
    common::put_test_image(&store, "latest", "second image");

    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:example.com/team/app:v1", layout.display())));
    let v = json(&out);
    assert_eq!(v["Digest"], d.digest.to_string());
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Layers"][0], m.layers[0].digest.to_string());
    assert_eq!(v["Env"][0], "PATH=/usr/bin:/bin");

    let out = run(Command::new("umoci").arg("ls").arg("--layout").arg(&layout));
    let listed = String::from_utf8(out.stdout).unwrap();
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(names, ["example.com/team/app:v1", "latest"]);

    let out = run(Command::new("umoci")
        .arg("stat")
        .arg("--json")
        .arg("--image")
        .arg(format!("{}:latest", layout.display())));
    let v = json(&out);
    assert_eq!(v["history"][0]["created_by"], "test layer second image");

    let greeting = umoci_unpack_greeting(
        &layout,
        "example.com/team/app:v1",
        &dir.path().join("bundle"),
    );
    assert_eq!(greeting, "hello from rbuild");
}

#[test]
fn skopeo_reads_exported_layout_and_docker_archive() {
    if !have("skopeo") || !have("umoci") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let (d, m) = common::put_test_image(&store, "docker.io/library/app:1.0", "archived");
    // A Docker v2 schema 2 image, under two names.
    common::put_test_image_as(
        &store,
        "docker.io/library/app:latest",
        "docker types",
        common::Flavour::Docker,
    );
    common::put_test_image_as(
        &store,
        "docker.io/team/app:latest",
        "docker types",
        common::Flavour::Docker,
    );
    common::put_test_image(&store, "localhost:5000/other:x", "other image");

    // Export to a fresh layout under a short ref name.
    let exported = dir.path().join("exported");
    store
        .export_oci_layout(&exported, &[("docker.io/library/app:1.0", "1.0")])
        .unwrap();
    let v = json(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:1.0", exported.display()))));
    assert_eq!(v["Digest"], d.digest.to_string());

    // docker-archive with two images, one of them under two names.
    let archive = dir.path().join("images.tar");
    let file = std::fs::File::create(&archive).unwrap();
    store
        .export_docker_archive(
            &[
                "docker.io/library/app:1.0",
                "localhost:5000/other:x",
                "docker.io/library/app:latest",
                "docker.io/team/app:latest",
            ],
            file,
        )
        .unwrap();
    let v = json(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}:app:1.0", archive.display()))));
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["RepoTags"], serde_json::json!([]));
    let diff_id = store.read_config(&m.config.digest).unwrap().rootfs.diff_ids[0].clone();
    // skopeo reports docker-archive layers by their uncompressed digest.
    assert_eq!(v["Layers"][0], diff_id.to_string());
    let v = json(&run(Command::new("skopeo").arg("inspect").arg(format!(
        "docker-archive:{}:localhost:5000/other:x",
        archive.display()
    ))));
    assert_eq!(v["Os"], "linux");

    let v = json(&run(Command::new("skopeo").arg("inspect").arg(format!(
        "docker-archive:{}:team/app:latest",
        archive.display()
    ))));
    assert_eq!(v["Os"], "linux");
    // manifest.json: one entry per image, the Docker image with both of its tags.
    let listing = run(Command::new("tar")
        .arg("-xOf")
        .arg(&archive)
        .arg("manifest.json"));
    let manifest_json = json(&listing);
    let entries = manifest_json.as_array().unwrap();
    assert_eq!(entries.len(), 3, "{manifest_json}");
    assert_eq!(
        entries[2]["RepoTags"],
        serde_json::json!(["app:latest", "team/app:latest"])
    );
    assert_eq!(
        entries[0]["Config"],
        format!("blobs/sha256/{}", m.config.digest.encoded())
    );

    // The archive's layer really unpacks: copy it into a layout and let umoci extract it.
    let copied = dir.path().join("copied");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}:app:1.0", archive.display()))
        .arg(format!("oci:{}:app", copied.display())));
    let greeting = umoci_unpack_greeting(&copied, "app", &dir.path().join("bundle"));
    assert_eq!(greeting, "archived");
}

#[test]
fn docker_typed_images_export_to_a_layout_skopeo_reads_and_back() {
    if !have("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("ours")).unwrap();
    let (d, m) = common::put_test_image_as(
        &store,
        "docker-flavour",
        "via skopeo",
        common::Flavour::Docker,
    );
    let exported = dir.path().join("exported");
    let out = store
        .export_oci_layout(&exported, &[("docker-flavour", "v1")])
        .unwrap();
    let (ed, em, _) = out.get_image("v1").unwrap();
    assert_eq!(ed.media_type, rbuild_oci::MediaType::OciManifest);
    assert_ne!(ed.digest, d.digest, "converted manifest");
    assert_eq!(em.layers[0].digest, m.layers[0].digest, "same layer blob");
    assert_eq!(em.config.digest, m.config.digest, "same config blob");

    let theirs = dir.path().join("theirs");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:v1", exported.display()))
        .arg(format!("oci:{}:copied", theirs.display())));
    let reopened = Store::open(&theirs).unwrap();
    let (copied_d, manifest, config) = reopened.get_image("copied").unwrap();
    assert_eq!(
        copied_d.digest, ed.digest,
        "skopeo kept our OCI manifest byte for byte"
    );
    assert_eq!(config.os, "linux");
    assert!(reopened.has_blob(&manifest.layers[0].digest));
}

#[test]
fn docker_manifest_list_exports_as_an_oci_index() {
    if !have("skopeo") {
        return;
    }
    use rbuild_oci::{Descriptor, Digest, Index, MediaType, Platform};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("ours")).unwrap();
    let (mut host, _) =
        common::put_test_image_as(&store, "child", "multi-arch", common::Flavour::Docker);
    host.annotations.clear();
    let absent = Descriptor {
        platform: Some(Platform::parse("linux/s390x").unwrap()),
        ..Descriptor::new(
            MediaType::DockerManifest,
            Digest::sha256_of(b"not pulled"),
            10,
        )
    };
    let list = Index {
        media_type: Some(MediaType::DockerManifestList),
        manifests: vec![absent.clone(), host.clone()],
        ..Index::default()
    };
    store
        .put_image(
            "list",
            &list.to_canonical_json(),
            MediaType::DockerManifestList,
        )
        .unwrap();
    let exported = dir.path().join("exported");
    let out = store
        .export_oci_layout(&exported, &[("list", "multi")])
        .unwrap();
    let top = out.resolve("multi").unwrap();
    assert_eq!(top.media_type, MediaType::OciIndex);
    let rbuild_oci::AnyManifest::Index(index) = out.read_manifest(&top).unwrap() else {
        panic!("not an index");
    };
    assert_eq!(index.manifests[0], absent, "absent child listed unchanged");
    assert_eq!(index.manifests[1].media_type, MediaType::OciManifest);
    assert_eq!(index.manifests[1].platform, host.platform);
    let v = json(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:multi", exported.display()))));
    // skopeo reports the index's digest and the host child's contents.
    assert_eq!(v["Digest"], top.digest.to_string());
    let child = store.get_image("child").unwrap().1;
    assert_eq!(v["Layers"][0], child.layers[0].digest.to_string());
    assert_eq!(v["Os"], "linux");
}
