//! Images as values: named entries of `index.json`.

use rbuild_oci::{
    AnyManifest, Descriptor, Digest, ImageConfig, Index, Manifest, MediaType, Platform,
    ANNOTATION_REF_NAME,
};

use crate::fs_sync::write_atomically;
use crate::ref_name::check_ref_name;
use crate::{Store, StoreError};

impl Store {
    /// The layout's `index.json`.
    pub fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(StoreError::io("read", &path))?;
        Index::from_json(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Changes `index.json` under the store lock and replaces it atomically.
    pub(crate) fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let out = change(&mut index)?;
        write_atomically(&self.index_path(), &index.to_canonical_json())?;
        Ok(out)
    }

    /// Reads and validates a manifest or index blob.
    pub fn read_manifest(&self, descriptor: &Descriptor) -> Result<AnyManifest, StoreError> {
        let bytes = self.read_blob(&descriptor.digest)?;
        AnyManifest::from_json(&bytes, Some(&descriptor.media_type)).map_err(|source| {
            StoreError::Oci {
                what: format!("manifest {}", descriptor.digest),
                source,
            }
        })
    }

    /// Reads the image manifest `descriptor` names and its config, and checks that the config
    /// has one `rootfs.diff_ids` entry per layer. `Ok(None)` when `descriptor` is an index.
    pub fn read_image(
        &self,
        descriptor: &Descriptor,
    ) -> Result<Option<(Manifest, ImageConfig)>, StoreError> {
        match self.read_manifest(descriptor)? {
            AnyManifest::Image(manifest) => {
                let config = self.read_config(&manifest.config.digest)?;
                check_layer_count(&descriptor.digest, &manifest, &config)?;
                Ok(Some((manifest, config)))
            }
            AnyManifest::Index(_) => Ok(None),
        }
    }

    /// Reads and validates an image config blob.
    pub fn read_config(&self, digest: &Digest) -> Result<ImageConfig, StoreError> {
        let bytes = self.read_blob(digest)?;
        ImageConfig::from_json(&bytes).map_err(|source| StoreError::Oci {
            what: format!("config {digest}"),
            source,
        })
    }

    /// Stores a manifest (or index) and names it `name` in `index.json`, replacing an image of
    /// that name. The manifest must validate and, for an image manifest, its config and layers
    /// must already be in the store (foreign layers with URLs excepted); an index's children may
    /// be partly absent (a store usually holds one platform of a multi-platform image).
    pub fn put_image(
        &self,
        name: &str,
        manifest: &[u8],
        media_type: MediaType,
    ) -> Result<Descriptor, StoreError> {
        check_ref_name(name)?;
        let parsed = AnyManifest::from_json(manifest, Some(&media_type)).map_err(|source| {
            StoreError::Oci {
                what: format!("manifest for {name:?}"),
                source,
            }
        })?;
        let media_type = match (&parsed, media_type) {
            (AnyManifest::Image(m), mt) if !mt.is_manifest() => {
                m.media_type.clone().unwrap_or(MediaType::OciManifest)
            }
            (AnyManifest::Index(i), mt) if !mt.is_index() => {
                i.media_type.clone().unwrap_or(MediaType::OciIndex)
            }
            (_, mt) => mt,
        };
        let manifest_digest = Digest::sha256_of(manifest);
        if let AnyManifest::Image(m) = &parsed {
            if m.is_image() {
                // Checked before the manifest lands, so that a refused image leaves no trace.
                let config = self.read_config(&m.config.digest)?;
                check_layer_count(&manifest_digest, m, &config)?;
            }
        }
        let mut descriptor = self.put_blob(manifest, media_type)?;
        if let AnyManifest::Image(m) = &parsed {
            if m.is_image() {
                let config = self.read_config(&m.config.digest)?;
                descriptor.platform = Some(Platform {
                    architecture: config.architecture,
                    os: config.os,
                    os_version: config.os_version,
                    os_features: config.os_features,
                    variant: config.variant,
                });
            }
        }
        descriptor
            .annotations
            .insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
        self.update_index(|index| {
            // Checked under the lock: a concurrent gc cannot remove these blobs any more.
            if let AnyManifest::Image(m) = &parsed {
                for d in std::iter::once(&m.config).chain(&m.layers) {
                    if d.urls.is_empty() && !self.has_blob(&d.digest) {
                        return Err(StoreError::BlobNotFound(d.digest.clone()));
                    }
                }
            }
            if !self.has_blob(&descriptor.digest) {
                return Err(StoreError::BlobNotFound(descriptor.digest.clone()));
            }
            index.manifests.retain(|d| ref_name(d) != Some(name));
            index.manifests.push(descriptor.clone());
            Ok(())
        })?;
        tracing::debug!(name, digest = %descriptor.digest, "image stored");
        Ok(descriptor)
    }

