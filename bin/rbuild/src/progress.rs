//! What a person (or a log collector) sees: one line per step start and end with its duration,
//! RUN output prefixed by its step, and a summary; or one JSON object per event.

use crate::cli::LogFormatArg;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rbuild::plan::MissReason;
use rbuild::registry::{PushOutcome, Transfer, TransferFn, TransferKind};
use rbuild::{BuildEvent, BuildOutcome, ProgressFn, StepPhases, StepStatus};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The phases of a step, named as the JSON events and the `--profile` table name them.
fn phase_list(p: &StepPhases) -> [(&'static str, Duration); 8] {
    [
        ("run", p.run),
        ("snapshot", p.snapshot),
        ("tar", p.tar),
        ("compress", p.compress),
        ("hash", p.hash),
        ("store_write", p.store_write),
        ("upload", p.upload),
        ("apply", p.apply),
    ]
}

/// Prints build events on stderr (stdout stays free for machine output). On a terminal (text
/// formats only) the running step is a live spinner with its elapsed time; finished steps and
/// RUN output scroll above it as the same lines a CI log gets.
pub struct Progress {
    format: LogFormatArg,
    started: Instant,
    step: Mutex<usize>,
    /// The number each step got, by (stage, line), for naming a missed parent step.
    numbers: Mutex<std::collections::BTreeMap<(usize, usize), usize>>,
    live: Option<Live>,
    /// `--log-timestamp`: every line starts with the time (JSON events get a `time` field).
    timestamps: bool,
    /// `--profile`: the steps' phases, printed as a table with the summary.
    profile: Option<Mutex<Vec<ProfileRow>>>,
}

/// One step of the `--profile` table.
struct ProfileRow {
    step: usize,
    stage: usize,
    line: usize,
    phases: StepPhases,
}

/// The live display's bars, once there is one: log lines (warnings of the libraries) are
/// printed above them instead of through them (see [`LogWriter`]).
static LIVE_BARS: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();

/// Where `tracing` events are written: stderr, but above the live display when there is one,
/// so a warning never leaves half-drawn spinner lines in the scrollback.
#[derive(Default)]
pub struct LogWriter {
    buffer: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.buffer).into_owned();
        self.buffer.clear();
        match LIVE_BARS.get() {
            Some(bars) => bars.println(text.trim_end_matches('\n')),
            None => std::io::stderr().lock().write_all(text.as_bytes()),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The live display of a terminal.
struct Live {
    bars: MultiProgress,
    running: Mutex<Option<ProgressBar>>,
    /// Bytes pulled and pushed so far, as a counter bar (created at the first transfer).
    transfers: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new(format: LogFormatArg, timestamps: bool) -> Self {
        let live = (format != LogFormatArg::Json && std::io::stderr().is_terminal()).then(|| {
            let bars = MultiProgress::new();
            let _ = LIVE_BARS.set(bars.clone());
            Live {
                bars,
                running: Mutex::new(None),
                transfers: Mutex::new(None),
            }
        });
        Progress {
            format,
            started: Instant::now(),
            step: Mutex::new(0),
            numbers: Mutex::default(),
            live,
            profile: None,
            timestamps,
        }
    }

    /// With `on`, keeps every step's phases and prints them as a table after the build.
    pub fn with_profile(mut self, on: bool) -> Self {
        self.profile = on.then(Mutex::default);
        self
    }

    fn json(&self) -> bool {
        self.format == LogFormatArg::Json
    }

    /// `text` in ANSI colour `code` with `--log-format color`, as is otherwise.
    fn paint(&self, code: &str, text: &str) -> String {
        if self.format == LogFormatArg::Color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn line(&self, text: &str) {
        let stamped;
        let text = if self.timestamps {
            let now = rbuild::BuildTime::now().rfc3339();
            stamped = match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(mut event)) if self.json() => {
                    event.insert("time".into(), now.into());
                    serde_json::Value::Object(event).to_string()
                }
                _ => format!("{now} {text}"),
            };
            stamped.as_str()
        } else {
            text
        };
        if let Some(live) = &self.live {
            let _ = live.bars.println(text);
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }

    /// `text` cut to the terminal's width (with `…`); as it is without a terminal.
    fn fit(&self, text: &str) -> String {
        let Some(width) = self.live.as_ref().map(|_| console::Term::stderr().size().1) else {
            return text.to_string();
        };
        let width = usize::from(width).max(20);
        if text.chars().count() <= width {
            return text.to_string();
        }
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }

    /// Removes the byte counter of the transfers so far (terminal only): each step's
    /// transfers get a fresh one instead of a stale line under the next step.
    fn clear_transfers(&self) {
        let Some(live) = &self.live else { return };
        if let Some(bar) = live
            .transfers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }

    /// Shows `label` as the running step (terminal only).
    fn start_spinner(&self, label: String) {
        let Some(live) = &self.live else { return };
        let bar = live.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(label);
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut running = live.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = running.replace(bar) {
            old.finish_and_clear();
        }
    }

    /// Removes the running step's spinner (terminal only).
    fn stop_spinner(&self) {
        let Some(live) = &self.live else { return };
        if let Some(bar) = live
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }

    /// The library's progress callback, printing through this.
    pub fn callback(self: &Arc<Self>) -> ProgressFn {
        let me = Arc::clone(self);
        Arc::new(move |event: &BuildEvent| me.event(event))
    }

    fn event(&self, event: &BuildEvent) {
        let mut step = self.step.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            BuildEvent::Isolation { description } => {
                if self.json() {
                    let mode = description.split(':').next().unwrap_or_default();
                    self.line(
                        &json!({"event": "isolation", "mode": mode, "description": description})
                            .to_string(),
                    );
                } else {
                    self.line(&format!("isolation {description}"));
                }
            }
            BuildEvent::StageStarted { stage, name } => {
                let name = name.clone().unwrap_or_else(|| format!("stage-{stage}"));
                if self.json() {
                    self.line(
                        &json!({"event": "stage_started", "stage": stage, "name": name})
                            .to_string(),
                    );
                } else {
                    self.line(&self.paint("1", &format!("==> stage {name}")));
                }
            }
            BuildEvent::StepStarted {
                stage,
                line,
                keyword,
                stage_name,
                position,
                count,
                text,
                ..
            } => {
                *step += 1;
                self.numbers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((*stage, *line), *step);
                if self.json() {
                    self.line(
                        &json!({"event": "step_started", "step": *step, "stage": stage,
                                "stage_name": stage_name, "position": position,
                                "count": count, "line": line, "instruction": keyword,
                                "text": text})
                        .to_string(),
                    );
                } else {
                    // BuildKit's label: `[build 3/4] RUN make`, cut to the terminal's width.
                    let label = format!("#{} [{stage_name} {position}/{count}] {text}", *step);
                    self.clear_transfers();
                    self.line(&self.fit(&label));
                    self.start_spinner(label);
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
            BuildEvent::CacheMiss {
                stage,
                line,
                keyword,
                reason,
            } => {
                let number = |l: &usize| {
                    self.numbers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&(*stage, *l))
                        .copied()
                };
                let own = number(line).unwrap_or(*step);
                let text = match reason {
                    MissReason::ParentMissed { line: parent } => match number(parent) {
                        Some(n) => format!("parent step #{n} missed"),
                        None => reason.to_string(),
                    },
                    other => other.to_string(),
                };
                if self.json() {
                    let mut event = json!({"event": "cache_miss", "step": own, "stage": stage,
                                           "line": line, "instruction": keyword,
                                           "message": text});
                    if let (Some(map), Ok(serde_json::Value::Object(why))) =
                        (event.as_object_mut(), serde_json::to_value(reason))
                    {
                        map.extend(why);
                    }
                    self.line(&event.to_string());
                } else {
                    self.line(&self.paint("33", &format!("#{own} {keyword} missed: {text}")));
                }
            }
            BuildEvent::StepFinished(report) => {
                self.stop_spinner();
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
                    let colour = match report.status {
                        StepStatus::Built => "32",
                        StepStatus::Cached => "36",
                        StepStatus::Metadata => "2",
                    };
                    self.line(&format!(
                        "#{} {} {} in {secs:.2}s{layer}",
                        *step,
                        report.keyword,
                        self.paint(colour, status)
                    ));
                }
            }
            BuildEvent::StepProfile {
                stage,
                line,
                phases,
            } => {
                if self.json() {
                    let mut event = json!({"event": "step_profile", "step": *step,
                                           "stage": stage, "line": line});
                    for (name, time) in phase_list(phases) {
                        event[name] = json!(time.as_secs_f64());
                    }
                    self.line(&event.to_string());
                } else if let Some(rows) = &self.profile {
                    rows.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(ProfileRow {
                            step: *step,
                            stage: *stage,
                            line: *line,
                            phases: phases.clone(),
                        });
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

    /// The registry client's callback: every blob that finished moving.
    pub fn transfer_callback(self: &Arc<Self>) -> TransferFn {
        let me = Arc::clone(self);
        Arc::new(move |transfer: &Transfer| me.transfer(transfer))
    }

    fn transfer(&self, t: &Transfer) {
        let verb = match t.kind {
            TransferKind::Downloaded => "pulled",
            TransferKind::Uploaded => "pushed",
            TransferKind::Mounted => "mounted",
            TransferKind::Existed => "already in",
        };
        if self.json() {
            self.line(
                &json!({"event": "blob", "action": verb, "digest": t.digest.to_string(),
                        "size": t.size, "bytes": t.bytes_moved(),
                        "repository": format!("{}/{}", t.registry, t.repository)})
                .to_string(),
            );
            return;
        }
        if let Some(live) = &self.live {
            let mut slot = live.transfers.lock().unwrap_or_else(|e| e.into_inner());
            let bar = slot.get_or_insert_with(|| {
                let bar = live.bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} transferred {bytes} ({binary_bytes_per_sec}) {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            });
            bar.inc(t.bytes_moved());
            bar.set_message(format!("{verb} {}", short(t.digest.as_str())));
            return;
        }
        self.line(&format!(
            "{verb} {} {}/{} ({} bytes)",
            short(t.digest.as_str()),
            t.registry,
            t.repository,
            t.size
        ));
    }

    /// A plain note.
    pub fn note(&self, text: &str) {
        if self.json() {
            self.line(&json!({"event": "note", "text": text}).to_string());
        } else {
            self.line(text);
        }
    }

    /// A warning (of the build, or of a flag): a `warning` event in JSON mode.
    pub fn warning(&self, text: &str) {
        if self.json() {
            self.line(&json!({"event": "warning", "text": text}).to_string());
        } else {
            self.line(&self.paint("33", &format!("WARN {text}")));
        }
    }

    /// The error that ends the command: an `error` event in JSON mode (with the exit code),
    /// else the `error: …` line.
    pub fn error(&self, text: &str, code: u8) {
        if self.json() {
            self.line(&json!({"event": "error", "text": text, "exit_code": code}).to_string());
        } else {
            self.line(&self.paint("1;31", &format!("error: {text}")));
        }
    }

    /// The summary of a finished build.
    pub fn built(&self, outcome: &BuildOutcome) {
        let size: u64 = outcome.manifest.config.size
            + outcome.manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let layers = outcome.manifest.layers.len();
        let secs = self.started.elapsed().as_secs_f64();
        for warning in &outcome.warnings {
            self.warning(warning);
        }
        self.print_profile();
        if self.json() {
            self.line(
                &json!({"event": "built", "digest": outcome.digest.to_string(), "size": size,
                        "layers": layers, "seconds": secs})
                .to_string(),
            );
        } else {
            self.line(&self.paint(
                "1;32",
                &format!(
                    "built {} ({} bytes, {layers} layers) in {secs:.2}s",
                    outcome.digest, size
                ),
            ));
        }
    }

    /// The `--profile` table: one row per step that made a layer, seconds per phase.
    fn print_profile(&self) {
        let Some(rows) = &self.profile else { return };
        let rows = rows.lock().unwrap_or_else(|e| e.into_inner());
        if rows.is_empty() {
            return;
        }
        let mut header = format!("{:>5} {:>5} {:>5}", "step", "stage", "line");
        for (name, _) in phase_list(&StepPhases::default()) {
            header.push_str(&format!(" {name:>11}"));
        }
        self.line(&format!(
            "profile (seconds; the layer parts overlap in time)\n{header}"
        ));
        for row in rows.iter() {
            let mut text = format!("{:>5} {:>5} {:>5}", row.step, row.stage, row.line);
            for (_, time) in phase_list(&row.phases) {
                text.push_str(&format!(" {:>11.3}", time.as_secs_f64()));
            }
            self.line(&text);
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
            self.line(&self.paint(
                "32",
                &format!(
                    "pushed {}@{} ({} blobs uploaded, {} mounted)",
                    outcome.reference,
                    outcome.digest,
                    outcome.uploaded(),
                    outcome.mounted()
                ),
            ));
        }
    }
}

impl Drop for Live {
    /// A build that fails mid-step leaves no spinner behind its error line.
    fn drop(&mut self) {
        if let Some(bar) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
    }
}

fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_color_format_paints() {
        assert_eq!(
            Progress::new(LogFormatArg::Color, false).paint("32", "built"),
            "\x1b[32mbuilt\x1b[0m"
        );
        assert_eq!(
            Progress::new(LogFormatArg::Text, false).paint("32", "built"),
            "built"
        );
        assert_eq!(
            Progress::new(LogFormatArg::Json, false).paint("32", "built"),
            "built"
        );
    }
}
