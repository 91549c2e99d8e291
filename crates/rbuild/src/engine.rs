//! The engine: walks the plan stage by stage, step by step; metadata steps change the config,
//! COPY/ADD/WORKDIR/RUN produce layers written by rbuild-layer into rbuild-store; the result is
//! committed into the store and exported.

use crate::context::BuildContext;
use crate::copy::{
    self, chmod::Chmod, owner::resolve_chown, staging::Staging, CopyRequest, SourceRoot,
};
use crate::dockerignore::IgnoreMatcher;
use crate::error::BuildError;
use crate::history;
use crate::image_state::ImageState;
use crate::planning::{plan_dockerfile_with, PlanRequest};
use crate::remote::Remote;
use crate::request::{
    BuildEvent, BuildOutcome, BuildRequest, DockerfileSource, ImageFormat, StepReport, StepStatus,
};
use crate::runner::{Isolation, RunError, RunRequest, StepRunner};
use crate::sandbox_runner::LazySandboxRunner;
use crate::store_resolver::StoreResolver;
use crate::timestamp::BuildTime;
use rbuild_dockerfile::{CopySource, Instruction};
use rbuild_layer::{ApplyOptions, ChangeSet, LayerOptions, LayerWriter};
use rbuild_oci::{Descriptor, Digest, Manifest, MediaType};
use rbuild_plan::{chain_key, Base, KeyEncoder, PlannedStage, Step, StepInput};
use rbuild_store::{CacheRecord, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The progress callback.
pub type ProgressFn = Arc<dyn Fn(&BuildEvent) + Send + Sync>;

/// Builds images; configured once, used for any number of builds.
pub struct Builder {
    store: Store,
    scratch: PathBuf,
    runner: Arc<dyn StepRunner>,
    progress: Option<ProgressFn>,
    remote: Option<Remote>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("store", &self.store.root())
            .field("scratch", &self.scratch)
            .finish()
    }
}

/// The state of a stage while and after it is built.
struct StageResult {
    image: ImageState,
    layers: Vec<Descriptor>,
    rootfs: Option<tempfile::TempDir>,
    label: String,
    /// The cache key of the stage's last step (of its base before any step).
    key: Option<Digest>,
    /// How many of `layers` and of the history entries come from the base.
    base_layers: usize,
    base_history: usize,
    /// The finished stage's filesystem, for `COPY --from` (materialised on first use).
    frozen: std::sync::Mutex<Option<tempfile::TempDir>>,
}

impl Builder {
    /// A builder over the content store at `store_dir` (created if missing); scratch space
    /// (rootfs trees, staging) goes under `<store_dir>/.rbuild-work`.
    pub fn new(store_dir: impl AsRef<Path>) -> Result<Builder, BuildError> {
        let store = Store::open(store_dir.as_ref())?;
        let scratch = store.root().join(".rbuild-work");
        std::fs::create_dir_all(&scratch).map_err(BuildError::io("create", &scratch))?;
        Ok(Builder {
            store,
            scratch,
            runner: Arc::new(LazySandboxRunner::new(Isolation::Auto)),
            progress: None,
            remote: None,
        })
    }

    /// Runs RUN steps in `rbuild-sandbox` with this isolation (the default is
    /// [`Isolation::Auto`]); the sandbox is probed at the first RUN, so builds without RUN
    /// never need namespaces.
    pub fn with_isolation(mut self, isolation: Isolation) -> Builder {
        self.runner = Arc::new(LazySandboxRunner::new(isolation));
        self
    }

    /// Uses `runner` for RUN steps instead of the sandbox ([`NoRunner`](crate::NoRunner)
    /// refuses them).
    pub fn with_runner(mut self, runner: Arc<dyn StepRunner>) -> Builder {
        self.runner = runner;
        self
    }

    /// Pulls base images the store lacks through `remote` (a clone of it is kept).
    pub fn with_remote(mut self, remote: &Remote) -> Builder {
        self.remote = Some(remote.clone());
        self
    }

