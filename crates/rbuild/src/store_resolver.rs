//! Base images for the planner: from the local content store, else (when the builder has a
//! [`Remote`]) pulled into it first.

use crate::remote::Remote;
use rbuild_oci::{Platform, Reference};
use rbuild_plan::{BaseImage, BaseResolver, Resolution};
use rbuild_store::Store;

/// Resolves `FROM` and `COPY --from` images by their normalised reference among the store's
/// named images, pulling missing ones through `remote` when there is one.
pub struct StoreResolver<'a> {
    store: &'a Store,
    remote: Option<&'a Remote>,
}

impl<'a> StoreResolver<'a> {
    /// A resolver over `store` only.
    pub fn new(store: &'a Store) -> Self {
        StoreResolver {
            store,
            remote: None,
        }
    }

    /// A resolver that pulls what `store` lacks through `remote`.
    pub fn with_remote(store: &'a Store, remote: Option<&'a Remote>) -> Self {
        StoreResolver { store, remote }
    }
}

impl BaseResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &Reference, platform: &Platform) -> Resolution {
        let name = reference.to_string();
        let local = self.store.get_image_for_platform(&name, platform);
        let found = match (local, self.remote) {
            (Ok(found), _) => Ok(found),
            (Err(_), Some(remote)) => remote
                .pull_into_store(self.store, reference, platform)
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    self.store
                        .get_image_for_platform(&name, platform)
                        .map_err(|e| e.to_string())
                }),
            (Err(e), None) => Err(format!(
                "not in the local store ({e}) and no registry access configured"
            )),
        };
        match found {
            Ok((descriptor, _, config)) => Resolution::Found(Box::new(BaseImage {
                digest: Some(descriptor.digest),
                config,
            })),
            Err(reason) => Resolution::NotFound(reason),
        }
    }
}