    /// The `index.json` entry named `name`.
    pub fn resolve(&self, name: &str) -> Result<Descriptor, StoreError> {
        self.read_index()?
            .manifests
            .into_iter()
            .find(|d| ref_name(d) == Some(name))
            .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))
    }

    /// The image named `name` for the host platform: the manifest's descriptor, the manifest
    /// and the config. An index is resolved to its host-platform manifest.
    pub fn get_image(&self, name: &str) -> Result<(Descriptor, Manifest, ImageConfig), StoreError> {
        self.get_image_for_platform(name, &Platform::host())
    }

    /// Like [`Store::get_image`], choosing `platform` when the image is an index.
    pub fn get_image_for_platform(
        &self,
        name: &str,
        platform: &Platform,
    ) -> Result<(Descriptor, Manifest, ImageConfig), StoreError> {
        self.image_at(self.resolve(name)?, platform, name)
    }

    /// The image `descriptor` points at (a manifest, or an index resolved to `platform`'s
    /// manifest): the manifest's descriptor, the manifest and the config. `name` only names
    /// the image in errors.
    pub fn image_at(
        &self,
        mut descriptor: Descriptor,
        platform: &Platform,
        name: &str,
    ) -> Result<(Descriptor, Manifest, ImageConfig), StoreError> {
        // Indexes may nest; a few levels is plenty and bounds a malicious cycle.
        for _ in 0..8 {
            match self.read_manifest(&descriptor)? {
                AnyManifest::Image(manifest) => {
                    let config = self.read_config(&manifest.config.digest)?;
                    check_layer_count(&descriptor.digest, &manifest, &config)?;
                    return Ok((descriptor, manifest, config));
                }
                AnyManifest::Index(index) => {
                    descriptor = index.find_platform(platform).cloned().ok_or_else(|| {
                        StoreError::NoPlatform {
                            name: name.to_string(),
                            platform: platform.to_string(),
                        }
                    })?;
                }
            }
        }
        Err(StoreError::Corrupt {
            path: self.index_path(),
            reason: format!("image {name:?} nests indexes more than 8 deep"),
        })
    }

    /// The named images: `(name, descriptor)` in `index.json` order.
    pub fn list_images(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| ref_name(&d).map(|n| (n.to_string(), d.clone())))
            .collect())
    }

    /// Removes the name `name`; its blobs stay until [`Store::gc`]. Returns whether it existed.
    pub fn remove_image(&self, name: &str) -> Result<bool, StoreError> {
        self.update_index(|index| {
            let before = index.manifests.len();
            index.manifests.retain(|d| ref_name(d) != Some(name));
            Ok(index.manifests.len() != before)
        })
    }
}

/// The image name of an `index.json` entry.
pub(crate) fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str)
}

/// An image whose config lists more or fewer diffIDs than its manifest lists layers cannot have
/// its layers verified, and whatever is built on it is corrupt (`umoci`: "diffid mismatch").
fn check_layer_count(
    manifest_digest: &Digest,
    manifest: &Manifest,
    config: &ImageConfig,
) -> Result<(), StoreError> {
    let (layers, diff_ids) = (manifest.layers.len(), config.rootfs.diff_ids.len());
    if layers == diff_ids {
        return Ok(());
    }
    Err(StoreError::LayerCountMismatch {
        manifest: manifest_digest.clone(),
        config: manifest.config.digest.clone(),
        layers,
        diff_ids,
    })
}
