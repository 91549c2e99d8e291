//! Issue 16 item 4 through the binary: `--custom-platform` picks the platform's image from a
//! multi-platform index (variants kept), refuses a single-platform base of another platform,
//! and refuses RUN for a platform this machine cannot run (no emulation), before any step.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use rbuild::oci::{Descriptor, ImageConfig, Index, Manifest, MediaType, Platform, RootFs};
use rbuild::store::Store;
use rbuild_testkit::{skopeo, RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// A one-layer image for `platform` whose `/arch.txt` names it.
fn image_for(store: &Store, platform: &str) -> Descriptor {
    let parsed = Platform::parse(platform).unwrap();
    let content = format!("{platform}\n");
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    tar.append_data(&mut header, "arch.txt", content.as_bytes())
        .unwrap();
    let layer_bytes = tar.into_inner().unwrap();
    let layer = store.put_blob(&layer_bytes, MediaType::OciLayer).unwrap();
    let config = ImageConfig {
        architecture: parsed.architecture.clone(),
        os: parsed.os.clone(),
        variant: parsed.variant.clone(),
        rootfs: RootFs {
            diff_ids: vec![layer.digest.clone()],
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
        layers: vec![layer],
        subject: None,
        annotations: Default::default(),
    };
    let mut descriptor = store
        .put_blob(&manifest.to_canonical_json(), MediaType::OciManifest)
        .unwrap();
    descriptor.platform = Some(parsed);
    descriptor
}

/// Pushes `host/repo:latest`: an index of `platforms`, or the one image when given one.
fn push_base(registry: &TestRegistry, dir: &Path, repo: &str, platforms: &[&str]) {
    let layout = dir.join(format!("layout-{}", repo.replace('/', "-")));
    let store = Store::open(&layout).unwrap();
    let images: Vec<Descriptor> = platforms.iter().map(|p| image_for(&store, p)).collect();
    if let [single] = images.as_slice() {
        let bytes = store.read_blob(&single.digest).unwrap();
        store
            .put_image("latest", &bytes, MediaType::OciManifest)
            .unwrap();
    } else {
        let index = Index {
            media_type: Some(MediaType::OciIndex),
            manifests: images,
            ..Index::default()
        };
        store
            .put_image("latest", &index.to_canonical_json(), MediaType::OciIndex)
            .unwrap();
    }
    let output = Command::new("skopeo")
        .args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}/{repo}:latest", registry.host()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn build(dir: &Path, dockerfile: &str, platform: &str) -> Output {
    let context = dir.join("ctx");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    fs::write(context.join("a.txt"), "a\n").unwrap();
    let _ = fs::remove_dir_all(dir.join("layout"));
    Command::new(RBUILD)
        .arg("--context")
        .arg(&context)
        .arg("--cache-dir")
        .arg(dir.join("store"))
        .args([
            "--no-push",
            "--log-format",
            "json",
            "--custom-platform",
            platform,
        ])
        .arg("--oci-layout-path")
        .arg(dir.join("layout"))
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The built image's config and its `/arch.txt`.
fn built(dir: &Path, output: &Output) -> (serde_json::Value, String) {
    assert!(output.status.success(), "{}", stderr(output));
    let layout = dir.join("layout");
    let blob = |digest: &str| fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let tree = rbuild_testkit::ImageTree::from_oci_layout(&layout, None).unwrap();
    (config, tree.text_of("/arch.txt").unwrap_or_default())
}

#[test]
fn an_index_gives_the_asked_platform_with_its_variant() {
    if !skopeo::available_or_skip() {
        return;
    }
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    push_base(
        &registry,
        dir.path(),
        "multi/base",
        &["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
    );
    let dockerfile = format!(
        "FROM {}/multi/base:latest\nCOPY a.txt /a.txt\n",
        registry.host()
    );

    let (config, arch) = built(dir.path(), &build(dir.path(), &dockerfile, "linux/arm64"));
    assert_eq!(arch, "linux/arm64/v8\n", "the arm64 image of the index");
    assert_eq!(config["architecture"], "arm64");

    let (config, arch) = built(dir.path(), &build(dir.path(), &dockerfile, "linux/arm/v7"));
    assert_eq!(arch, "linux/arm/v7\n");
    assert_eq!(config["architecture"], "arm");
    assert_eq!(config["variant"], "v7", "the variant is kept");
}

#[test]
fn a_base_of_another_platform_is_refused() {
    if !skopeo::available_or_skip() {
        return;
    }
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    push_base(&registry, dir.path(), "single/base", &["linux/amd64"]);
    let dockerfile = format!(
        "FROM {}/single/base:latest\nCOPY a.txt /a.txt\n",
        registry.host()
    );
    let output = build(dir.path(), &dockerfile, "linux/arm64");
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("the image is for linux/amd64, the build for linux/arm64")
            && err.contains("does not convert or emulate"),
        "{err}"
    );
    assert!(
        !dir.path().join("layout/index.json").exists(),
        "an image was written"
    );
}

#[test]
fn run_for_a_platform_this_machine_cannot_run_is_refused_before_any_step() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = if Platform::host().normalized().architecture == "s390x" {
        "linux/amd64"
    } else {
        "linux/s390x"
    };
    let output = build(
        dir.path(),
        "FROM scratch\nCOPY a.txt /a.txt\nRUN [\"/a.txt\"]\n",
        foreign,
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("Dockerfile:3: RUN cannot run for") && err.contains("does not emulate"),
        "{err}"
    );
    assert!(!err.contains("\"step_started\""), "a step ran: {err}");

    // Without RUN the foreign image builds: nothing of it is executed here.
    let (config, _) = built(
        dir.path(),
        &build(dir.path(), "FROM scratch\nCOPY a.txt /a.txt\n", foreign),
    );
    assert_eq!(config["architecture"], foreign.rsplit('/').next().unwrap());
}
