//! Build events → the build record. Generic: every event the engine emits passes through
//! here, and an event this sink does not know is ignored, so a new event kind never breaks
//! the report (it only adds to it once it is mapped here).

use crate::request::{BuildEvent, StepReport, StepStatus};
use rbuild_attest::{RecordCollector, StepDone, StepState};

/// Applies one event, `at_us` after the build started.
pub(super) fn apply(collector: &mut RecordCollector, event: &BuildEvent, at_us: u64) {
    match event {
        BuildEvent::Isolation { description } => collector.isolation(description),
        BuildEvent::StageStarted { stage, name } => {
            collector.stage_started(*stage, name.as_deref(), at_us)
        }
        BuildEvent::StepStarted {
            stage,
            line,
            keyword,
            ..
        } => collector.step_started(*stage, *line, keyword, at_us),
        BuildEvent::StepFinished(report) => collector.step_finished(step_done(report), at_us),
        BuildEvent::CacheMiss {
            stage,
            line,
            reason,
            ..
        } => collector.miss_reason(*stage, *line, &reason.to_string()),
        BuildEvent::StepProfile {
            stage,
            line,
            phases,
        } => {
            let parts = [
                ("run", phases.run),
                ("snapshot", phases.snapshot),
                ("tar", phases.tar),
                ("compress", phases.compress),
                ("hash", phases.hash),
                ("store", phases.store_write),
                ("upload", phases.upload),
                ("apply", phases.apply),
            ];
            for (name, took) in parts.into_iter().filter(|(_, took)| !took.is_zero()) {
                collector.phase(*stage, *line, name, took.as_micros() as u64);
            }
        }
        BuildEvent::Output { .. } | BuildEvent::ImageCommitted { .. } => {}
    }
}

fn step_done(report: &StepReport) -> StepDone {
    StepDone {
        stage: report.stage,
        line: report.line,
        state: match report.status {
            StepStatus::Built => StepState::Built,
            StepStatus::Cached => StepState::Cached,
            StepStatus::Metadata => StepState::Metadata,
        },
        duration_us: report.duration.as_micros() as u64,
        layer: report.layer.as_ref().map(|d| d.to_string()),
        cache_key: report.cache_key.as_ref().map(|d| d.to_string()),
    }
}
