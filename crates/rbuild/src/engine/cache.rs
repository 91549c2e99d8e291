//! The step cache: keys chained from the parent's, reuse of recorded layers.

use super::layers::StepLayer;
use super::{Env, StageResult};
use crate::context::BuildContext;
use crate::error::BuildError;
use crate::store_resolver::{find_image, LazyImages};
use rbuild_dockerfile::Instruction;
use rbuild_oci::Digest;
use rbuild_plan::{
    chain_key, image_base_key, image_input_key, scratch_base_key, stage_input_key, url_input_key,
    url_validator_key, value_digest, Base, KeyEncoder, KeyInputs, ParentKind, Plan, PlannedStage,
    Step, StepInput, StepInputs,
};
use rbuild_store::{CacheRecord, Store};
use std::collections::BTreeMap;

/// The keys of a build's steps, computed before anything runs.
#[derive(Default)]
pub(super) struct PlannedKeys {
    /// Every step's cache key, by (stage index, step position).
    pub keys: BTreeMap<(usize, usize), Option<Digest>>,
    /// What each keyed layer step's key was made of (for explaining a miss).
    pub inputs: BTreeMap<(usize, usize), KeyInputs>,
}

/// Where the digests of the steps' inputs come from.
pub(super) struct KeySources<'a> {
    pub context: &'a BuildContext,
    pub store: &'a Store,
    pub lazy: &'a LazyImages,
    /// For the `ETag`/`Last-Modified` of an `ADD` URL without `--checksum`.
    pub remote: Option<&'a crate::remote::Remote>,
}

/// Every step's cache key, by (stage index, step position), computed before anything runs:
/// the stages in dependency order, each chaining from its base's key.
pub(super) fn plan_keys(plan: &Plan, sources: &KeySources<'_>) -> PlannedKeys {
    let KeySources { store, lazy, .. } = sources;
    let mut planned = PlannedKeys::default();
    let mut stage_keys: BTreeMap<usize, Option<Digest>> = BTreeMap::new();
    let mut pending: Vec<&PlannedStage> = plan.stages.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let (ready, rest): (Vec<&PlannedStage>, Vec<&PlannedStage>) = pending
            .into_iter()
            .partition(|s| s.depends_on.iter().all(|d| stage_keys.contains_key(d)));
        pending = rest;
        for stage in ready {
            let (mut key, mut parent_kind) = match &stage.base {
                Base::Scratch => (
                    Some(scratch_base_key(&stage.platform.to_string())),
                    ParentKind::Scratch,
                ),
                Base::Image { reference, .. } => (
                    find_image(store, Some(lazy), reference, &stage.platform)
                        .ok()
                        .map(|(d, _, _)| image_base_key(&d.digest)),
                    ParentKind::Image,
                ),
                Base::Stage { index } => (
                    stage_keys.get(index).cloned().flatten(),
                    ParentKind::Stage { index: *index },
                ),
            };
            // The chain since the last layer step, for the description of the next one.
            let mut chain_parent = key.clone();
            let mut chain: Vec<StepInputs> = Vec::new();
            for (position, step) in stage.steps.iter().enumerate() {
                // An ARG changes nothing by itself: the steps that see its value (its name in
                // their expansion, every RUN) carry it in their own digest. Chaining it would
                // make a build arg change the key of every later step.
                if !matches!(step.instruction, Instruction::Arg(_)) {
                    let (next, described) = step_key(sources, step, key.as_ref(), &stage_keys);
                    key = next;
                    chain.push(described);
                    if step.layer {
                        if let (Some(parent), Some(_)) = (&chain_parent, &key) {
                            let inputs = KeyInputs {
                                parent: parent.clone(),
                                parent_kind: parent_kind.clone(),
                                steps: std::mem::take(&mut chain),
                            };
                            planned.inputs.insert((stage.index, position), inputs);
                        }
                        chain.clear();
                        chain_parent = key.clone();
                        parent_kind = ParentKind::Step {
                            line: step.span.line,
                        };
                    }
                }
                planned.keys.insert((stage.index, position), key.clone());
            }
            stage_keys.insert(stage.index, key);
        }
        if pending.len() == before {
            // A cycle: the build reports it; these stages get no keys.
            break;
        }
    }
    planned
}

