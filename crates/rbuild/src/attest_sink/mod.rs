//! The report and attestation sink: like the OCI layout and the docker-archive, it consumes
//! the build's events and outcome. It taps the progress events into a build record, scans the
//! final image's layers while the image is pushed, and at the end (of a failed build too)
//! writes the report, and for a built image makes the provenance and SBOM documents and
//! attaches them ([`documents`]).

mod documents;
mod events;
mod scans;

pub(crate) use scans::TarScanner;

use crate::error::BuildError;
use crate::remote::Remote;
use crate::request::{AttestFormat, BuildEvent, BuildOutcome, BuildRequest};
use crate::timestamp::BuildTime;
use rbuild_attest::{BuildRecord, LayerRecord, RecordCollector, ScanOptions};
use rbuild_oci::Digest;
use rbuild_store::Store;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the sink was asked for.
#[derive(Debug, Clone)]
struct Wants {
    reports: Vec<PathBuf>,
    provenance: bool,
    sbom: bool,
    sbom_files: bool,
    format: AttestFormat,
    /// Documents go into the OCI layout only when asked for explicitly: provenance that is
    /// on by default (because of a push) leaves a layout with its one image.
    to_layout: bool,
}

/// The parts of the request the documents need after the engine consumed it.
#[derive(Debug, Clone)]
pub(crate) struct RequestDetails {
    build_args: std::collections::BTreeMap<String, String>,
    secret_ids: Vec<String>,
    target: Option<String>,
    platform: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    destinations: Vec<rbuild_oci::Reference>,
    oci_layout_path: Option<PathBuf>,
    reproducibility: std::collections::BTreeMap<String, serde_json::Value>,
    /// `SOURCE_DATE_EPOCH`: the documents' times, so a reproducible build's documents are
    /// reproducible too (and a re-push uploads nothing).
    epoch: Option<i64>,
}

/// What the engine tells the sink about the build's inputs once it has planned.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildInputs {
    pub(crate) dockerfile_name: String,
    pub(crate) dockerfile_digest: Option<Digest>,
    pub(crate) context_digest: Option<Digest>,
    /// Images read (bases, `COPY --from`), by reference and manifest digest.
    pub(crate) materials: Vec<(String, Digest)>,
}

/// One build's report and attestations.
pub(crate) struct AttestSink {
    wants: Wants,
    store: Store,
    started: Instant,
    started_at: String,
    collector: Mutex<RecordCollector>,
    inputs: Mutex<BuildInputs>,
    scans: Mutex<Option<std::thread::JoinHandle<Vec<scans::LayerScanResult>>>>,
    push_us: std::sync::atomic::AtomicU64,
}

impl AttestSink {
    /// A sink for `request`, or `None` when it asks for no report and no attestation.
    /// Provenance is on by default when the image is pushed (`pushes`).
    pub(crate) fn for_request(
        request: &BuildRequest,
        pushes: bool,
        store: &Store,
    ) -> Option<Arc<AttestSink>> {
        let wants = Wants {
            reports: request.report.clone(),
            provenance: request.provenance.unwrap_or(pushes),
            sbom: request.sbom,
            sbom_files: request.sbom_files,
            format: request.attest_format,
            to_layout: request.provenance == Some(true) || request.sbom,
        };
        if wants.reports.is_empty() && !wants.provenance && !wants.sbom {
            return None;
        }
        Some(Arc::new(AttestSink {
            wants,
            store: store.clone(),
            started: Instant::now(),
            started_at: BuildTime::now().rfc3339(),
            collector: Mutex::new(RecordCollector::new(
                &format!("rbuild {}", env!("CARGO_PKG_VERSION")),
                "",
            )),
            inputs: Mutex::new(BuildInputs::default()),
            scans: Mutex::new(None),
            push_us: Default::default(),
        }))
    }

    /// Whether the engine should tell it the build's inputs (their digests cost a walk of the
    /// context).
    pub(crate) fn wants_inputs(&self) -> bool {
        self.wants.provenance
    }

    /// What to gather of the final image's layers, if anything.
    pub(crate) fn scan_options(&self) -> Option<ScanOptions> {
        (!self.wants.reports.is_empty() || self.wants.sbom).then_some(ScanOptions {
            files: self.wants.sbom && self.wants.sbom_files,
            packages: self.wants.sbom,
        })
    }

    /// The engine's planned inputs.
    pub(crate) fn set_inputs(&self, inputs: BuildInputs) {
        *lock(&self.inputs) = inputs;
    }