    /// Reports progress to `callback`.
    pub fn with_progress(mut self, callback: ProgressFn) -> Builder {
        self.progress = Some(callback);
        self
    }

    /// The content store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn emit(&self, event: BuildEvent) {
        if let Some(p) = &self.progress {
            p(&event);
        }
    }

    /// Runs one build.
    pub fn build(&self, request: BuildRequest) -> Result<BuildOutcome, BuildError> {
        let mut context = BuildContext::open(
            request.context,
            request.context_sub_path.as_deref(),
            &self.scratch,
        )?;
        let (text, file_name, dockerfile_path) = match &request.dockerfile {
            DockerfileSource::Text(t) => (t.clone(), "Dockerfile".to_string(), None),
            DockerfileSource::Path(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    context.root().join(p)
                };
                let text = std::fs::read_to_string(&path).map_err(|e| BuildError::Dockerfile {
                    path: p.clone(),
                    reason: if e.kind() == std::io::ErrorKind::NotFound {
                        "not found".into()
                    } else {
                        e.to_string()
                    },
                })?;
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "Dockerfile".into());
                (text, name, Some(path))
            }
        };
        context.load_ignore(dockerfile_path.as_deref())?;

        let epoch = request.source_date_epoch.or_else(|| {
            request
                .build_args
                .get("SOURCE_DATE_EPOCH")
                .and_then(|v| v.parse().ok())
        });
        let time = epoch.map(BuildTime::fixed).unwrap_or_else(BuildTime::now);
        let created = time.rfc3339();
        let resolver = StoreResolver::with_remote(&self.store, self.remote.as_ref());
        let plan_request = PlanRequest {
            build_args: request.build_args.clone(),
            target: request.target.clone(),
            platform: request.platform.clone(),
        };
        let planned = plan_dockerfile_with(&text, &plan_request, &resolver)
            .map_err(|e| BuildError::Plan(e.render(&file_name)))?;
        let plan = planned.plan;
        let warnings = plan.warnings.iter().map(|w| w.render(&file_name)).collect();
        let layer_writer = LayerWriter::new(LayerOptions {
            compression: request.compression,
            level: request.compression_level,
            source_date_epoch: epoch,
            threads: None,
        });
        let env = Env {
            builder: self,
            context: &context,
            file_name: &file_name,
            created: &created,
            time,
            layer_writer: &layer_writer,
            format: request.format,
            no_cache: request.no_cache,
            cancel: request.cancel.clone(),
            record_salt: format!(
                "{:?}/{:?}/{:?}/{:?}",
                request.compression, request.compression_level, epoch, request.format
            ),
        };

        let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
        let mut stage_reports: BTreeMap<usize, Vec<StepReport>> = BTreeMap::new();
        let mut pending: Vec<&PlannedStage> = plan.stages.iter().collect();
        // Stages run in waves: every stage whose dependencies are built runs, the independent
        // ones of a wave concurrently.
        while !pending.is_empty() {
            if request.cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            let (ready, rest): (Vec<&PlannedStage>, Vec<&PlannedStage>) = pending
                .into_iter()
                .partition(|s| s.depends_on.iter().all(|d| results.contains_key(d)));
            if ready.is_empty() {
                return Err(BuildError::Plan(
                    "the stages depend on each other in a cycle".into(),
                ));
            }
            pending = rest;
            let built: Vec<Result<(StageResult, Vec<StepReport>), BuildError>> =
                std::thread::scope(|scope| {
                    let handles: Vec<_> = ready
                        .iter()
                        .map(|stage| {
                            let (env, results) = (&env, &results);
                            scope.spawn(move || {
                                self.emit(BuildEvent::StageStarted {
                                    stage: stage.index,
                                    name: stage.name.clone(),
                                });
                                env.build_stage(stage, results)
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(BuildError::Plan("a stage's thread panicked".into()))
                            })
                        })
                        .collect()
                });
            for (stage, outcome) in ready.iter().zip(built) {
                let (result, reports) = outcome?;
                results.insert(stage.index, result);
                stage_reports.insert(stage.index, reports);
            }
        }
        let reports: Vec<StepReport> = plan
            .stages
            .iter()
            .flat_map(|s| stage_reports.remove(&s.index).unwrap_or_default())
            .collect();
        let mut target = results
            .remove(&plan.target)
            .ok_or_else(|| BuildError::Plan("the target stage was not built".into()))?;
        if request.single_snapshot {
            env.squash(&mut target)?;
        }
        let mut config = target.image.config;
        for (k, v) in &request.labels {
            config.config.labels.insert(k.clone(), v.clone());
        }
        config.created = Some(created.clone());
        if let Some(platform) = &request.platform {
            config.architecture = platform.architecture.clone();
            config.os = platform.os.clone();
        }
        let (manifest_type, config_type) = match request.format {
            ImageFormat::Oci => (MediaType::OciManifest, MediaType::OciConfig),
            ImageFormat::Docker => (MediaType::DockerManifest, MediaType::DockerConfig),
        };
        let config_bytes = config.to_canonical_json();
        let config_descriptor = self.store.put_blob(&config_bytes, config_type)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(manifest_type.clone()),
            artifact_type: None,
            config: config_descriptor,
            layers: target.layers.clone(),
            subject: None,
            annotations: Default::default(),
        };
        let manifest_bytes = manifest.to_canonical_json();
        let image_name = request
            .image_name
            .clone()
            .unwrap_or_else(|| "localhost/rbuild:latest".into());
        let descriptor = self
            .store
            .put_image(&image_name, &manifest_bytes, manifest_type)?;
        let digest = descriptor.digest.clone();
        self.emit(BuildEvent::ImageCommitted {
            digest: digest.clone(),
        });
        tracing::info!(%digest, image = %image_name, "image committed");

        if let Some(dir) = &request.oci_layout_path {
            let tag = image_name
                .rsplit_once(':')
                .map(|(_, t)| t)
                .filter(|t| !t.contains('/'))
                .unwrap_or("latest");
            self.store
                .export_oci_layout(dir, &[(image_name.as_str(), tag)])
                .map_err(|e| BuildError::Output {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
        }
        if let Some(path) = &request.docker_archive_path {
            write_atomically(path, |file| {
                self.store
                    .export_docker_archive(&[image_name.as_str()], file)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })?;
        }
        if let Some(path) = &request.digest_file {
            write_atomically(path, |mut file| {
                use std::io::Write;
                file.write_all(digest.as_str().as_bytes())
                    .map_err(|e| e.to_string())
            })?;
        }
        Ok(BuildOutcome {
            digest,
            manifest,
            manifest_bytes,
            config,
            image_name,
            steps: reports,
            warnings,
        })
    }
}

