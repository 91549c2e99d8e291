//! Export to another OCI image layout directory.

use rbuild_oci::{AnyManifest, Descriptor, Digest, Index, Manifest, MediaType};
use std::path::Path;

use crate::{Store, StoreError};

/// Media type of a non-distributable gzip layer, the OCI form of Docker's foreign layer.
const OCI_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

impl Store {
    /// Copies images into the OCI layout at `dest` (created if absent; an existing layout keeps
    /// its other images). `images` pairs a name in this store with the
    /// `org.opencontainers.image.ref.name` it gets in `dest` (e.g. `latest`, so that
    /// `skopeo inspect oci:DEST:latest` finds it). Every blob is verified as it is copied; index
    /// children absent from this store are left out of the copy but stay listed.
    ///
    /// Docker v2 schema 2 manifests and manifest lists are rewritten with OCI media types, as
    /// `skopeo copy … oci:` does, because OCI tools (containers/image, umoci) ignore
    /// Docker-typed entries of a layout; their digests change, config and layer blobs do not.
    /// Returns the destination store.
    pub fn export_oci_layout(
        &self,
        dest: impl AsRef<Path>,
        images: &[(&str, &str)],
    ) -> Result<Store, StoreError> {
        let dest = Store::open(dest)?;
        for (name, ref_name) in images {
            let descriptor = self.resolve(name)?;
            let exported = self.export_manifest(&dest, &descriptor, 0)?;
            let bytes = dest.read_blob(&exported.digest)?;
            dest.put_image(ref_name, &bytes, exported.media_type.clone())?;
            tracing::debug!(name, ref_name, dest = %dest.root().display(), "exported image");
        }
        Ok(dest)
    }

    /// Copies the image `descriptor` points at into the OCI layout at `dest` (created if
    /// absent) under `ref_name`, byte for byte: its digest in the layout is its digest here
    /// (Docker media types are kept, so a layout of a Docker-format image has the digest
    /// that was pushed). Nothing is looked up by name. Returns the destination store.
    pub fn export_image_as_is(
        &self,
        dest: impl AsRef<Path>,
        descriptor: &Descriptor,
        ref_name: &str,
    ) -> Result<Store, StoreError> {
        let dest = Store::open(dest)?;
        if let AnyManifest::Image(m) = self.read_manifest(descriptor)? {
            for blob in std::iter::once(&m.config).chain(&m.layers) {
                if blob.urls.is_empty() || self.has_blob(&blob.digest) {
                    self.copy_blob(&dest, &blob.digest)?;
                }
            }
        } else {
            return Err(StoreError::Corrupt {
                path: self.blob_path(&descriptor.digest),
                reason: "not an image manifest".into(),
            });
        }
        self.copy_blob(&dest, &descriptor.digest)?;
        let bytes = dest.read_blob(&descriptor.digest)?;
        dest.put_image(ref_name, &bytes, descriptor.media_type.clone())?;
        tracing::debug!(ref_name, dest = %dest.root().display(), "exported image as is");
        Ok(dest)
    }

    /// Copies a manifest or index and everything below it into `dest`, converting Docker media
    /// types to OCI; returns its descriptor in `dest`.
    fn export_manifest(
        &self,
        dest: &Store,
        descriptor: &Descriptor,
        depth: usize,
    ) -> Result<Descriptor, StoreError> {
        if depth > 8 {
            return Err(StoreError::Corrupt {
                path: self.blob_path(&descriptor.digest),
                reason: "indexes nested more than 8 deep".into(),
            });
        }
        let converted = match self.read_manifest(descriptor)? {
            AnyManifest::Image(m) => {
                for blob in std::iter::once(&m.config).chain(&m.layers) {
                    if blob.urls.is_empty() || self.has_blob(&blob.digest) {
                        self.copy_blob(dest, &blob.digest)?;
                    }
                }
                if descriptor.media_type == MediaType::DockerManifest
                    || m.media_type == Some(MediaType::DockerManifest)
                {
                    let oci = Manifest {
                        media_type: Some(MediaType::OciManifest),
                        config: Descriptor {
                            media_type: oci_type(&m.config.media_type),
                            ..m.config.clone()
                        },
                        layers: m
                            .layers
                            .iter()
                            .map(|l| Descriptor {
                                media_type: oci_type(&l.media_type),
                                ..l.clone()
                            })
                            .collect(),
                        ..m
                    };
                    Some(dest.put_blob(&oci.to_canonical_json(), MediaType::OciManifest)?)
                } else {
                    None
                }
            }
            AnyManifest::Index(index) => {
                let mut children = Vec::with_capacity(index.manifests.len());
                let mut changed = descriptor.media_type == MediaType::DockerManifestList
                    || index.media_type == Some(MediaType::DockerManifestList);
                for child in &index.manifests {
                    let is_document = child.media_type.is_manifest() || child.media_type.is_index();
                    if is_document && self.has_blob(&child.digest) {
                        let exported = self.export_manifest(dest, child, depth + 1)?;
                        changed |= exported.digest != child.digest;
                        children.push(Descriptor {
                            media_type: exported.media_type,
                            digest: exported.digest,
                            size: exported.size,
                            ..child.clone()
                        });
                    } else {
                        children.push(child.clone());
                    }
                }
                if changed {
                    let oci = Index {
                        media_type: Some(MediaType::OciIndex),
                        manifests: children,
                        ..index
                    };
                    Some(dest.put_blob(&oci.to_canonical_json(), MediaType::OciIndex)?)
                } else {
                    None
                }
            }
        };
        match converted {
            Some(new) => Ok(Descriptor {
                media_type: new.media_type,
                digest: new.digest,
                size: new.size,
                ..descriptor.clone()
            }),
            None => {
                self.copy_blob(dest, &descriptor.digest)?;
                Ok(descriptor.clone())
            }
        }
    }

    /// Copies one blob into `dest`, verified, unless `dest` has it.
    pub fn copy_blob(&self, dest: &Store, digest: &Digest) -> Result<(), StoreError> {
        if dest.has_blob(digest) {
            return Ok(());
        }
        let size = self.blob_size(digest)?;
        let mut src = self.open_blob(digest)?;
        dest.write_blob(&mut src, Some(digest), Some(size))?;
        Ok(())
    }
}

/// The OCI media type for a Docker one (others unchanged).
fn oci_type(media_type: &MediaType) -> MediaType {
    match media_type {
        MediaType::DockerConfig => MediaType::OciConfig,
        MediaType::DockerLayerGzip => MediaType::OciLayerGzip,
        MediaType::DockerForeignLayerGzip => MediaType::Other(OCI_NONDISTRIBUTABLE_GZIP.into()),
        MediaType::DockerManifest => MediaType::OciManifest,
        MediaType::DockerManifestList => MediaType::OciIndex,
        other => other.clone(),
    }
}