/// The cache key of `step`: chained from the stage's previous key with the step's digest (the
/// expanded instruction, the ARG/ENV values it observes) and the digests of its inputs. `None`
/// when an input cannot be known before running (a URL without `--checksum`). The encodings
/// are `rbuild-plan`'s, so `rbuild plan` shows the same keys wherever it can compute them.
/// Also returns what the key was made of (names and digests only).
fn step_key(
    sources: &KeySources<'_>,
    step: &Step,
    parent: Option<&Digest>,
    stage_keys: &BTreeMap<usize, Option<Digest>>,
) -> (Option<Digest>, StepInputs) {
    let mut described = StepInputs {
        keyword: step.instruction.keyword().to_string(),
        line: step.span.line,
        step: step.step_digest.clone(),
        values: step
            .observed
            .iter()
            .map(|(name, value)| (name.clone(), value.as_deref().map(value_digest)))
            .collect(),
        inputs: Vec::new(),
        files: BTreeMap::new(),
    };
    let key = input_digests(sources, step, stage_keys, &mut described)
        .and_then(|inputs| Some(chain_key(parent?, &step.step_digest, &inputs)));
    (key, described)
}

/// The digests of a step's inputs, in order (also noted in `described`, with the context
/// files one by one); `None` when one cannot be known before running.
fn input_digests(
    sources: &KeySources<'_>,
    step: &Step,
    stage_keys: &BTreeMap<usize, Option<Digest>>,
    described: &mut StepInputs,
) -> Option<Vec<Digest>> {
    let KeySources {
        context,
        store,
        lazy,
        remote,
    } = sources;
    let mut inputs = Vec::new();
    for input in &step.inputs {
        let digest = match input {
            StepInput::Context { paths } => {
                // What `--exclude` leaves out of the copy does not count either.
                let excludes = match &step.instruction {
                    rbuild_dockerfile::Instruction::Copy(c) => c.excludes.as_slice(),
                    rbuild_dockerfile::Instruction::Add(a) => a.excludes.as_slice(),
                    _ => &[],
                };
                match context.sources_digest(paths, excludes) {
                    Ok(sources) => {
                        described.files.extend(sources.files);
                        sources.digest
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "no cache key: the sources cannot be read");
                        return None;
                    }
                }
            }
            StepInput::Stage { index, paths } => {
                stage_input_key(stage_keys.get(index)?.as_ref()?, paths)
            }
            StepInput::Image {
                reference, paths, ..
            } => {
                // The named descriptor (an index stays an index), else the lazily resolved one.
                let descriptor = store
                    .resolve(reference)
                    .ok()
                    .or_else(|| lazy.lock().ok()?.get(reference.as_str()).cloned())?;
                image_input_key(&descriptor.digest, paths)
            }
            StepInput::Url { url, checksum } => match checksum {
                Some(checksum) => url_input_key(url, checksum),
                // No checksum: the server's name for the file's version, if it gives one.
                None => {
                    let remote = (*remote)?;
                    let validator = remote.block_on(remote.client().url_validator(url));
                    match validator {
                        Ok(Some(validator)) => url_validator_key(url, &validator),
                        Ok(None) => return None,
                        Err(e) => {
                            tracing::debug!(error = %e, "no cache key: the URL's version is unknown");
                            return None;
                        }
                    }
                }
            },
        };
        described.inputs.push(digest.clone());
        inputs.push(digest);
    }
    Some(inputs)
}

