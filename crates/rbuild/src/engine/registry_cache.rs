//! The registry layer cache (`--cache`, `--cache-repo`): one tag per step record in the cache
//! repository, as Kaniko does; the tag is the record key's hex. Each entry is a small OCI image
//! manifest every Distribution registry accepts: its one layer is the step's layer, its config
//! a minimal image config with that layer's diffID and history entry, and its annotations say
//! the same (so a lookup needs the manifest only) plus when it was written (for `--cache-ttl`).
//!
//! All records of a build are probed at once before anything runs; entries of built layers
//! are pushed in the background and joined before the build returns. Nothing here fails a
//! build: a registry error or a bad entry is a warning and a miss.

use super::layers::StepLayer;
use crate::error::BuildError;
use crate::remote::Remote;
use crate::timestamp::{parse_rfc3339, BuildTime};
use futures_util::stream::{self, StreamExt};
use rbuild_oci::{Descriptor, Digest, History, ImageConfig, Manifest, MediaType, Reference};
use rbuild_plan::KeyInputs;
use rbuild_store::Store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

const DIFF_ID: &str = "dev.rbuild.cache.diff-id";
const CREATED_BY: &str = "dev.rbuild.cache.created-by";
const LAYER_OP: &str = "dev.rbuild.cache.layer-op";
const CREATED: &str = "org.opencontainers.image.created";
/// The history time the layer got when it was built (restored on a hit, so that an unchanged
/// rebuild gives the same image).
const LAYER_CREATED: &str = "dev.rbuild.cache.layer-created";
/// The description of a step's last key ([`KeyInputs`]), on a step identity entry.
const KEY_INPUTS: &str = "dev.rbuild.cache.key-inputs";

/// The OCI empty descriptor's media type (the config of a step identity entry).
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The artifact type of a step identity entry.
const INPUTS_ARTIFACT: &str = "application/vnd.rbuild.key-inputs.v1+json";

/// How many manifests are probed at once.
const PROBE_CONCURRENCY: usize = 16;

/// Which layers go to (and come from) the registry cache.
#[derive(Debug, Clone, Copy)]
pub(super) struct CacheKinds {
    pub run_layers: bool,
    pub copy_layers: bool,
    /// `--no-push-cache` turns this off: entries are read, never written.
    pub push: bool,
}

impl CacheKinds {
    /// Whether a layer made by `keyword` is cached in the registry.
    pub fn wants(&self, keyword: &str) -> bool {
        match keyword {
            "RUN" => self.run_layers,
            _ => self.copy_layers,
        }
    }
}

/// The registry cache of one build.
pub(super) struct RegistryCache {
    remote: Remote,
    repo: Reference,
    ttl: Option<Duration>,
    pub kinds: CacheKinds,
    hits: Mutex<HashMap<Digest, StepLayer>>,
    /// Step identity entries found, by identity.
    identities: Mutex<HashMap<Digest, KeyInputs>>,
    pushes: Mutex<Vec<JoinHandle<Result<(), BuildError>>>>,
    warnings: Mutex<Vec<String>>,
}

impl RegistryCache {
    pub fn new(
        remote: Remote,
        repo: Reference,
        ttl: Option<Duration>,
        kinds: CacheKinds,
    ) -> RegistryCache {
        RegistryCache {
            remote,
            repo,
            ttl,
            kinds,
            hits: Mutex::default(),
            identities: Mutex::default(),
            pushes: Mutex::default(),
            warnings: Mutex::default(),
        }
    }

    /// The cache repository.
    pub fn repo(&self) -> &Reference {
        &self.repo
    }

    fn entry_ref(&self, record: &Digest) -> Option<Reference> {
        self.repo.with_tag(record.encoded()).ok()
    }

    fn identity_ref(&self, identity: &Digest) -> Option<Reference> {
        self.repo
            .with_tag(&format!("step-{}", identity.encoded()))
            .ok()
    }

