//! The step cache: keys chained from the parent's, reuse of recorded layers.

use super::{Env, StageResult};
use crate::copy::SourceRoot;
use crate::error::BuildError;
use rbuild_oci::Digest;
use rbuild_plan::{chain_key, KeyEncoder, Step, StepInput};
use std::collections::BTreeMap;

impl Env<'_> {
    /// The cache key of `step`: the planner's where it could compute one, else chained from
    /// the stage's previous key with the digests of the step's inputs. `None` when an input
    /// cannot be known before running (a URL without `--checksum`).
    pub(super) fn step_key(
        &self,
        step: &Step,
        stage: &StageResult,
        results: &BTreeMap<usize, StageResult>,
    ) -> Option<Digest> {
        if let Some(key) = &step.cache_key {
            return Some(key.clone());
        }
        let parent = stage.key.as_ref()?;
        let mut inputs = Vec::new();
        for input in &step.inputs {
            let digest = match input {
                StepInput::Context { paths } => {
                    let root = SourceRoot {
                        dir: self.context.root(),
                        label: "build context".into(),
                        ignore: Some(self.context.ignore()),
                        keep_owner: false,
                    };
                    crate::input_digest::sources_digest(&root, paths).ok()?
                }
                StepInput::Stage { index, paths } => {
                    let mut e = KeyEncoder::new("stage-input");
                    e.field(
                        "stage",
                        results.get(index)?.key.as_ref()?.as_str().as_bytes(),
                    );
                    for p in paths {
                        e.field("path", p.as_bytes());
                    }
                    e.finish()
                }
                StepInput::Image {
                    reference, paths, ..
                } => {
                    let descriptor = self.builder.store.resolve(reference).ok()?;
                    let mut e = KeyEncoder::new("image-input");
                    e.field("image", descriptor.digest.as_str().as_bytes());
                    for p in paths {
                        e.field("path", p.as_bytes());
                    }
                    e.finish()
                }
                StepInput::Url { url, checksum } => {
                    let mut e = KeyEncoder::new("url-input");
                    e.field("url", url.as_bytes())
                        .field("checksum", checksum.as_ref()?.as_bytes());
                    e.finish()
                }
            };
            inputs.push(digest);
        }
        Some(chain_key(parent, &step.step_digest, &inputs))
    }

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
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(%record, error = %e, "unreadable cache record ignored");
                return Ok(None);
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
            return Ok(None);
        };
        if !self.builder.store.has_blob(&descriptor.digest) {
            return Ok(None);
        }
        let layer_op = entry
            .annotations
            .get("layer_op")
            .is_some_and(|v| v == "true");
        self.record_layer(
            stage,
            descriptor.clone(),
            diff_id,
            created_by.clone(),
            layer_op,
        )?;
        Ok(Some(descriptor.digest.clone()))
    }
}
