//! The build record: what happened during one build, in a form that serialises to the JSON
//! report and renders to the HTML one. [`RecordCollector`] fills it from progress events as
//! they come (the engine's events are translated by the caller, so this crate needs nothing
//! of the engine).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of the JSON report's shape.
pub const RECORD_SCHEMA: &str = "rbuild.build-record/v1";

/// Everything the report shows about one build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// [`RECORD_SCHEMA`].
    pub schema: String,
    /// The builder's name and version (`rbuild 0.1.0`).
    pub builder: String,
    /// When the build started (RFC 3339, UTC).
    pub started: String,
    /// When the build finished (RFC 3339, UTC).
    pub finished: String,
    /// The build's wall time, microseconds.
    pub duration_us: u64,
    /// Whether it produced an image.
    pub success: bool,
    /// The error that stopped it, one line.
    pub error: Option<String>,
    /// How RUN steps were isolated.
    pub isolation: Option<String>,
    /// Stages in the order they started.
    pub stages: Vec<StageRecord>,
    /// The final image, when one was made.
    pub image: Option<ImageRecord>,
    /// The final image's layers, base first.
    pub layers: Vec<LayerRecord>,
    /// Where the image went.
    pub pushed: Vec<PushedRecord>,
    /// How long pushing took, microseconds (0 when nothing was pushed).
    pub push_us: u64,
    /// Provenance and SBOM documents made for the image.
    pub attestations: Vec<AttestationRecord>,
    /// Warnings of the build and notes of the report (a layer that could not be read...).
    pub notes: Vec<String>,
}

/// One stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Its index in the Dockerfile.
    pub index: usize,
    /// Its name (`AS name`).
    pub name: Option<String>,
    /// When it started, microseconds after the build started.
    pub started_us: u64,
    /// Its steps in the order they started.
    pub steps: Vec<StepRecord>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Still running when the build stopped (another stage failed, or it was cancelled).
    #[default]
    Unfinished,
    /// It made a layer.
    Built,
    /// Its layer came from the cache.
    Cached,
    /// It changed only the config.
    Metadata,
    /// It failed and stopped the build.
    Failed,
}

/// One step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The instruction's line.
    pub line: usize,
    /// The instruction keyword.
    pub keyword: String,
    /// How it ended.
    pub state: StepState,
    /// When it started, microseconds after the build started.
    pub started_us: u64,
    /// How long it took, microseconds (the engine's own measure for finished steps).
    pub duration_us: u64,
    /// Time per phase (`run`, `snapshot`, `compress`, `upload`...), microseconds, when the
    /// engine reports them.
    pub phases: BTreeMap<String, u64>,
    /// Why the cache did not have it, when the engine says.
    pub miss_reason: Option<String>,
    /// The layer it made or reused.
    pub layer: Option<String>,
    /// Its cache key.
    pub cache_key: Option<String>,
}

/// The final image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest digest.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// The config's digest.
    pub config: String,
    /// The layers' compressed sizes added up.
    pub compressed_size: u64,
    /// The layers' tar sizes added up (where they were read).
    pub uncompressed_size: u64,
}

/// One of the final image's layers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The blob digest.
    pub digest: String,
    /// The media type.
    pub media_type: String,
    /// The blob's size (compressed).
    pub size: u64,
    /// The tar stream's size, when the layer was read.
    pub uncompressed_size: Option<u64>,
    /// `stage:line KEYWORD` of the step that made it, or `None` for a base image's layer.
    pub created_by: Option<String>,
    /// How many tar entries it has.
    pub entries: u64,
    /// Its largest files, largest first (at most [`crate::TOP_FILES`]).
    pub top_files: Vec<FileSize>,
    /// What it deletes: `path` for a whiteout, `dir/` for an opaque directory (at most
    /// [`crate::MAX_LISTED_WHITEOUTS`]).
    pub whiteouts: Vec<String>,
    /// How many whiteouts it has in all.
    pub whiteouts_total: u64,
    /// Why it could not be read, if it could not.
    pub scan_error: Option<String>,
}

/// A file and its size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSize {
    /// The path in the image, without a leading `/`.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// One push.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushedRecord {
    /// The destination.
    pub reference: String,
    /// The digest the registry stored.
    pub digest: String,
}

/// One attestation document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttestationRecord {
    /// `provenance` or `sbom`.
    pub kind: String,
    /// The artifact manifest's digest.
    pub manifest: String,
    /// Where it was attached (`registry/repo` and how: `referrers API` or `tag sha256-…`).
    pub attached: Vec<String>,
}

/// Fills a [`BuildRecord`] from progress, in the order events happen.
#[derive(Debug, Default)]
pub struct RecordCollector {
    record: BuildRecord,
}

/// A finished step, as the engine reports it.
#[derive(Debug, Clone)]
pub struct StepDone {
    /// The stage's index.
    pub stage: usize,
    /// The line.
    pub line: usize,
    /// How it ended.
    pub state: StepState,
    /// The engine's measure of its duration, microseconds.
    pub duration_us: u64,
    /// The layer it made or reused.
    pub layer: Option<String>,
    /// Its cache key.
    pub cache_key: Option<String>,
}

impl RecordCollector {
    /// A collector for a build that started at `started` (RFC 3339) by `builder`.
    pub fn new(builder: &str, started: &str) -> RecordCollector {
        RecordCollector {
            record: BuildRecord {
                schema: RECORD_SCHEMA.into(),
                builder: builder.into(),
                started: started.into(),
                ..BuildRecord::default()
            },
        }
    }

    /// The isolation of RUN steps.
    pub fn isolation(&mut self, description: &str) {
        self.record.isolation = Some(description.into());
    }

