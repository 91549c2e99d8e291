//! Test images made in memory: real tar layers, an image config, an OCI manifest.

use rbuild_oci::{Descriptor, Digest, ImageConfig, Manifest, MediaType, RootFs};

use crate::TestkitError;

/// One layer's files: `(path, content)`.
#[derive(Debug, Clone, Default)]
pub struct TestLayer {
    /// Regular files in the layer, in order.
    pub files: Vec<(String, Vec<u8>)>,
}

impl TestLayer {
    /// A layer with one file.
    pub fn file(path: &str, content: impl Into<Vec<u8>>) -> TestLayer {
        TestLayer {
            files: vec![(path.to_owned(), content.into())],
        }
    }

    /// A layer with one file of `size` pseudo-random (incompressible) bytes from `seed`.
    pub fn random(path: &str, size: usize, seed: u64) -> TestLayer {
        TestLayer::file(path, pseudo_random(size, seed))
    }

    /// The layer as an uncompressed tar archive.
    pub fn to_tar(&self) -> Result<Vec<u8>, TestkitError> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, path, content.as_slice())
                .map_err(|e| TestkitError::Image(format!("tar entry {path}: {e}")))?;
        }
        builder
            .into_inner()
            .map_err(|e| TestkitError::Image(format!("tar: {e}")))
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so big test layers do not compress.
pub fn pseudo_random(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// An image: config and layer blobs plus the manifest that ties them together.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// The decoded manifest.
    pub manifest: Manifest,
    /// The manifest's media type (OCI).
    pub media_type: MediaType,
    /// The config's bytes.
    pub config_bytes: Vec<u8>,
    /// Every blob (config first, then layers) with its content.
    pub blobs: Vec<(Descriptor, Vec<u8>)>,
}

impl TestImage {
    /// Builds an OCI image for `linux/amd64` with the given layers (uncompressed tar).
    pub fn build(layers: &[TestLayer]) -> Result<TestImage, TestkitError> {
        let mut layer_blobs = Vec::new();
        for layer in layers {
            let tar = layer.to_tar()?;
            layer_blobs.push((Descriptor::of_bytes(MediaType::OciLayer, &tar), tar));
        }
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs {
                diff_ids: layer_blobs.iter().map(|(d, _)| d.digest.clone()).collect(),
                ..RootFs::default()
            },
            ..ImageConfig::default()
        };
        let config_bytes = config.to_canonical_json();
        let config_descriptor = Descriptor::of_bytes(MediaType::OciConfig, &config_bytes);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            artifact_type: None,
            config: config_descriptor.clone(),
            layers: layer_blobs.iter().map(|(d, _)| d.clone()).collect(),
            subject: None,
            annotations: Default::default(),
        };
        let manifest_bytes = manifest.to_canonical_json();
        let mut blobs = vec![(config_descriptor, config_bytes.clone())];
        blobs.extend(layer_blobs);
        Ok(TestImage {
            manifest_bytes,
            manifest,
            media_type: MediaType::OciManifest,
            config_bytes,
            blobs,
        })
    }

    /// The manifest digest.
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest_bytes)
    }

    /// The total size of all blobs.
    pub fn total_size(&self) -> u64 {
        self.blobs.iter().map(|(d, _)| d.size).sum()
    }
}
