//! Base images whose manifest or config lie about their layers (issue #12, item 6), pushed to
//! the real `docker-registry` and used as `FROM`: each build fails with a message naming the
//! layer (or the image) and what is wrong, and leaves no unpacked tree and no step-cache
//! record behind.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild::oci::{Descriptor, Digest, ImageConfig, Manifest, MediaType, Reference, RootFs};
use rbuild::registry::{CredentialChain, RegistryOptions};
use rbuild::store::Store;
use rbuild::{BuildRequest, Builder, Compression, ContextSource, DockerfileSource, Remote};
use rbuild_layer::{LayerOptions, LayerWriter};
use rbuild_testkit::{RegistryAuth, TestRegistry};

/// One small tree written as a layer with `compression`: (blob, diffID).
fn layer(tree: &Path, compression: Compression) -> (Vec<u8>, Digest) {
    let mut blob = Vec::new();
    let info = LayerWriter::new(LayerOptions {
        compression,
        source_date_epoch: Some(0),
        ..LayerOptions::default()
    })
    .write_tree(tree, &mut blob)
    .unwrap();
    (blob, info.diff_id)
}

struct Forger {
    seed: Store,
    remote: Remote,
    host: String,
}

impl Forger {
    /// Pushes an image of `layers` (blob, media type) whose config lists `diff_ids`, as
    /// `name`; returns its reference.
    fn push(&self, name: &str, layers: &[(Vec<u8>, MediaType)], diff_ids: Vec<Digest>) -> String {
        let layers: Vec<Descriptor> = layers
            .iter()
            .map(|(blob, media_type)| self.seed.put_blob(blob, media_type.clone()).unwrap())
            .collect();
        let config = ImageConfig {
            architecture: rbuild::oci::Platform::host().architecture,
            os: "linux".into(),
            rootfs: RootFs {
                diff_ids,
                ..RootFs::default()
            },
            ..ImageConfig::default()
        };
        let config = self
            .seed
            .put_blob(&config.to_canonical_json(), MediaType::OciConfig)
            .unwrap();
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: Default::default(),
        };
        let reference = format!("{}/hostile/{name}:1", self.host);
        self.remote
            .push_from_store(
                &self.seed,
                &manifest.to_canonical_json(),
                &MediaType::OciManifest,
                &[Reference::parse(&reference).unwrap()],
            )
            .unwrap();
        reference
    }
}

/// Builds `FROM base` + `COPY f /f` (the COPY needs the base unpacked) with a fresh store;
/// returns the error and the store's directory.
fn build_on(remote: &Remote, work: &Path, base: &str) -> (String, PathBuf) {
    build_steps_on(remote, work, base, "COPY f /f\n")
}

/// Builds `FROM base` + `steps` with a fresh store; returns the error and the store's
/// directory.
fn build_steps_on(remote: &Remote, work: &Path, base: &str, steps: &str) -> (String, PathBuf) {
    let name = format!("{base}-{steps}").replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let context = work.join(format!("ctx-{name}"));
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("f"), "from the context\n").unwrap();
    let store_dir = work.join(format!("store-{name}"));
    let builder = Builder::new(&store_dir).unwrap().with_remote(remote);
    let result = builder.build(BuildRequest {
        context: ContextSource::Dir(context),
        dockerfile: DockerfileSource::Text(format!("FROM {base}\n{steps}")),
        source_date_epoch: Some(0),
        ..BuildRequest::default()
    });
    match result {
        Ok(outcome) => panic!("{base}: built {} on a lying base image", outcome.digest),
        Err(err) => (err.to_string(), store_dir),
    }
}

/// Nothing left looking valid: no unpacked tree in the scratch dir (the trash, where trees
/// wait for the background deleter, is never read by a build), no step-cache record.
fn assert_nothing_left(store_dir: &Path) {
    let work = store_dir.join(".rbuild-work");
    let left: Vec<String> = fs::read_dir(&work)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name != "trash")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", work.display());
    let mut records = Vec::new();
    let mut stack = vec![store_dir.join(".rbuild-cache")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                records.push(entry.path());
            }
        }
    }
    assert!(records.is_empty(), "cache records left: {records:?}");
}

