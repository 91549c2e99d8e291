//! What a person (or a log collector) sees: one line per step start and end with its duration,
//! RUN output prefixed by its step, and a summary; or one JSON object per event.

use crate::cli::LogFormatArg;
use rbuild::registry::PushOutcome;
use rbuild::{BuildEvent, BuildOutcome, ProgressFn, StepStatus};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Prints build events on stderr (stdout stays free for machine output).
pub struct Progress {
    format: LogFormatArg,
    started: Instant,
    step: Mutex<usize>,
}

impl Progress {
    pub fn new(format: LogFormatArg) -> Self {
        Progress {
            format,
            started: Instant::now(),
            step: Mutex::new(0),
        }
    }

    fn json(&self) -> bool {
        self.format == LogFormatArg::Json
    }

    fn line(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// The library's progress callback, printing through this.
    pub fn callback(self: &Arc<Self>) -> ProgressFn {
        let me = Arc::clone(self);
        Arc::new(move |event: &BuildEvent| me.event(event))
    }

    fn event(&self, event: &BuildEvent) {
        let mut step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            BuildEvent::StageStarted { stage, name } => {
                let name = name.clone().unwrap_or_else(|| format!("stage-{stage}"));
                if self.json() {
                    self.line(
                        &json!({"event": "stage_started", "stage": stage, "name": name})
                            .to_string(),
                    );
                } else {
                    self.line(&format!("==> stage {name}"));
                }
            }
            BuildEvent::StepStarted {
                stage,
                line,
                keyword,
            } => {
                *step += 1;
                if self.json() {
                    self.line(
                        &json!({"event": "step_started", "step": *step, "stage": stage,
                                "line": line, "instruction": keyword})
                        .to_string(),
                    );
                } else {
                    self.line(&format!("#{} {keyword} (line {line})", *step));
                }
            }
            BuildEvent::Output { line, text } => {
                if self.json() {
                    self.line(
                        &json!({"event": "output", "step": *step, "line": line, "text": text})
                            .to_string(),
                    );
                } else {
                    self.line(&format!("#{} | {text}", *step));
                }
            }
            BuildEvent::StepFinished(report) => {
                let status = match report.status {
                    StepStatus::Built => "built",
                    StepStatus::Metadata => "metadata",
                    StepStatus::Cached => "cached",
                };
                let secs = report.duration.as_secs_f64();
                if self.json() {
                    self.line(
                        &json!({"event": "step_finished", "step": *step, "stage": report.stage,
                                "line": report.line, "instruction": report.keyword,
                                "status": status, "seconds": secs,
                                "layer": report.layer.as_ref().map(|d| d.to_string())})
                        .to_string(),
                    );
                } else {
                    let layer = report
                        .layer
                        .as_ref()
                        .map(|d| format!(" layer {}", short(d.as_str())))
                        .unwrap_or_default();
                    self.line(&format!(
                        "#{} {} {status} in {secs:.2}s{layer}",
                        *step, report.keyword
                    ));
                }
            }
            BuildEvent::ImageCommitted { digest } => {
                if self.json() {
                    self.line(
                        &json!({"event": "image_committed", "digest": digest.to_string()})
                            .to_string(),
                    );
                }
            }
        }
    }

    /// A note at debug level (only with `--verbosity debug|trace`, printed as text or JSON).
    pub fn debug(&self, text: &str) {
        if std::env::args().any(|a| a.contains("debug") || a.contains("trace")) {
            self.note(text);
        }
    }

    /// A plain note.
    pub fn note(&self, text: &str) {
        if self.json() {
            self.line(&json!({"event": "note", "text": text}).to_string());
        } else {
            self.line(text);
        }
    }

    /// The summary of a finished build.
    pub fn built(&self, outcome: &BuildOutcome) {
        let size: u64 = outcome.manifest.config.size
            + outcome.manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let layers = outcome.manifest.layers.len();
        let secs = self.started.elapsed().as_secs_f64();
        for warning in &outcome.warnings {
            self.note(warning);
        }
        if self.json() {
            self.line(
                &json!({"event": "built", "digest": outcome.digest.to_string(), "size": size,
                        "layers": layers, "seconds": secs})
                .to_string(),
            );
        } else {
            self.line(&format!(
                "built {} ({} bytes, {layers} layers) in {secs:.2}s",
                outcome.digest, size
            ));
        }
    }

    /// One destination's push result.
    pub fn pushed(&self, outcome: &PushOutcome) {
        if self.json() {
            self.line(
                &json!({"event": "pushed", "destination": outcome.reference.to_string(),
                        "digest": outcome.digest.to_string(), "uploaded": outcome.uploaded(),
                        "mounted": outcome.mounted()})
                .to_string(),
            );
        } else {
            self.line(&format!(
                "pushed {}@{} ({} blobs uploaded, {} mounted)",
                outcome.reference,
                outcome.digest,
                outcome.uploaded(),
                outcome.mounted()
            ));
        }
    }
}

fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}
