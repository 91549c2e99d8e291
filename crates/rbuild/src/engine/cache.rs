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
    Base, KeyEncoder, Plan, PlannedStage, Step, StepInput,
};
use rbuild_store::Store;
use std::collections::BTreeMap;

/// Every step's cache key, by (stage index, step position), computed before anything runs:
/// the stages in dependency order, each chaining from its base's key.
pub(super) fn plan_keys(
    plan: &Plan,
    context: &BuildContext,
    store: &Store,
    lazy: &LazyImages,
) -> BTreeMap<(usize, usize), Option<Digest>> {
    let mut keys = BTreeMap::new();
    let mut stage_keys: BTreeMap<usize, Option<Digest>> = BTreeMap::new();
    let mut pending: Vec<&PlannedStage> = plan.stages.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let (ready, rest): (Vec<&PlannedStage>, Vec<&PlannedStage>) = pending
            .into_iter()
            .partition(|s| s.depends_on.iter().all(|d| stage_keys.contains_key(d)));
        pending = rest;
        for stage in ready {
            let mut key = match &stage.base {
                Base::Scratch => Some(scratch_base_key(&stage.platform.to_string())),
                Base::Image { reference, .. } => {
                    find_image(store, Some(lazy), reference, &stage.platform)
                        .ok()
                        .map(|(d, _, _)| image_base_key(&d.digest))
                }
                Base::Stage { index } => stage_keys.get(index).cloned().flatten(),
            };
            for (position, step) in stage.steps.iter().enumerate() {
                // An ARG changes nothing by itself: the steps that see its value (its name in
                // their expansion, every RUN) carry it in their own digest. Chaining it would
                // make a build arg change the key of every later step.
                if !matches!(step.instruction, Instruction::Arg(_)) {
                    key = step_key(context, store, lazy, step, key.as_ref(), &stage_keys);
                }
                keys.insert((stage.index, position), key.clone());
            }
            stage_keys.insert(stage.index, key);
        }
        if pending.len() == before {
            // A cycle: the build reports it; these stages get no keys.
            break;
        }
    }
    keys
}

/// The cache key of `step`: chained from the stage's previous key with the step's digest (the
/// expanded instruction, the ARG/ENV values it observes) and the digests of its inputs. `None`
/// when an input cannot be known before running (a URL without `--checksum`). The encodings
/// are `rbuild-plan`'s, so `rbuild plan` shows the same keys wherever it can compute them.
fn step_key(
    context: &BuildContext,
    store: &Store,
    lazy: &LazyImages,
    step: &Step,
    parent: Option<&Digest>,
    stage_keys: &BTreeMap<usize, Option<Digest>>,
) -> Option<Digest> {
    let parent = parent?;
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
                    Ok(digest) => digest,
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
            StepInput::Url { url, checksum } => url_input_key(url, checksum.as_ref()?),
        };
        inputs.push(digest);
    }
    Some(chain_key(parent, &step.step_digest, &inputs))
}

impl Env<'_> {
    /// The key of a step's layer record: its cache key plus what shapes the blob.
    pub(super) fn record_key(&self, key: &Digest) -> Digest {
        let mut e = KeyEncoder::new("layer-record");
        e.field("key", key.as_str().as_bytes())
            .field("layer", self.record_salt.as_bytes());
        e.finish()
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
        let entry = match self.builder.store.get_cache_record(record) {
            Ok(Some(entry)) => entry,
            Ok(None) => return self.try_registry_cache(record, stage),
            Err(e) => {
                tracing::warn!(%record, error = %e, "unreadable cache record ignored");
                return self.try_registry_cache(record, stage);
            }
        };
        let (Some(descriptor), Some(diff_id), Some(created_by)) = (
            entry.descriptors.first(),
            entry
                .annotations
                .get("diff_id")
                .and_then(|d| Digest::parse(d).ok()),
            entry.annotations.get("created_by"),
        ) else {
            tracing::warn!(%record, "incomplete cache record ignored");
            return self.try_registry_cache(record, stage);
        };
        if !self.builder.store.has_blob(&descriptor.digest) {
            return self.try_registry_cache(record, stage);
        }
        let layer_op = entry
            .annotations
            .get("layer_op")
            .is_some_and(|v| v == "true");
        let digest = descriptor.digest.clone();
        self.record_layer(
            stage,
            StepLayer {
                descriptor: descriptor.clone(),
                diff_id,
                created_by: created_by.clone(),
                layer_op,
                created: entry.annotations.get("created").cloned(),
            },
        );
        Ok(Some(digest))
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
