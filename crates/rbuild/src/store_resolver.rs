//! Base images for the planner: from the local content store, else (when the builder has a
//! [`Remote`]) pulled into it first.

use crate::error::BuildError;
use crate::remote::Remote;
use rbuild_oci::{Descriptor, ImageConfig, Manifest, Platform, Reference};
use rbuild_plan::{BaseImage, BaseResolver, Resolution};
use rbuild_store::Store;
use rbuild_store::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;

/// Resolves `FROM` and `COPY --from` images by their normalised reference among the store's
/// named images, pulling missing ones through `remote` when there is one.
pub struct StoreResolver<'a> {
    store: &'a Store,
    remote: Option<&'a Remote>,
    lazy: Option<&'a LazyImages>,
}

/// Images resolved without their layers (the registry cache's lazy mode), by normalised
/// reference: their manifest and config are in the store, unnamed.
pub(crate) type LazyImages = Mutex<HashMap<String, Descriptor>>;

/// The image `name` for `platform`: a named image of the store, else one resolved lazily.
pub(crate) fn find_image(
    store: &Store,
    lazy: Option<&LazyImages>,
    name: &str,
    platform: &Platform,
) -> Result<(Descriptor, Manifest, ImageConfig), StoreError> {
    let named = store.get_image_for_platform(name, platform);
    let Some(descriptor) = named.is_err().then_some(()).and(lazy).and_then(|l| {
        l.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }) else {
        return named;
    };
    match store.read_image(&descriptor)? {
        Some((manifest, config)) => Ok((descriptor, manifest, config)),
        None => named,
    }
}

impl<'a> StoreResolver<'a> {
    /// A resolver over `store` only.
    pub fn new(store: &'a Store) -> Self {
        StoreResolver {
            store,
            remote: None,
            lazy: None,
        }
    }

    /// A resolver that pulls what `store` lacks through `remote`.
    pub fn with_remote(store: &'a Store, remote: Option<&'a Remote>) -> Self {
        StoreResolver {
            store,
            remote,
            lazy: None,
        }
    }

    /// Pulls only manifests and configs, noting them in `lazy`; layers are fetched when
    /// their bytes are needed.
    pub(crate) fn lazy_layers(mut self, lazy: Option<&'a LazyImages>) -> Self {
        self.lazy = lazy;
        self
    }
}

impl BaseResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &Reference, platform: &Platform) -> Resolution {
        let name = reference.to_string();
        // A name in the store holds the image of the platform it was pulled for: one of
        // another platform is a miss (pulled again for this one), not a silent substitute.
        let local = self
            .store
            .get_image_for_platform(&name, platform)
            .and_then(|found| {
                let config = &found.2;
                let its =
                    Platform::new(&config.os, &config.architecture, config.variant.as_deref());
                if config.architecture.is_empty() || its.matches(platform) {
                    Ok(found)
                } else {
                    Err(rbuild_store::StoreError::NoPlatform {
                        name: name.clone(),
                        platform: platform.to_string(),
                    })
                }
            });
        let found = match (local, self.remote) {
            (Ok(found), _) => Ok(found),
            (Err(_), Some(remote)) => match self.lazy {
                Some(lazy) => remote
                    .pull_config_into_store(self.store, reference, platform)
                    .map(|descriptor| {
                        lazy.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(name.clone(), descriptor);
                    }),
                None => remote
                    .pull_into_store(self.store, reference, platform)
                    .map(|_| ()),
            }
            .map_err(|e| e.to_string())
            .and_then(|()| {
                find_image(self.store, self.lazy, &name, platform).map_err(|e| e.to_string())
            }),
            (Err(e), None) => Err(format!(
                "not in the local store ({e}) and no registry access configured"
            )),
        };
        let checked = found.and_then(|(descriptor, manifest, config)| {
            check_layer_media_types(self.store, &manifest).map_err(|e| match e {
                // Its message names the layer already: no "layer: " prefix.
                BuildError::Layer(e) => e.to_string(),
                other => other.to_string(),
            })?;
            Ok((descriptor, config))
        });
        match checked {
            Ok((descriptor, config)) => Resolution::Found(Box::new(BaseImage {
                digest: Some(descriptor.digest),
                config,
            })),
            Err(reason) => Resolution::NotFound(reason),
        }
    }
}

/// Refuses an image with a layer whose media type is not a layer type or, for the layers the
/// store holds, does not match the layer's first bytes: a base image that is never unpacked
/// would otherwise pass such layers into the output image. (Its diffIDs are checked when it is
/// unpacked.)
fn check_layer_media_types(store: &Store, manifest: &Manifest) -> Result<(), BuildError> {
    for layer in &manifest.layers {
        if store.has_blob(&layer.digest) {
            let blob = store.open_blob(&layer.digest)?;
            rbuild_layer::check_layer_media_type(blob, &layer.digest, &layer.media_type)?;
        } else if rbuild_layer::layer_compression(&layer.media_type).is_none() {
            return Err(rbuild_layer::LayerError::UnsupportedMediaType {
                layer: layer.digest.clone(),
                media_type: layer.media_type.as_str().to_owned(),
            }
            .into());
        }
    }
    Ok(())
}
