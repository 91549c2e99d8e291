//! A small real image for the tests: one gzip layer made with the `tar` crate.

#![allow(dead_code)]

use std::io::Write;

use flate2::write::GzEncoder;
use rbuild_oci::{
    ContainerConfig, Descriptor, Digest, History, ImageConfig, Manifest, MediaType, RootFs,
};
use rbuild_store::Store;

/// A tar with a directory, two files (`greeting` = `text`) and a symlink.
pub fn layer_tar(text: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(1_700_000_000);
    b.append_data(&mut dir, "etc/", std::io::empty()).unwrap();
    for (path, body) in [
        ("etc/greeting", text.as_bytes()),
        ("etc/empty", b"".as_slice()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, body).unwrap();
    }
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_size(0);
    b.append_link(&mut link, "etc/alias", "greeting").unwrap();
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Stores a one-layer linux image (OCI media types) named `name` whose file says `text`;
/// returns the manifest's descriptor and the manifest.
pub fn put_test_image(store: &Store, name: &str, text: &str) -> (Descriptor, Manifest) {
    put_test_image_as(store, name, text, Flavour::Oci)
}

/// Which media types the test image uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Oci,
    Docker,
}

/// [`put_test_image`] with OCI or Docker v2 schema 2 media types.
pub fn put_test_image_as(
    store: &Store,
    name: &str,
    text: &str,
    flavour: Flavour,
) -> (Descriptor, Manifest) {
    let (manifest_type, config_type, layer_type) = match flavour {
        Flavour::Oci => (
            MediaType::OciManifest,
            MediaType::OciConfig,
            MediaType::OciLayerGzip,
        ),
        Flavour::Docker => (
            MediaType::DockerManifest,
            MediaType::DockerConfig,
            MediaType::DockerLayerGzip,
        ),
    };
    let tar = layer_tar(text);
    let diff_id = Digest::sha256_of(&tar);
    let layer = store.put_blob(&gzip(&tar), layer_type).unwrap();
    let config = ImageConfig {
        created: Some("2024-01-01T00:00:00Z".into()),
        architecture: rbuild_oci::Platform::host().architecture,
        os: "linux".into(),
        config: ContainerConfig {
            env: vec!["PATH=/usr/bin:/bin".into()],
            cmd: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        },
        rootfs: RootFs {
            typ: "layers".into(),
            diff_ids: vec![diff_id],
        },
        history: vec![History {
            created_by: Some(format!("test layer {text}")),
            ..Default::default()
        }],
        ..Default::default()
    };
    let config = store
        .put_blob(&config.to_canonical_json(), config_type)
        .unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(manifest_type.clone()),
        artifact_type: None,
        config,
        layers: vec![layer],
        subject: None,
        annotations: Default::default(),
    };
    let d = store
        .put_image(name, &manifest.to_canonical_json(), manifest_type)
        .unwrap();
    (d, manifest)
}
