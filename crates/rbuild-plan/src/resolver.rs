//! Base images are looked up through [`BaseResolver`], so planning does no I/O of its own: the
//! engine passes a resolver backed by the store and the registry, tests and `rbuild plan` pass
//! fixed ones.

use rbuild_oci::{Digest, ImageConfig, Platform, Reference};
use std::collections::BTreeMap;

/// What a resolver knows about a base image.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImage {
    /// The manifest digest the reference resolved to, when known.
    pub digest: Option<Digest>,
    /// The image's config (its `Env`, `OnBuild`, `Shell`, `WorkingDir`, `User`...).
    pub config: ImageConfig,
}

/// The answer to "what is this image?".
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The image exists; here is what it holds.
    Found(Box<BaseImage>),
    /// The image certainly does not exist (the registry said so, or a fixed table lacks it).
    NotFound(String),
    /// The resolver cannot tell (offline planning): the plan keeps the reference unresolved.
    Unknown,
}

/// Looks up base images and `COPY --from` images for the planner.
pub trait BaseResolver {
    /// Resolves `reference` for `platform`.
    fn resolve(&self, reference: &Reference, platform: &Platform) -> Resolution;
}

/// A resolver that knows nothing: every image stays unresolved. `rbuild plan` uses it, since
/// planning must not touch the network; ONBUILD triggers and base `ENV` are then unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineResolver;

impl BaseResolver for OfflineResolver {
    fn resolve(&self, _reference: &Reference, _platform: &Platform) -> Resolution {
        Resolution::Unknown
    }
}

/// A fixed table of images by normalised reference (`docker.io/library/busybox:latest`);
/// anything else is [`Resolution::NotFound`]. For tests and for embedding callers that already
/// hold the configs.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    images: BTreeMap<String, BaseImage>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `image` under `reference` (normalised the way [`Reference::parse`] does).
    ///
    /// # Panics
    /// When `reference` is not a valid image reference (a programming error in the caller).
    pub fn with(mut self, reference: &str, image: BaseImage) -> Self {
        let key = Reference::parse(reference)
            .unwrap_or_else(|e| panic!("StaticResolver::with({reference:?}): {e}"))
            .to_string();
        self.images.insert(key, image);
        self
    }
}

impl BaseResolver for StaticResolver {
    fn resolve(&self, reference: &Reference, _platform: &Platform) -> Resolution {
        match self.images.get(&reference.to_string()) {
            Some(image) => Resolution::Found(Box::new(image.clone())),
            None => Resolution::NotFound("image not found".into()),
        }
    }
}