    fn warn(&self, message: String) {
        tracing::warn!("{message}");
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    /// Looks every record up at once (a GET of its tag's manifest); a miss or an error on one
    /// does not stop the others. Returns how many hit.
    pub fn probe(&self, records: &[Digest]) -> usize {
        let client = self.remote.client();
        let now = BuildTime::now().seconds;
        let lookups = stream::iter(records.iter().filter_map(|r| Some((r, self.entry_ref(r)?))))
            .map(|(record, reference)| async move {
                (
                    record,
                    reference.clone(),
                    client.fetch_manifest(&reference).await,
                )
            })
            .buffer_unordered(PROBE_CONCURRENCY)
            .collect::<Vec<_>>();
        let answers = self.remote.block_on(lookups);
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        for (record, reference, answer) in answers {
            match answer {
                Ok(fetched) => match parse_entry(&fetched.bytes, self.ttl, now) {
                    Ok(Some(layer)) => {
                        client.note_blob_holder(
                            self.repo.registry(),
                            self.repo.repository(),
                            &layer.descriptor.digest,
                        );
                        hits.insert(record.clone(), layer);
                    }
                    Ok(None) => tracing::debug!(%reference, "registry cache entry expired"),
                    Err(why) => {
                        self.warn(format!("registry cache entry {reference} ignored: {why}"))
                    }
                },
                Err(e) if e.status() == Some(404) => {}
                Err(e) => self.warn(format!("registry cache lookup of {reference} failed: {e}")),
            }
        }
        tracing::info!(probed = records.len(), hits = hits.len(), repo = %self.repo, "registry cache probed");
        hits.len()
    }

    /// The entry found for `record` by [`RegistryCache::probe`].
    pub fn lookup(&self, record: &Digest) -> Option<StepLayer> {
        self.hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(record)
            .cloned()
    }

    /// Pushes an entry for `record` in the background: its layer (from `store`), a config,
    /// the manifest under the record's tag.
    pub fn push(&self, store: &Store, record: &Digest, layer: StepLayer, config: &ImageConfig) {
        if !self.kinds.push {
            return;
        }
        let Some(reference) = self.entry_ref(record) else {
            return;
        };
        let mut config = ImageConfig {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            variant: config.variant.clone(),
            ..ImageConfig::default()
        };
        config.rootfs.diff_ids = vec![layer.diff_id.clone()];
        config.history = vec![History {
            created: layer.created.clone(),
            created_by: Some(layer.created_by.clone()),
            ..History::default()
        }];
        let store = store.clone();
        let remote = self.remote.clone();
        let handle = std::thread::spawn(move || -> Result<(), BuildError> {
            let config_descriptor =
                store.put_blob(&config.to_canonical_json(), MediaType::OciConfig)?;
            let manifest = entry_manifest(&layer, config_descriptor.clone());
            let blobs = [config_descriptor, layer.descriptor.clone()];
            remote.push_blobs_from_store(&store, &reference, &blobs)?;
            remote
                .block_on(remote.client().push_manifest(
                    &reference,
                    &manifest.to_canonical_json(),
                    &MediaType::OciManifest,
                ))
                .map_err(BuildError::registry(None))?;
            tracing::debug!(%reference, "registry cache entry pushed");
            Ok(())
        });
        self.pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Fetches the step identity entries of `identities` at once (the steps whose record
    /// missed), for explaining the misses. Errors are debug notes: an explanation is a bonus.
    pub fn probe_identities(&self, identities: &[Digest]) {
        let client = self.remote.client();
        let lookups =
            stream::iter(
                identities
                    .iter()
                    .filter_map(|i| Some((i, self.identity_ref(i)?))),
            )
            .map(|(identity, reference)| async move {
                (identity, client.fetch_manifest(&reference).await)
            })
            .buffer_unordered(PROBE_CONCURRENCY)
            .collect::<Vec<_>>();
        let answers = self.remote.block_on(lookups);
        let mut found = self.identities.lock().unwrap_or_else(|e| e.into_inner());
        for (identity, answer) in answers {
            let inputs = answer.ok().and_then(|fetched| {
                let manifest = Manifest::from_json(&fetched.bytes).ok()?;
                KeyInputs::from_json(manifest.annotations.get(KEY_INPUTS)?)
            });
            if let Some(inputs) = inputs {
                found.insert(identity.clone(), inputs);
            }
        }
    }

    /// The description found for the step `identity` by [`RegistryCache::probe_identities`].
    pub fn earlier_inputs(&self, identity: &Digest) -> Option<KeyInputs> {
        self.identities
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(identity)
            .cloned()
    }

    /// Pushes the step identity entry of `identity` in the background: a manifest without
    /// layers whose annotation holds the description (names and digests only).
    pub fn push_inputs(&self, store: &Store, identity: &Digest, inputs: &KeyInputs) {
        if !self.kinds.push {
            return;
        }
        let Some(reference) = self.identity_ref(identity) else {
            return;
        };
        let json = inputs.to_json();
        let store = store.clone();
        let remote = self.remote.clone();
        let handle = std::thread::spawn(move || -> Result<(), BuildError> {
            // Only an explanation for later builds is lost: no warning.
            let pushed = push_identity_entry(&store, &remote, &reference, json);
            if let Err(e) = pushed {
                tracing::debug!(%reference, error = %e, "step identity entry not pushed");
            }
            Ok(())
        });
        self.pushes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Waits for every background push; returns the warnings of the whole build's cache use.
    pub fn finish(&self) -> Vec<String> {
        let pushes = std::mem::take(&mut *self.pushes.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in pushes {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.warn(format!(
                    "registry cache entry not pushed to {}: {e}",
                    self.repo
                )),
                Err(_) => self.warn("a registry cache push panicked".into()),
            }
        }
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Pushes a step identity entry: a manifest without layers, its config the OCI empty blob,
/// whose annotation holds the description `json`.
fn push_identity_entry(
    store: &Store,
    remote: &Remote,
    reference: &Reference,
    json: String,
) -> Result<(), BuildError> {
    let config = store.put_blob(b"{}", MediaType::Other(EMPTY_CONFIG.into()))?;
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(KEY_INPUTS.to_string(), json);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: Some(INPUTS_ARTIFACT.into()),
        config: config.clone(),
        layers: vec![],
        subject: None,
        annotations,
    };
    remote.push_blobs_from_store(store, reference, &[config])?;
    remote
        .block_on(remote.client().push_manifest(
            reference,
            &manifest.to_canonical_json(),
            &MediaType::OciManifest,
        ))
        .map_err(BuildError::registry(None))?;
    Ok(())
}

/// The manifest of a cache entry.
fn entry_manifest(layer: &StepLayer, config: Descriptor) -> Manifest {
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(DIFF_ID.to_string(), layer.diff_id.to_string());
    annotations.insert(CREATED_BY.to_string(), layer.created_by.clone());
    annotations.insert(LAYER_OP.to_string(), layer.layer_op.to_string());
    annotations.insert(CREATED.to_string(), BuildTime::now().rfc3339());
    if let Some(created) = &layer.created {
        annotations.insert(LAYER_CREATED.to_string(), created.clone());
    }
    Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config,
        layers: vec![layer.descriptor.clone()],
        subject: None,
        annotations,
    }
}

/// Reads a cache entry: `Ok(None)` when it is older than `ttl`, `Err` when it is not an entry
/// this cache wrote.
/// Why a registry cache entry is not one this cache wrote.
#[derive(Debug, thiserror::Error)]
enum EntryError {
    /// Not an image manifest at all.
    #[error("not an image manifest: {0}")]
    NotManifest(#[source] rbuild_oci::OciError),
    /// An entry holds exactly one layer.
    #[error("{0} layers instead of 1")]
    LayerCount(usize),
    /// An annotation the entry needs is missing.
    #[error("no {0} annotation")]
    Missing(&'static str),
    /// An annotation does not hold what it should.
    #[error("bad {0}")]
    Bad(&'static str),
    /// The diffID annotation is not a digest.
    #[error("bad {DIFF_ID}: {0}")]
    BadDiffId(#[source] rbuild_oci::OciError),
    /// The layer's media type is not a layer's.
    #[error("layer media type {0} is not a layer's")]
    NotLayer(MediaType),
}

fn parse_entry(
    bytes: &[u8],
    ttl: Option<Duration>,
    now: i64,
) -> Result<Option<StepLayer>, EntryError> {
    let manifest = Manifest::from_json(bytes).map_err(EntryError::NotManifest)?;
    let [descriptor] = manifest.layers.as_slice() else {
        return Err(EntryError::LayerCount(manifest.layers.len()));
    };
    let get = |name: &'static str| {
        manifest
            .annotations
            .get(name)
            .ok_or(EntryError::Missing(name))
    };
    let diff_id = Digest::parse(get(DIFF_ID)?).map_err(EntryError::BadDiffId)?;
    let created_by = get(CREATED_BY)?.clone();
    let layer_op = match get(LAYER_OP)?.as_str() {
        "true" => true,
        "false" => false,
        _ => return Err(EntryError::Bad(LAYER_OP)),
    };
    let created = parse_rfc3339(get(CREATED)?).ok_or(EntryError::Bad(CREATED))?;
    // Entries of older rbuild versions lack it: the layer then gets this build's time.
    let layer_created = match manifest.annotations.get(LAYER_CREATED) {
        Some(t) if parse_rfc3339(t).is_some() => Some(t.clone()),
        Some(_) => return Err(EntryError::Bad(LAYER_CREATED)),
        None => None,
    };
    if !descriptor.media_type.is_layer() {
        return Err(EntryError::NotLayer(descriptor.media_type.clone()));
    }
    if let Some(ttl) = ttl {
        if now.saturating_sub(created) > ttl.as_secs() as i64 {
            return Ok(None);
        }
    }
    Ok(Some(StepLayer {
        descriptor: descriptor.clone(),
        diff_id,
        created_by,
        layer_op,
        created: layer_created,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> StepLayer {
        StepLayer {
            descriptor: Descriptor::new(MediaType::OciLayerGzip, Digest::sha256_of(b"l"), 1),
            diff_id: Digest::sha256_of(b"d"),
            created_by: "RUN echo hi # buildkit".into(),
            layer_op: true,
            created: Some("2026-01-02T03:04:05.5Z".into()),
        }
    }

    #[test]
    fn entries_round_trip_and_expire() {
        let config = Descriptor::new(MediaType::OciConfig, Digest::sha256_of(b"{}"), 2);
        let bytes = entry_manifest(&layer(), config).to_canonical_json();
        let now = BuildTime::now().seconds;
        assert_eq!(parse_entry(&bytes, None, now).unwrap(), Some(layer()));
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_entry(&bytes, Some(day), now).unwrap(), Some(layer()));
        assert_eq!(
            parse_entry(&bytes, Some(day), now + 2 * 86_400).unwrap(),
            None
        );
    }

    #[test]
    fn foreign_manifests_are_refused() {
        let config = Descriptor::new(MediaType::OciConfig, Digest::sha256_of(b"{}"), 2);
        let mut manifest = entry_manifest(&layer(), config);
        manifest.annotations.remove(DIFF_ID);
        let err = parse_entry(&manifest.to_canonical_json(), None, 0).unwrap_err();
        assert!(err.to_string().contains(DIFF_ID), "{err}");
        manifest.layers.clear();
        assert!(parse_entry(&manifest.to_canonical_json(), None, 0).is_err());
        assert!(parse_entry(b"{\"not\":1}", None, 0).is_err());
    }
}