fn write_atomically(
    path: &Path,
    write: impl FnOnce(std::fs::File) -> Result<(), String>,
) -> Result<(), BuildError> {
    let out = |reason: String| BuildError::Output {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| out(e.to_string()))?;
    write(temp.as_file().try_clone().map_err(|e| out(e.to_string()))?).map_err(out)?;
    temp.persist(path).map_err(|e| out(e.to_string()))?;
    Ok(())
}

/// What every step of one build shares.
struct Env<'a> {
    builder: &'a Builder,
    context: &'a BuildContext,
    file_name: &'a str,
    created: &'a str,
    time: BuildTime,
    layer_writer: &'a LayerWriter,
    format: ImageFormat,
    no_cache: bool,
    cancel: crate::CancelToken,
    /// What besides the cache key shapes a layer blob (compression, level, epoch, format).
    record_salt: String,
}

impl Env<'_> {
    fn step_error(&self, step: &Step, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.file_name.to_string(),
            line: step.span.line,
            message: message.into(),
        }
    }

    fn build_stage(
        &self,
        stage: &PlannedStage,
        results: &BTreeMap<usize, StageResult>,
    ) -> Result<(StageResult, Vec<StepReport>), BuildError> {
        let cancel = &self.cancel;
        let mut reports = Vec::new();
        let store = &self.builder.store;
        let label = stage
            .name
            .clone()
            .unwrap_or_else(|| stage.index.to_string());
        let mut result = match &stage.base {
            Base::Scratch => StageResult {
                image: ImageState::scratch(&stage.platform),
                layers: vec![],
                rootfs: None,
                label,
                key: Some(base_key("scratch", &stage.platform.to_string())),
                base_layers: 0,
                base_history: 0,
                frozen: Default::default(),
            },
            Base::Image { reference, .. } => {
                let (descriptor, manifest, config) = store
                    .get_image_for_platform(reference, &stage.platform)
                    .map_err(|e| BuildError::BaseImage {
                        reference: reference.clone(),
                        reason: e.to_string(),
                    })?;
                StageResult {
                    image: ImageState::from_base(config),
                    layers: manifest.layers,
                    rootfs: None,
                    label,
                    key: Some(base_key("image", descriptor.digest.as_str())),
                    base_layers: 0,
                    base_history: 0,
                    frozen: Default::default(),
                }
            }
            Base::Stage { index } => {
                let parent = results
                    .get(index)
                    .ok_or_else(|| BuildError::Plan(format!("stage {index} was not built")))?;
                StageResult {
                    image: ImageState::from_base(parent.image.config.clone()),
                    layers: parent.layers.clone(),
                    rootfs: None,
                    label,
                    key: parent.key.clone(),
                    base_layers: 0,
                    base_history: 0,
                    frozen: Default::default(),
                }
            }
        };
        result.base_layers = result.layers.len();
        result.base_history = result.image.config.history.len();
        for step in &stage.steps {
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            let keyword = step.instruction.keyword();
            self.builder.emit(BuildEvent::StepStarted {
                stage: stage.index,
                line: step.span.line,
                keyword,
            });
            let started = Instant::now();
            let key = self.step_key(step, &result, results);
            let record = key
                .as_ref()
                .filter(|_| step.layer)
                .map(|k| self.record_key(k));
            let done = self.run_step(step, &mut result, results, record.as_ref())?;
            result.key = key.clone();
            let (status, layer) = match done {
                None => (StepStatus::Metadata, None),
                Some((digest, true)) => (StepStatus::Cached, Some(digest)),
                Some((digest, false)) => (StepStatus::Built, Some(digest)),
            };
            let report = StepReport {
                stage: stage.index,
                line: step.span.line,
                keyword,
                status,
                layer,
                cache_key: key,
                duration: started.elapsed(),
            };
            self.builder.emit(BuildEvent::StepFinished(report.clone()));
            reports.push(report);
        }
        // Later stages copy from what this one left.
        *result.frozen.get_mut().unwrap_or_else(|e| e.into_inner()) = result.rootfs.take();
        Ok((result, reports))
    }

    /// The cache key of `step`: the planner's where it could compute one, else chained from
    /// the stage's previous key with the digests of the step's inputs. `None` when an input
    /// cannot be known before running (a URL without `--checksum`).
    fn step_key(
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
    fn record_key(&self, key: &Digest) -> Digest {
        let mut e = KeyEncoder::new("layer-record");
        e.field("key", key.as_str().as_bytes())
            .field("layer", self.record_salt.as_bytes());
        e.finish()
    }

    /// Reuses the layer recorded under `record`, if the store has it.
    fn try_cache(
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

    /// Runs one step; returns the digest of the layer it made or reused (true when reused).
    fn run_step(
        &self,
        step: &Step,
        stage: &mut StageResult,
        results: &BTreeMap<usize, StageResult>,
        record: Option<&Digest>,
    ) -> Result<Option<(Digest, bool)>, BuildError> {
        if !matches!(step.instruction, Instruction::Workdir { .. }) {
            if let Some(digest) = self.try_cache(record, stage)? {
                return Ok(Some((digest, true)));
            }
        }
        match &step.instruction {
            Instruction::Copy(c) => {
                let request = self.copy_request(
                    "COPY",
                    &c.sources,
                    &c.dest,
                    c.chown.as_deref(),
                    c.chmod.as_deref(),
                    c.parents,
                    &c.excludes,
                    false,
                    None,
                    stage,
                    step,
                )?;
                let link = c.link;
                let from = step.inputs.iter().find_map(|i| match i {
                    StepInput::Stage { index, .. } => Some(FromSource::Stage(*index)),
                    StepInput::Image { reference, .. } => {
                        Some(FromSource::Image(reference.clone()))
                    }
                    _ => None,
                });
                let desc = self.copy_step(step, &request, from, link, stage, results, record)?;
                Ok(Some(desc))
            }
            Instruction::Add(a) => {
                let request = self.copy_request(
                    "ADD",
                    &a.sources,
                    &a.dest,
                    a.chown.as_deref(),
                    a.chmod.as_deref(),
                    false,
                    &a.excludes,
                    a.unpack != Some(false),
                    a.checksum.clone(),
                    stage,
                    step,
                )?;
                let desc = self.copy_step(step, &request, None, a.link, stage, results, record)?;
                Ok(Some(desc))
            }
            Instruction::Workdir { path } => {
                let wd = stage.image.set_workdir(path);
                if wd == "/" {
                    stage.image.config.history.push(history::entry(
                        format!("WORKDIR {wd}"),
                        false,
                        false,
                        self.created,
                    ));
                    return Ok(None);
                }
                if let Some(digest) = self.try_cache(record, stage)? {
                    return Ok(Some((digest, true)));
                }
                self.ensure_rootfs(stage)?;
                let user = stage.image.config.config.user.clone();
                let owner = if user.is_empty() {
                    (0, 0)
                } else {
                    resolve_chown(&user, stage.rootfs.as_ref().map(|t| t.path()))
                        .map_err(|e| self.step_error(step, format!("WORKDIR failed: {e}")))?
                };
                let dir = self.scratch_dir("workdir")?;
                let mut staging = Staging::new(
                    dir.path().join("tree"),
                    stage.rootfs.as_ref().map(|t| t.path()),
                    owner,
                    self.time.seconds,
                );
                std::fs::create_dir(staging.root())
                    .map_err(BuildError::io("create", staging.root()))?;
                let created = staging.ensure_dir(&wd)?;
                let root = staging.finish()?;
                // A new directory comes with its existing parents, as in BuildKit's diff of a
                // `mkdir -p`; a directory that already exists gives an empty layer, as there.
                let changes = if created {
                    ChangeSet::whole_tree(&root)?
                } else {
                    ChangeSet::new()
                };
                let desc = self.commit_layer(
                    stage,
                    &root,
                    &changes,
                    format!("WORKDIR {wd}"),
                    false,
                    record,
                )?;
                Ok(Some(desc))
            }
            Instruction::Run(run) => {
                if let Some(spec) = run.mount_specs.first() {
                    return Err(self.step_error(
                        step,
                        format!("RUN failed: --mount={spec} is not supported yet"),
                    ));
                }
                self.ensure_rootfs(stage)?;
                let argv = match &run.command {
                    rbuild_dockerfile::CommandForm::Shell(text) => {
                        let mut text = text.clone();
                        for doc in &run.heredocs {
                            text.push('\n');
                            text.push_str(&doc.content);
                            text.push_str(&doc.name);
                        }
                        stage.image.with_shell(&text)
                    }
                    rbuild_dockerfile::CommandForm::Exec(a) => a.clone(),
                };
                let mut env: Vec<String> = stage.image.config.config.env.clone();
                for (k, v) in &step.args {
                    if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                        env.push(format!("{k}={v}"));
                    }
                }
                let scratch = self.scratch_dir("run")?;
                let rootfs = stage
                    .rootfs
                    .as_ref()
                    .map(|t| t.path().to_path_buf())
                    .unwrap_or_default();
                let request = RunRequest {
                    rootfs: &rootfs,
                    scratch: scratch.path(),
                    argv: argv.clone(),
                    env,
                    workdir: match stage.image.config.config.working_dir.as_str() {
                        "" => "/".to_string(),
                        wd => wd.to_string(),
                    },
                    user: stage.image.config.config.user.clone(),
                    network_none: run.network == Some(rbuild_dockerfile::NetworkMode::None),
                    cancel: self.cancel.clone(),
                };
                let line = step.span.line;
                let mut on_line = |text: &str| {
                    self.builder.emit(BuildEvent::Output {
                        line,
                        text: text.to_string(),
                    })
                };
                let changes =
                    self.builder
                        .runner
                        .run(&request, &mut on_line)
                        .map_err(|e| match e {
                            RunError::Unavailable(reason) => BuildError::RunUnavailable {
                                file: self.file_name.to_string(),
                                line,
                                reason,
                            },
                            RunError::Cancelled => BuildError::Cancelled,
                            RunError::Failed(m) => {
                                self.step_error(step, format!("RUN failed: {m}"))
                            }
                        })?;
                if changes.exit_code != 0 {
                    return Err(BuildError::RunFailed {
                        file: self.file_name.to_string(),
                        line,
                        command: argv.last().cloned().unwrap_or_default(),
                        code: changes.exit_code,
                    });
                }
                let text = format!("RUN {}", history::run_command_string(&step.args, &argv));
                let desc =
                    self.commit_layer(stage, &changes.root, &changes.changes, text, true, record)?;
                Ok(Some(desc))
            }
            other => {
                let entry = stage
                    .image
                    .apply_metadata(other, self.created)
                    .map_err(|e| {
                        self.step_error(step, format!("{} failed: {e}", other.keyword()))
                    })?;
                if let Some(entry) = entry {
                    stage.image.config.history.push(entry);
                }
                Ok(None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_request<'s>(
        &self,
        keyword: &'static str,
        sources: &'s [CopySource],
        dest: &'s str,
        chown: Option<&str>,
        chmod: Option<&str>,
        parents: bool,
        excludes: &[String],
        unpack: bool,
        checksum: Option<String>,
        stage: &mut StageResult,
        step: &Step,
    ) -> Result<CopyRequest<'s>, BuildError> {
        let chown = match chown {
            None => None,
            Some(spec) => {
                let numeric = spec.split(':').all(|p| p.parse::<u32>().is_ok());
                if !numeric {
                    self.ensure_rootfs(stage)?;
                }
                Some(
                    resolve_chown(spec, stage.rootfs.as_ref().map(|t| t.path()))
                        .map_err(|e| self.step_error(step, format!("{keyword} failed: {e}")))?,
                )
            }
        };
        let chmod = chmod
            .map(Chmod::parse)
            .transpose()
            .map_err(|e| self.step_error(step, format!("{keyword} failed: {e}")))?;
        let excludes = IgnoreMatcher::parse(&excludes.join("\n"))
            .map_err(|e| self.step_error(step, format!("{keyword} failed: {e}")))?;
        Ok(CopyRequest {
            keyword,
            sources,
            dest,
            workdir: stage.image.config.config.working_dir.clone(),
            chown,
            chmod,
            parents,
            excludes,
            unpack,
            checksum,
            time: self.time.seconds,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        step: &Step,
        request: &CopyRequest<'_>,
        from: Option<FromSource>,
        link: bool,
        stage: &mut StageResult,
        results: &BTreeMap<usize, StageResult>,
        record: Option<&Digest>,
    ) -> Result<(Digest, bool), BuildError> {
        if !link {
            self.ensure_rootfs(stage)?;
        }
        let image_root;
        let frozen;
        let root = match &from {
            None => SourceRoot {
                dir: self.context.root(),
                label: "build context".into(),
                ignore: Some(self.context.ignore()),
                keep_owner: false,
            },
            Some(FromSource::Stage(index)) => {
                let source = results
                    .get(index)
                    .ok_or_else(|| BuildError::Plan(format!("stage {index} was not built")))?;
                let mut guard = source.frozen.lock().unwrap_or_else(|e| e.into_inner());
                if guard.is_none() {
                    *guard = Some(self.materialise(&source.layers)?);
                }
                frozen = guard;
                let label = format!("stage {}", source.label);
                let dir = frozen
                    .as_ref()
                    .map(|t| t.path())
                    .unwrap_or(Path::new("/nonexistent"));
                SourceRoot {
                    dir,
                    label,
                    ignore: None,
                    keep_owner: true,
                }
            }
            Some(FromSource::Image(reference)) => {
                let (_, manifest, _) =
                    self.builder
                        .store
                        .get_image(reference)
                        .map_err(|e| BuildError::BaseImage {
                            reference: reference.clone(),
                            reason: e.to_string(),
                        })?;
                image_root = self.materialise(&manifest.layers)?;
                SourceRoot {
                    dir: image_root.path(),
                    label: format!("image {reference}"),
                    ignore: None,
                    keep_owner: true,
                }
            }
        };
        let dir = self.scratch_dir("copy")?;
        let rootfs = if link {
            None
        } else {
            stage.rootfs.as_ref().map(|t| t.path())
        };
        let mut staging = Staging::new(
            dir.path().join("tree"),
            rootfs,
            request.chown.unwrap_or((0, 0)),
            self.time.seconds,
        );
        if let Some(chmod) = &request.chmod {
            staging.set_new_dir_mode(chmod.apply(0o755, true));
        }
        std::fs::create_dir(staging.root()).map_err(BuildError::io("create", staging.root()))?;
        copy::stage_copy(request, &root, &mut staging).map_err(|m| self.step_error(step, m))?;
        let tree = staging.finish()?;
        let mut text = String::from(request.keyword);
        for source in request.sources {
            match source {
                CopySource::Path(p) => text.push_str(&format!(" {p}")),
                CopySource::Heredoc(h) => text.push_str(&format!(" <<{}", h.name)),
            }
        }
        text.push_str(&format!(" {}", request.dest));
        self.commit_layer(
            stage,
            &tree,
            &ChangeSet::whole_tree(&tree)?,
            text,
            true,
            record,
        )
    }

    /// Writes a layer into the store, records it in the stage and, under `record`, in the
    /// step cache.
    #[allow(clippy::too_many_arguments)]
    fn commit_layer(
        &self,
        stage: &mut StageResult,
        root: &Path,
        changes: &ChangeSet,
        created_by: String,
        layer_op: bool,
        record: Option<&Digest>,
    ) -> Result<(Digest, bool), BuildError> {
        let store = &self.builder.store;
        let mut writer = store.blob_writer()?;
        let info = self.layer_writer.write(root, changes, &mut writer)?;
        let (digest, size) = writer.commit(Some(&info.digest), Some(info.size))?;
        let media_type = match self.format {
            ImageFormat::Oci => info.media_type.clone(),
            ImageFormat::Docker => {
                rbuild_layer::docker_media_type(self.layer_writer.options().compression)
            }
        };
        let descriptor = Descriptor::new(media_type, digest.clone(), size);
        if let Some(record) = record {
            let mut entry = CacheRecord {
                descriptors: vec![descriptor.clone()],
                ..CacheRecord::default()
            };
            entry
                .annotations
                .insert("diff_id".into(), info.diff_id.to_string());
            entry
                .annotations
                .insert("created_by".into(), created_by.clone());
            entry
                .annotations
                .insert("layer_op".into(), layer_op.to_string());
            if let Err(e) = store.put_cache_record(record, &entry) {
                tracing::warn!(%record, error = %e, "step cache record not written");
            }
        }
        self.record_layer(stage, descriptor, info.diff_id, created_by, layer_op)?;
        tracing::debug!(%digest, size, "layer committed");
        Ok((digest, false))
    }

    /// Adds a layer to the stage (layers, diffIDs, history) and applies it to the stage's
    /// rootfs if that is materialised.
    fn record_layer(
        &self,
        stage: &mut StageResult,
        descriptor: Descriptor,
        diff_id: Digest,
        created_by: String,
        layer_op: bool,
    ) -> Result<(), BuildError> {
        if let Some(rootfs) = &stage.rootfs {
            let blob = self.builder.store.open_blob(&descriptor.digest)?;
            rbuild_layer::apply_layer(
                blob,
                rootfs.path(),
                &ApplyOptions {
                    expected_diff_id: Some(diff_id.clone()),
                    set_owners: true,
                },
            )?;
        }
        stage.layers.push(descriptor);
        stage.image.config.rootfs.diff_ids.push(diff_id);
        stage
            .image
            .config
            .history
            .push(history::entry(created_by, true, layer_op, self.created));
        Ok(())
    }

    /// `--single-snapshot`: replaces the stage's own layers by one layer of everything they
    /// changed over the base (deletions as whiteouts); their history entries stay, all but
    /// the last layer entry marked empty.
    fn squash(&self, stage: &mut StageResult) -> Result<(), BuildError> {
        let own = stage.layers.len() - stage.base_layers;
        if own <= 1 {
            return Ok(());
        }
        let dir = self.materialise(&stage.layers[..stage.base_layers])?;
        let before = rbuild_layer::TreeScan::scan(dir.path())?;
        for layer in &stage.layers[stage.base_layers..] {
            let blob = self.builder.store.open_blob(&layer.digest)?;
            rbuild_layer::apply_layer(blob, dir.path(), &ApplyOptions::default())?;
        }
        let after = rbuild_layer::TreeScan::scan(dir.path())?;
        let changes = rbuild_layer::diff(&before, &after);
        let store = &self.builder.store;
        let mut writer = store.blob_writer()?;
        let info = self.layer_writer.write(dir.path(), &changes, &mut writer)?;
        let (digest, size) = writer.commit(Some(&info.digest), Some(info.size))?;
        let media_type = match self.format {
            ImageFormat::Oci => info.media_type.clone(),
            ImageFormat::Docker => {
                rbuild_layer::docker_media_type(self.layer_writer.options().compression)
            }
        };
        stage.layers.truncate(stage.base_layers);
        stage.layers.push(Descriptor::new(media_type, digest, size));
        let diff_ids = &mut stage.image.config.rootfs.diff_ids;
        diff_ids.truncate(stage.base_layers);
        diff_ids.push(info.diff_id);
        let own_history = &mut stage.image.config.history[stage.base_history..];
        if let Some(last) = own_history.iter().rposition(|h| !h.empty_layer) {
            for (i, h) in own_history.iter_mut().enumerate() {
                h.empty_layer = h.empty_layer || i != last;
            }
        }
        Ok(())
    }

    fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir, BuildError> {
        tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(&self.builder.scratch)
            .map_err(BuildError::io(
                "create a directory in",
                &self.builder.scratch,
            ))
    }

    fn ensure_rootfs(&self, stage: &mut StageResult) -> Result<(), BuildError> {
        if stage.rootfs.is_none() {
            stage.rootfs = Some(self.materialise(&stage.layers)?);
        }
        Ok(())
    }

    /// Applies `layers` from the store onto a fresh directory.
    fn materialise(&self, layers: &[Descriptor]) -> Result<tempfile::TempDir, BuildError> {
        let dir = self.scratch_dir("rootfs")?;
        for layer in layers {
            let blob = self.builder.store.open_blob(&layer.digest)?;
            rbuild_layer::apply_layer(blob, dir.path(), &ApplyOptions::default())?;
        }
        Ok(dir)
    }
}

/// The key a stage starts from.
fn base_key(kind: &str, what: &str) -> Digest {
    let mut e = KeyEncoder::new("base");
    e.field(kind, what.as_bytes());
    e.finish()
}

enum FromSource {
    Stage(usize),
    Image(String),
}
