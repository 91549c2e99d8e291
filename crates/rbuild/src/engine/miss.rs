//! Explaining a cache miss: every keyed layer step leaves a *step identity* record (its
//! stage, position and instruction kind, which survive any change of its inputs) holding the
//! description of its last key ([`KeyInputs`]): in the store, and with the registry cache in
//! the cache repository (tag `step-<hex>`). On a miss, the closest earlier record of the same
//! step is compared with the current description and the reason is reported as a
//! [`BuildEvent::CacheMiss`]. Descriptions hold names and digests, never values.

use super::Env;
use crate::request::BuildEvent;
use rbuild_oci::Digest;
use rbuild_plan::{explain_miss, KeyEncoder, KeyInputs, MissReason};
use rbuild_store::CacheRecord;

/// The annotation of a local step identity record holding the description.
const KEY_INPUTS: &str = "key_inputs";

/// Where a layer step stands: what its records are found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StepPlace {
    pub stage: usize,
    pub position: usize,
    pub line: usize,
    pub keyword: &'static str,
}

/// The stable identity of a step: its stage (by name, else index), position and kind.
pub(super) fn step_identity(stage_label: &str, position: usize, keyword: &str) -> Digest {
    let mut e = KeyEncoder::new("step-identity");
    e.field("stage", stage_label.as_bytes())
        .field("position", position.to_string().as_bytes())
        .field("keyword", keyword.as_bytes());
    e.finish()
}

impl Env<'_> {
    /// Reports why the step recorded under `record` missed, when an earlier record of the
    /// same step is found.
    pub(super) fn explain_miss(&self, record: &Digest) {
        let Some(place) = self.record_places.get(record) else {
            return;
        };
        let Some(now) = self.key_inputs.get(&(place.stage, place.position)) else {
            return;
        };
        let Some(identity) = self.identities.get(&(place.stage, place.position)) else {
            return;
        };
        let Some(prev) = self.earlier_inputs(identity) else {
            tracing::debug!(line = place.line, "no earlier record of this step");
            return;
        };
        let mut reason = explain_miss(&prev, now);
        if let MissReason::ValueChanged {
            name, build_arg, ..
        } = &mut reason
        {
            *build_arg = self.build_arg_names.contains(name.as_str());
        }
        tracing::info!(line = place.line, %reason, "cache miss");
        self.builder.emit(BuildEvent::CacheMiss {
            stage: place.stage,
            line: place.line,
            keyword: place.keyword,
            reason,
        });
    }

    /// The description last recorded for the step `identity`: the store's, else the cache
    /// repository's.
    fn earlier_inputs(&self, identity: &Digest) -> Option<KeyInputs> {
        let local = self
            .builder
            .store
            .get_cache_record(identity)
            .ok()
            .flatten()
            .and_then(|r| KeyInputs::from_json(r.annotations.get(KEY_INPUTS)?));
        local.or_else(|| self.registry_cache.as_ref()?.earlier_inputs(identity))
    }

    /// Records the description of the key of the layer step at `place` (made or reused) under
    /// its identity; with `push`, in the cache repository too (steps that were built).
    pub(super) fn record_inputs(&self, stage: usize, position: usize, push: bool) {
        let (Some(inputs), Some(identity)) = (
            self.key_inputs.get(&(stage, position)),
            self.identities.get(&(stage, position)),
        ) else {
            return;
        };
        let json = inputs.to_json();
        let mut record = CacheRecord::default();
        record.annotations.insert(KEY_INPUTS.into(), json);
        if let Err(e) = self.builder.store.put_cache_record(identity, &record) {
            tracing::warn!(error = %e, "step identity record not written");
        }
        if let (true, Some(cache)) = (push, &self.registry_cache) {
            cache.push_inputs(&self.builder.store, identity, inputs);
        }
    }
}