/// The key of a step's layer record: its cache key plus `salt`, what shapes the blob
/// (compression, level, epoch, format).
pub(super) fn record_key(salt: &str, key: &Digest) -> Digest {
    let mut e = KeyEncoder::new("layer-record");
    e.field("key", key.as_str().as_bytes())
        .field("layer", salt.as_bytes());
    e.finish()
}

/// The layer a step's record names (its descriptor, diffID, history text and time); `None`
/// when the record is incomplete.
pub(super) fn recorded_layer(entry: &CacheRecord) -> Option<StepLayer> {
    Some(StepLayer {
        descriptor: entry.descriptors.first()?.clone(),
        diff_id: Digest::parse(entry.annotations.get("diff_id")?).ok()?,
        created_by: entry.annotations.get("created_by")?.clone(),
        layer_op: entry
            .annotations
            .get("layer_op")
            .is_some_and(|v| v == "true"),
        created: entry.annotations.get("created").cloned(),
    })
}

impl Env<'_> {
    /// The key of a step's layer record: its cache key plus what shapes the blob.
    pub(super) fn record_key(&self, key: &Digest) -> Digest {
        record_key(&self.record_salt, key)
    }

    /// Reuses the layer recorded under `record`, if the store has it.
    pub(super) fn try_cache(
        &self,
        record: Option<&Digest>,
        stage: &mut StageResult,
    ) -> Result<Option<Digest>, BuildError> {
        let Some(record) = record.filter(|_| !self.no_cache) else {
            return Ok(None);
        };
        let hit = self.try_recorded(record, stage)?;
        if hit.is_none() {
            self.explain_miss(record);
        }
        Ok(hit)
    }

    /// Reuses the layer recorded under `record` locally, else in the registry cache.
    fn try_recorded(
        &self,
        record: &Digest,
        stage: &mut StageResult,
    ) -> Result<Option<Digest>, BuildError> {
        let Some(entry) = self.local_record(record) else {
            return self.try_registry_cache(record, stage);
        };
        let Some(layer) = recorded_layer(&entry) else {
            tracing::warn!(%record, "incomplete cache record ignored");
            return self.try_registry_cache(record, stage);
        };
        // Claimed under the store lock: a prune running now keeps it for this build.
        if !self
            .lease
            .claim(std::slice::from_ref(&layer.descriptor.digest))?
        {
            return self.try_registry_cache(record, stage);
        }
        let digest = layer.descriptor.digest.clone();
        self.record_layer(stage, layer);
        Ok(Some(digest))
    }

    /// The store's record for `record`, unless it is older than `--cache-ttl`.
    pub(super) fn local_record(&self, record: &Digest) -> Option<CacheRecord> {
        let entry = match self.builder.store.get_cache_record(record) {
            Ok(entry) => entry?,
            Err(e) => {
                tracing::warn!(%record, error = %e, "unreadable cache record ignored");
                return None;
            }
        };
        if let Some(ttl) = self.cache_ttl {
            let recorded = entry.annotations.get("recorded");
            let age = recorded
                .and_then(|t| t.parse::<i64>().ok())
                .map(|t| crate::timestamp::BuildTime::now().seconds.saturating_sub(t));
            // A record without the time it was written is older than any TTL.
            if age.is_none_or(|age| age > ttl.as_secs() as i64) {
                tracing::debug!(%record, "local cache record older than --cache-ttl");
                return None;
            }
        }
        Some(entry)
    }

    /// Reuses the layer the registry cache holds for `record`, without downloading it (a
    /// later step that needs the files fetches it).
    fn try_registry_cache(
        &self,
        record: &Digest,
        stage: &mut StageResult,
    ) -> Result<Option<Digest>, BuildError> {
        let Some(cache) = &self.registry_cache else {
            return Ok(None);
        };
        let Some(hit) = cache.lookup(record) else {
            return Ok(None);
        };
        self.add_blob_source(&hit.descriptor.digest, cache.repo());
        let digest = hit.descriptor.digest.clone();
        self.record_layer(stage, hit);
        Ok(Some(digest))
    }
}