    /// How long the push of the image took.
    pub(crate) fn push_took(&self, elapsed: std::time::Duration) {
        self.push_us.store(
            elapsed.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn elapsed_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// The progress tap: every event goes into the record; the commit of the image starts
    /// the layer scans in the background.
    pub(crate) fn tap(self: &Arc<Self>) -> crate::ProgressFn {
        let sink = self.clone();
        Arc::new(move |event: &BuildEvent| {
            let at = sink.elapsed_us();
            events::apply(&mut lock(&sink.collector), event, at);
            if let BuildEvent::ImageCommitted { digest } = event {
                sink.start_scans(digest.clone());
            }
        })
    }

    fn start_scans(&self, manifest: Digest) {
        let Some(options) = self.scan_options() else {
            return;
        };
        let store = self.store.clone();
        let handle = std::thread::Builder::new()
            .name("rbuild-layer-scan".into())
            .spawn(move || scans::scan_image(&store, &manifest, options));
        match handle {
            Ok(h) => *lock(&self.scans) = Some(h),
            Err(e) => tracing::warn!(error = %e, "cannot start the layer scans"),
        }
    }

    /// Ends the build: the record completed from `result`, the documents made and attached
    /// (for a built image), the reports written. A failure of the documents or the reports
    /// fails a build that had succeeded; a failed build keeps its own error.
    pub(crate) fn finish(
        &self,
        remote: Option<&Remote>,
        details: RequestDetails,
        result: Result<BuildOutcome, BuildError>,
    ) -> Result<BuildOutcome, BuildError> {
        let scans = lock(&self.scans)
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let mut collector = std::mem::take(&mut *lock(&self.collector));
        collector.record_mut().started = self.started_at.clone();
        collector.record_mut().push_us = self.push_us.load(std::sync::atomic::Ordering::Relaxed);
        let result = match result {
            Ok(outcome) => {
                fill_image(&mut collector, &outcome, &scans);
                let inputs = lock(&self.inputs).clone();
                let made = documents::attach(documents::AttachRequest {
                    store: &self.store,
                    remote,
                    outcome: &outcome,
                    details: &details,
                    inputs: &inputs,
                    scans: &scans,
                    provenance: self.wants.provenance,
                    sbom: self.wants.sbom.then_some(self.wants.sbom_files),
                    format: self.wants.format,
                    to_layout: self.wants.to_layout,
                    started: &self.started_at,
                });
                match made {
                    Ok(records) => {
                        collector.record_mut().attestations = records;
                        Ok(outcome)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            collector.failed(&e.to_string(), failed_line(e), self.elapsed_us());
        }
        if self.wants.reports.is_empty() {
            return result;
        }
        let record = collector.finish(&BuildTime::now().rfc3339(), self.elapsed_us());
        let written = self.write_reports(&record);
        match (result, written) {
            (Ok(outcome), Ok(())) => Ok(outcome),
            (Ok(_), Err(e)) => Err(e),
            (Err(build), Err(report)) => {
                tracing::warn!(error = %report, "the report of the failed build was not written");
                Err(build)
            }
            (Err(build), Ok(())) => Err(build),
        }
    }

    fn write_reports(&self, record: &BuildRecord) -> Result<(), BuildError> {
        for path in &self.wants.reports {
            let is_json = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let bytes = if is_json {
                record.to_json()?
            } else {
                rbuild_attest::render_html(record).into_bytes()
            };
            crate::engine::output_file::write_output(path, |file| {
                use std::os::unix::fs::PermissionsExt;
                // Readable as any file the user writes (the temporary file starts at 0600).
                if file.metadata().is_ok_and(|m| m.is_file()) {
                    file.set_permissions(std::fs::Permissions::from_mode(0o644))
                        .map_err(|e| e.to_string())?;
                }
                std::io::Write::write_all(file, &bytes).map_err(|e| e.to_string())
            })?;
        }
        Ok(())
    }
}

impl RequestDetails {
    /// What the documents need of `request`, taken before the build consumes it.
    pub(crate) fn of(request: &BuildRequest) -> RequestDetails {
        let epoch = request.source_date_epoch.or_else(|| {
            request
                .build_args
                .get("SOURCE_DATE_EPOCH")
                .and_then(|v| v.parse().ok())
        });
        let mut reproducibility = std::collections::BTreeMap::new();
        reproducibility.insert("sourceDateEpoch".into(), serde_json::json!(epoch));
        reproducibility.insert(
            "compression".into(),
            serde_json::json!(format!("{:?}", request.compression).to_lowercase()),
        );
        reproducibility.insert(
            "compressionLevel".into(),
            serde_json::json!(request.compression_level),
        );
        reproducibility.insert(
            "imageFormat".into(),
            serde_json::json!(format!("{:?}", request.format).to_lowercase()),
        );
        reproducibility.insert(
            "singleSnapshot".into(),
            serde_json::json!(request.single_snapshot),
        );
        reproducibility.insert("noCache".into(), serde_json::json!(request.no_cache));
        RequestDetails {
            build_args: request.build_args.clone(),
            secret_ids: request.secrets.keys().cloned().collect(),
            target: request.target.clone(),
            platform: request.platform.as_ref().map(|p| p.to_string()),
            labels: request.labels.clone(),
            destinations: request.destinations.clone(),
            oci_layout_path: request.oci_layout_path.clone(),
            reproducibility,
            epoch,
        }
    }
}

/// The image, its layers (with what the scans found) and the pushes, into the record.
fn fill_image(
    collector: &mut RecordCollector,
    outcome: &BuildOutcome,
    scans: &[scans::LayerScanResult],
) {
    let made_by: std::collections::HashMap<&Digest, String> = outcome
        .steps
        .iter()
        .filter(|s| s.status != crate::StepStatus::Metadata)
        .filter_map(|s| {
            s.layer
                .as_ref()
                .map(|l| (l, format!("{}:{} {}", s.stage, s.line, s.keyword)))
        })
        .collect();
    let record = collector.record_mut();
    let mut layers = Vec::new();
    for layer in &outcome.manifest.layers {
        let scan = scans.iter().find(|(d, _)| d.digest == layer.digest);
        let mut l = LayerRecord {
            digest: layer.digest.to_string(),
            media_type: layer.media_type.as_str().to_owned(),
            size: layer.size,
            created_by: made_by.get(&layer.digest).cloned(),
            ..LayerRecord::default()
        };
        match scan.map(|(_, s)| s) {
            Some(Ok(s)) => {
                l.uncompressed_size = Some(s.uncompressed_size);
                l.entries = s.entries;
                l.top_files = s.top_files.clone();
                l.whiteouts_total = s.whiteouts.len() as u64;
                l.whiteouts = s
                    .whiteouts
                    .iter()
                    .take(rbuild_attest::MAX_LISTED_WHITEOUTS)
                    .cloned()
                    .collect();
            }
            Some(Err(e)) => l.scan_error = Some(e.clone()),
            None => {}
        }
        layers.push(l);
    }
    record.image = Some(rbuild_attest::ImageRecord {
        digest: outcome.digest.to_string(),
        media_type: outcome.media_type().as_str().to_owned(),
        config: outcome.manifest.config.digest.to_string(),
        compressed_size: layers.iter().map(|l| l.size).sum(),
        uncompressed_size: layers.iter().filter_map(|l| l.uncompressed_size).sum(),
    });
    record.layers = layers;
    record.pushed = outcome
        .pushed
        .iter()
        .map(|p| rbuild_attest::PushedRecord {
            reference: p.reference.to_string(),
            digest: p.digest.to_string(),
        })
        .collect();
    record.notes.extend(outcome.warnings.iter().cloned());
}

/// The Dockerfile line an error names, if it names one.
fn failed_line(error: &BuildError) -> Option<usize> {
    match error {
        BuildError::Step { line, .. }
        | BuildError::RunFailed { line, .. }
        | BuildError::RunUnavailable { line, .. } => Some(*line),
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BuildInputs {
    /// The Dockerfile's digest, the context's (what `COPY .` would read: names, types, modes
    /// and contents after `.dockerignore`, through the one source walker) and the images the
    /// plan reads, by digest.
    pub(crate) fn of(
        text: &str,
        file_name: &str,
        context: &crate::context::BuildContext,
        plan: &rbuild_plan::Plan,
    ) -> BuildInputs {
        let context_digest = context
            .sources_digest(&[".".to_string()], &[])
            .map_err(|e| tracing::warn!(error = %e, "no context digest for the provenance"))
            .ok()
            .map(|sources| sources.digest);
        let mut materials: Vec<(String, Digest)> = Vec::new();
        for stage in &plan.stages {
            let base = match &stage.base {
                rbuild_plan::Base::Image {
                    reference,
                    digest: Some(d),
                } => Some((reference.clone(), d.clone())),
                _ => None,
            };
            let copied = stage
                .steps
                .iter()
                .flat_map(|s| &s.inputs)
                .filter_map(|i| match i {
                    rbuild_plan::StepInput::Image {
                        reference,
                        digest: Some(d),
                        ..
                    } => Some((reference.clone(), d.clone())),
                    _ => None,
                });
            for m in base.into_iter().chain(copied) {
                if !materials.contains(&m) {
                    materials.push(m);
                }
            }
        }
        BuildInputs {
            dockerfile_name: file_name.to_owned(),
            dockerfile_digest: Some(Digest::sha256_of(text.as_bytes())),
            context_digest,
            materials,
        }
    }
}