    /// A stage started `at_us` after the build.
    pub fn stage_started(&mut self, index: usize, name: Option<&str>, at_us: u64) {
        if self.stage_mut(index).is_none() {
            self.record.stages.push(StageRecord {
                index,
                name: name.map(str::to_owned),
                started_us: at_us,
                steps: Vec::new(),
            });
        }
    }

    /// A step started `at_us` after the build.
    pub fn step_started(&mut self, stage: usize, line: usize, keyword: &str, at_us: u64) {
        self.stage_started(stage, None, at_us);
        if let Some(s) = self.stage_mut(stage) {
            s.steps.push(StepRecord {
                line,
                keyword: keyword.into(),
                started_us: at_us,
                ..StepRecord::default()
            });
        }
    }

    /// A step finished; `now_us` is used when the step's start was not seen.
    pub fn step_finished(&mut self, done: StepDone, now_us: u64) {
        let step = match self.step_mut(done.stage, done.line) {
            Some(step) => step,
            None => {
                let at = now_us.saturating_sub(done.duration_us);
                self.step_started(done.stage, done.line, "", at);
                match self.step_mut(done.stage, done.line) {
                    Some(step) => step,
                    None => return,
                }
            }
        };
        step.state = done.state;
        step.duration_us = done.duration_us;
        step.layer = done.layer;
        step.cache_key = done.cache_key;
    }

    /// Why the cache missed a step (the last step of that stage at that line).
    pub fn miss_reason(&mut self, stage: usize, line: usize, reason: &str) {
        if let Some(step) = self.step_mut(stage, line) {
            step.miss_reason = Some(reason.into());
        }
    }

    /// How long a phase of a step took (added to what was recorded for it).
    pub fn phase(&mut self, stage: usize, line: usize, phase: &str, us: u64) {
        if let Some(step) = self.step_mut(stage, line) {
            *step.phases.entry(phase.into()).or_default() += us;
        }
    }

    /// The build stopped with `error`: the unfinished step of the stage the error names (by
    /// its line) is marked failed and given its time so far.
    pub fn failed(&mut self, error: &str, line: Option<usize>, now_us: u64) {
        self.record.success = false;
        self.record.error = Some(error.into());
        for stage in &mut self.record.stages {
            for step in &mut stage.steps {
                if step.state == StepState::Unfinished {
                    step.duration_us = now_us.saturating_sub(step.started_us);
                    if Some(step.line) == line {
                        step.state = StepState::Failed;
                    }
                }
            }
        }
    }

    /// A note shown in the report.
    pub fn note(&mut self, note: impl Into<String>) {
        self.record.notes.push(note.into());
    }

    /// The record so far.
    pub fn record(&self) -> &BuildRecord {
        &self.record
    }

    /// The record, for the last additions (image, layers, pushes, attestations).
    pub fn record_mut(&mut self) -> &mut BuildRecord {
        &mut self.record
    }

    /// The finished record.
    pub fn finish(mut self, finished: &str, duration_us: u64) -> BuildRecord {
        self.record.finished = finished.into();
        self.record.duration_us = duration_us;
        if self.record.error.is_none() {
            self.record.success = true;
        }
        self.record
    }

    fn stage_mut(&mut self, index: usize) -> Option<&mut StageRecord> {
        self.record.stages.iter_mut().find(|s| s.index == index)
    }

    fn step_mut(&mut self, stage: usize, line: usize) -> Option<&mut StepRecord> {
        self.stage_mut(stage)?
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.line == line)
    }
}

impl BuildRecord {
    /// The record as pretty JSON (the `--report FILE.json` form).
    pub fn to_json(&self) -> Result<Vec<u8>, crate::AttestError> {
        serde_json::to_vec_pretty(self).map_err(|source| crate::AttestError::Encode {
            what: "build record",
            source,
        })
    }

    /// Every step of every stage, with its stage's index.
    pub fn steps(&self) -> impl Iterator<Item = (usize, &StepRecord)> {
        self.stages
            .iter()
            .flat_map(|s| s.steps.iter().map(move |step| (s.index, step)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_marks_the_step_on_its_line_and_stops_the_others() {
        let mut c = RecordCollector::new("rbuild test", "2026-01-01T00:00:00Z");
        c.stage_started(0, Some("a"), 0);
        c.stage_started(1, None, 5);
        c.step_started(0, 2, "RUN", 10);
        c.step_started(1, 5, "RUN", 12);
        c.step_started(0, 3, "COPY", 20);
        c.step_finished(
            StepDone {
                stage: 0,
                line: 2,
                state: StepState::Built,
                duration_us: 7,
                layer: Some("sha256:x".into()),
                cache_key: None,
            },
            17,
        );
        c.miss_reason(0, 2, "the context changed");
        c.phase(0, 2, "run", 5);
        c.failed("Dockerfile:5: RUN false exited with code 1", Some(5), 100);
        let r = c.finish("2026-01-01T00:00:01Z", 100);
        assert!(!r.success);
        let steps: Vec<_> = r.steps().map(|(i, s)| (i, s.line, s.state)).collect();
        assert_eq!(
            steps,
            vec![
                (0, 2, StepState::Built),
                (0, 3, StepState::Unfinished),
                (1, 5, StepState::Failed)
            ]
        );
        let s = &r.stages[0].steps[0];
        assert_eq!(s.duration_us, 7);
        assert_eq!(s.miss_reason.as_deref(), Some("the context changed"));
        assert_eq!(s.phases["run"], 5);
        assert_eq!(r.stages[1].steps[0].duration_us, 88);
        let back: BuildRecord = serde_json::from_slice(&r.to_json().unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