#[test]
fn base_images_that_lie_about_their_layers_are_refused() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hello"), "hello from the base\n").unwrap();
    let other = work.path().join("other");
    fs::create_dir_all(other.join("opt")).unwrap();
    fs::write(other.join("opt/more"), "a second layer\n").unwrap();
    let (gz, diff_id) = layer(&tree, Compression::Gzip);
    let (zst, zst_diff_id) = layer(&tree, Compression::Zstd);
    assert_eq!(zst_diff_id, diff_id);
    let (gz_other, other_diff_id) = layer(&other, Compression::Gzip);
    let forger = Forger {
        seed: Store::open(work.path().join("seed")).unwrap(),
        remote: Remote::new(RegistryOptions::default(), CredentialChain::empty()).unwrap(),
        host: registry.host(),
    };
    let remote = &forger.remote;

    // The control: the honest image builds.
    let honest = forger.push(
        "honest",
        &[
            (gz.clone(), MediaType::OciLayerGzip),
            (gz_other.clone(), MediaType::OciLayerGzip),
        ],
        vec![diff_id.clone(), other_diff_id.clone()],
    );
    let builder = Builder::new(work.path().join("store-honest"))
        .unwrap()
        .with_remote(remote);
    let context = work.path().join("ctx-honest");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("f"), "x\n").unwrap();
    let outcome = builder
        .build(BuildRequest {
            context: ContextSource::Dir(context),
            dockerfile: DockerfileSource::Text(format!("FROM {honest}\nCOPY f /f\n")),
            source_date_epoch: Some(0),
            ..BuildRequest::default()
        })
        .unwrap();
    assert_eq!(outcome.manifest.layers.len(), 3);

    // 1. A diffID in the config that is not the layer's.
    let forged_diff_id = Digest::sha256_of(b"not the layer");
    let reference = forger.push(
        "wrong-diff-id",
        &[
            (gz.clone(), MediaType::OciLayerGzip),
            (gz_other.clone(), MediaType::OciLayerGzip),
        ],
        vec![diff_id.clone(), forged_diff_id.clone()],
    );
    let (message, store_dir) = build_on(remote, work.path(), &reference);
    for needle in [
        Digest::sha256_of(&gz_other).to_string(),
        forged_diff_id.to_string(),
        other_diff_id.to_string(),
    ] {
        assert!(message.contains(&needle), "{needle} not in: {message}");
    }
    assert_nothing_left(&store_dir);

    // 2. Fewer diffIDs than layers: the last layer could never be checked.
    let reference = forger.push(
        "fewer-diff-ids",
        &[
            (gz.clone(), MediaType::OciLayerGzip),
            (gz_other.clone(), MediaType::OciLayerGzip),
        ],
        vec![diff_id.clone()],
    );
    let (message, store_dir) = build_on(remote, work.path(), &reference);
    assert!(
        message.contains("lists 2 layers") && message.contains("has 1 rootfs.diff_ids"),
        "{message}"
    );
    assert_nothing_left(&store_dir);
    let store = Store::open(&store_dir).unwrap();
    assert!(
        store.get_image(&reference).is_err(),
        "the refused image has a name in the store"
    );

    // 3. zstd bytes labelled gzip.
    let reference = forger.push(
        "zstd-as-gzip",
        &[(zst.clone(), MediaType::OciLayerGzip)],
        vec![diff_id.clone()],
    );
    let (message, store_dir) = build_on(remote, work.path(), &reference);
    assert!(
        message.contains(&Digest::sha256_of(&zst).to_string())
            && message.contains("application/vnd.oci.image.layer.v1.tar+gzip")
            && message.contains("zstd"),
        "{message}"
    );
    assert_nothing_left(&store_dir);

    // 3b. The same base passed on without being unpacked (COPY --link needs no rootfs, ENV
    // none at all): refused as well, before any step.
    for steps in ["COPY --link f /f\n", "ENV A=1\n"] {
        let (message, store_dir) = build_steps_on(remote, work.path(), &reference, steps);
        assert!(
            message.contains(&Digest::sha256_of(&zst).to_string()) && message.contains("zstd"),
            "{steps}: {message}"
        );
        assert_nothing_left(&store_dir);
    }

    // 4. A layer media type nothing can unpack.
    let bzip2 = "application/vnd.oci.image.layer.v1.tar+bzip2";
    let reference = forger.push(
        "unknown-media-type",
        &[(gz.clone(), MediaType::from(bzip2))],
        vec![diff_id.clone()],
    );
    let (message, store_dir) = build_on(remote, work.path(), &reference);
    assert!(
        message.contains(bzip2) && message.contains(&Digest::sha256_of(&gz).to_string()),
        "{message}"
    );
    assert_nothing_left(&store_dir);
    let (message, store_dir) = build_steps_on(remote, work.path(), &reference, "ENV A=1\n");
    assert!(message.contains(bzip2), "{message}");
    assert_nothing_left(&store_dir);
}
