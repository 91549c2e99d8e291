//! The engine: walks the plan stage by stage, step by step; metadata steps change the config,
//! COPY/ADD/WORKDIR/RUN produce layers written by rbuild-layer into rbuild-store; the result is
//! committed into the store and exported.

use crate::context::BuildContext;
use crate::error::BuildError;
use crate::image_state::ImageState;
use crate::planning::{plan_dockerfile_with, PlanRequest};
use crate::remote::Remote;
use crate::request::{
    BuildEvent, BuildOutcome, BuildRequest, DockerfileSource, ImageFormat, StepReport,
};
use crate::runner::{Isolation, StepRunner};
use crate::sandbox_runner::LazySandboxRunner;
use crate::store_resolver::{find_image, LazyImages, StoreResolver};
use crate::timestamp::BuildTime;
use crate::work_area::WorkArea;
use rbuild_layer::{LayerOptions, LayerWriter};
use rbuild_oci::{Descriptor, Digest, Manifest, MediaType};
use rbuild_plan::{PlannedStage, Step};
use rbuild_store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod cache;
mod cache_mount;
mod copy_step;
mod history_times;
mod layer_upload;
mod layers;
mod miss;
pub(crate) mod output_file;
mod reaper;
mod registry_cache;
mod run_mounts;
mod stage;
mod tree_copy;

/// The progress callback.
pub type ProgressFn = Arc<dyn Fn(&BuildEvent) + Send + Sync>;

/// Builds images; configured once, used for any number of builds.
#[derive(Clone)]
pub struct Builder {
    store: Store,
    work: WorkArea,
    runner: Arc<dyn StepRunner>,
    progress: Option<ProgressFn>,
    remote: Option<Remote>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("store", &self.store.root())
            .field("work", &self.work.path())
            .finish()
    }
}

/// The state of a stage while and after it is built.
struct StageResult {
    image: ImageState,
    layers: Vec<Descriptor>,
    /// The stage's filesystem, once a step needed it.
    rootfs: Option<layers::Tree>,
    label: String,
    /// The cache key of the stage's last step (of its base before any step).
    key: Option<Digest>,
    /// How many of `layers` and of the history entries come from the base.
    base_layers: usize,
    base_history: usize,
    /// The finished stage's filesystem, for `COPY --from` (materialised on first use).
    frozen: std::sync::Mutex<Option<layers::Tree>>,
    /// Whether the stage's layers are part of the built image (the target and the stages it
    /// is `FROM`); the others' layers never leave the machine.
    final_image: bool,
    /// Where the current step's time went.
    phases: crate::request::StepPhases,
}

impl Builder {
    /// A builder over the content store at `store_dir` (created if missing); scratch space
    /// (rootfs trees, staging) goes under `<store_dir>/.rbuild-work`, which is private to the
    /// user running the build (0700), one locked directory per build; what a killed build
    /// left there is removed by the next build. Trees a build no longer needs are moved to
    /// `.rbuild-work/trash` and deleted by a background thread, which a build does not wait
    /// for: what is left there when the process ends goes with the next build, or with
    /// [`Builder::empty_trash`] (`rbuild prune`).
    pub fn new(store_dir: impl AsRef<Path>) -> Result<Builder, BuildError> {
        let store = Store::open(store_dir.as_ref())?;
        let work = WorkArea::open(store.root().join(".rbuild-work"))?;
        Ok(Builder {
            store,
            work,
            runner: Arc::new(LazySandboxRunner::new(Isolation::Auto)),
            progress: None,
            remote: None,
        })
    }

    /// Deletes what builds left in the work area's trash, now (`rbuild prune` calls it).
    pub fn empty_trash(&self) {
        reaper::empty_trash(&self.work.path().join(reaper::TRASH));
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

    /// Runs one build. Blocking; safe to call from inside an async runtime (a task of
    /// `#[tokio::main]`): the build then runs on a thread of its own while the caller waits
    /// (wrap the call in `tokio::task::spawn_blocking` to keep the runtime's thread free).
    pub fn build(&self, request: BuildRequest) -> Result<BuildOutcome, BuildError> {
        crate::off_runtime::off_runtime(|| self.build_here(request))
    }

    /// One build on this thread. With a report or attestations asked for, the report sink
    /// sees every event and the outcome, so a failed build gets its report too.
    fn build_here(&self, request: BuildRequest) -> Result<BuildOutcome, BuildError> {
        let pushes = self.remote.is_some() && !request.destinations.is_empty();
        let Some(sink) = crate::attest_sink::AttestSink::for_request(&request, pushes, &self.store)
        else {
            return self.build_inner(request, None);
        };
        let details = crate::attest_sink::RequestDetails::of(&request);
        let tap = sink.tap();
        let user = self.progress.clone();
        let tapped = Builder {
            progress: Some(Arc::new(move |event: &BuildEvent| {
                tap(event);
                if let Some(user) = &user {
                    user(event);
                }
            })),
            ..self.clone()
        };
        let result = tapped.build_inner(request, Some(&sink));
        sink.finish(self.remote.as_ref(), details, result)
    }

    fn build_inner(
        &self,
        mut request: BuildRequest,
        attest: Option<&crate::attest_sink::AttestSink>,
    ) -> Result<BuildOutcome, BuildError> {
        let build_dir = self.work.begin_build()?;
        let mut context = BuildContext::open(
            std::mem::replace(
                &mut request.context,
                crate::ContextSource::Dir(PathBuf::new()),
            ),
            request.context_sub_path.as_deref(),
            build_dir.path(),
        )?;
        let (text, file_name, dockerfile_path) = match &request.dockerfile {
            DockerfileSource::Text(t) => (t.clone(), "Dockerfile".to_string(), None),
            DockerfileSource::Path(p) => {
                let path = if p.is_absolute() {
                    p.clone()
                } else {
                    context.root().join(p)
                };
                let text = context.read_text(p).map_err(|e| BuildError::Dockerfile {
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
        let registry_cache = self.registry_cache(&request)?;
        let lazy_images = LazyImages::default();
        let resolver = StoreResolver::with_remote(&self.store, self.remote.as_ref())
            .lazy_layers(registry_cache.is_some().then_some(&lazy_images));
        let plan_request = PlanRequest {
            build_args: request.build_args.clone(),
            target: request.target.clone(),
            platform: request.platform.clone(),
        };
        let planned = plan_dockerfile_with(&text, &plan_request, &resolver)
            .map_err(|e| BuildError::Plan(e.render(&file_name)))?;
        let plan = planned.plan;
        if let Some(sink) = attest.filter(|s| s.wants_inputs()) {
            sink.set_inputs(crate::attest_sink::BuildInputs::of(
                &text, &file_name, &context, &plan,
            ));
        }
        let warnings: Vec<String> = plan.warnings.iter().map(|w| w.render(&file_name)).collect();
        let layer_writer = LayerWriter::new(LayerOptions {
            compression: request.compression,
            level: request.compression_level,
            source_date_epoch: epoch,
            threads: None,
        });
        let key_sources = cache::KeySources {
            context: &context,
            store: &self.store,
            lazy: &lazy_images,
            remote: self.remote.as_ref(),
        };
        let planned_keys = cache::plan_keys(&plan, &key_sources);
        let record_salt = format!(
            "{:?}/{:?}/{:?}/{:?}",
            request.compression, request.compression_level, epoch, request.format
        );
        let mut identities = BTreeMap::new();
        let mut record_places = std::collections::HashMap::new();
        for stage in &plan.stages {
            let label = stage
                .name
                .clone()
                .unwrap_or_else(|| stage.index.to_string());
            for (position, step) in stage.steps.iter().enumerate() {
                let keyword = step.instruction.keyword();
                let place = (stage.index, position);
                if !planned_keys.inputs.contains_key(&place) {
                    continue;
                }
                identities.insert(place, miss::step_identity(&label, position, keyword));
                if let Some(Some(key)) = planned_keys.keys.get(&place) {
                    let record = cache::record_key(&record_salt, key);
                    record_places.insert(
                        record,
                        miss::StepPlace {
                            stage: stage.index,
                            position,
                            line: step.span.line,
                            keyword,
                        },
                    );
                }
            }
        }
        let final_stages = final_stages(&plan);
        let env = Env {
            finishing_uploads: Default::default(),
            reaper: reaper::Reaper::new(self.work.path().join(reaper::TRASH)),
            depended_on: plan
                .stages
                .iter()
                .flat_map(|s| s.depends_on.iter().copied())
                .collect(),
            layer_scan: attest.and_then(|a| a.scan_options()),
            lease: self.store.lease()?,
            cache_ttl: request.cache_ttl,
            keys: planned_keys.keys,
            key_inputs: planned_keys.inputs,
            identities,
            record_places,
            build_arg_names: request.build_args.keys().cloned().collect(),
            lazy_images: &lazy_images,
            registry_cache,
            blob_sources: Default::default(),
            builder: self,
            scratch: build_dir.path(),
            context: &context,
            file_name: &file_name,
            dockerfile_text: &text,
            created: &created,
            time,
            time_fixed: epoch.is_some(),
            layer_writer: &layer_writer,
            local_layer_writer: LayerWriter::new(LayerOptions {
                compression: rbuild_oci::Compression::None,
                level: None,
                source_date_epoch: epoch,
                threads: None,
            }),
            final_stages,
            // Layers stream to the first destination as they are written (the others mount
            // them from there); a squashed image pushes none of its steps' layers.
            stream_to: match (&self.remote, request.single_snapshot) {
                (Some(_), false) => request.destinations.first().cloned(),
                _ => None,
            },
            format: request.format,
            no_cache: request.no_cache,
            allow_security_insecure: request.allow_security_insecure,
            custom_platform: request.platform.is_some(),
            network: request.network,
            cancel: request.cancel.clone(),
            secrets: &request.secrets,
            proxy_env: crate::proxy_env::proxy_env(&request.build_args),
            record_salt,
        };

        // RUN executes the image's own programs: only for a platform this machine runs
        // natively (no emulation), checked before anything is built.
        let host = rbuild_oci::Platform::host();
        for stage in &plan.stages {
            let first_run = stage
                .steps
                .iter()
                .find(|s| matches!(s.instruction, rbuild_dockerfile::Instruction::Run(_)));
            if let (Some(run), false) = (first_run, runs_natively(&stage.platform, &host)) {
                return Err(env.step_error(
                    run,
                    format!(
                        "RUN cannot run for {} on this {host} machine: rbuild does not emulate \
                         other platforms; build on a {} machine, or drop --custom-platform \
                         (or FROM --platform)",
                        stage.platform, stage.platform
                    ),
                ));
            }
        }

        // The sandbox is checked before anything is built, and says how it isolates.
        if let Some(first_run) = plan
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .find(|s| matches!(s.instruction, rbuild_dockerfile::Instruction::Run(_)))
        {
            let ready = self.runner.ready().map_err(|e| match e {
                crate::runner::RunError::Cancelled => BuildError::Cancelled,
                crate::runner::RunError::Unavailable(reason)
                | crate::runner::RunError::Failed(reason) => BuildError::RunUnavailable {
                    file: file_name.clone(),
                    line: first_run.span.line,
                    reason,
                },
            })?;
            if let Some(description) = ready {
                self.emit(BuildEvent::Isolation { description });
            }
        }
        env.register_image_layers(&plan);
        if let Some(cache) = &env.registry_cache {
            if !request.no_cache {
                let records = env.registry_records(&plan);
                cache.probe(&records);
                // The steps that will miss there: their earlier records explain why.
                let missing: Vec<Digest> = records
                    .iter()
                    .filter(|r| cache.lookup(r).is_none())
                    .filter_map(|r| {
                        let place = env.record_places.get(r)?;
                        env.identities.get(&(place.stage, place.position)).cloned()
                    })
                    .collect();
                if !missing.is_empty() {
                    cache.probe_identities(&missing);
                }
            }
        }
        let outcome = self.run_stages(&env, &plan, &request, &created);
        // The push finds the streamed layers there (or uploads those that failed).
        env.finishing_uploads.wait();
        let cache_warnings = env
            .registry_cache
            .as_ref()
            .map(|c| c.finish())
            .unwrap_or_default();
        let mut outcome = outcome?;
        outcome.warnings.extend(cache_warnings);
        outcome.warnings.splice(0..0, warnings);
        // Last, once the cache entries are in: every destination gets the image, blobs
        // uploaded once and mounted between repositories, each manifest after its blobs.
        if let (Some(remote), false) = (&self.remote, request.destinations.is_empty()) {
            let push_started = std::time::Instant::now();
            outcome.pushed = remote
                .push_from_store(
                    &self.store,
                    &outcome.manifest_bytes,
                    &outcome.media_type(),
                    &request.destinations,
                )
                .map_err(|e| match e {
                    BuildError::Registry(message) => {
                        BuildError::Registry(format!("push failed: {message}"))
                    }
                    BuildError::RegistryCall { doing, source } => BuildError::RegistryCall {
                        doing: Some(match doing {
                            Some(d) => format!("push failed: {d}"),
                            None => "push failed".into(),
                        }),
                        source,
                    },
                    other => other,
                })?;
            if let Some(sink) = attest {
                sink.push_took(push_started.elapsed());
            }
        }
        // Last, as Kaniko: a digest file names an image that was pushed (when pushing).
        if let Some(path) = &request.digest_file {
            output_file::write_output(path, |file| {
                use std::io::Write;
                file.write_all(outcome.digest.as_str().as_bytes())
                    .map_err(|e| e.to_string())
            })?;
        }
        Ok(outcome)
    }

    /// The registry cache of a build asking for one.
    fn registry_cache(
        &self,
        request: &BuildRequest,
    ) -> Result<Option<registry_cache::RegistryCache>, BuildError> {
        if !request.cache {
            return Ok(None);
        }
        let remote = self.remote.clone().ok_or_else(|| {
            BuildError::Registry("--cache needs registry access (Builder::with_remote)".into())
        })?;
        let repo = request
            .cache_repo
            .clone()
            .or_else(|| {
                request
                    .destinations
                    .first()
                    .and_then(crate::default_cache_repo)
            })
            .ok_or_else(|| {
                BuildError::Registry("--cache needs --cache-repo or a --destination".into())
            })?;
        Ok(Some(registry_cache::RegistryCache::new(
            remote,
            repo,
            request.cache_ttl,
            registry_cache::CacheKinds {
                run_layers: request.cache_run_layers,
                copy_layers: request.cache_copy_layers,
                push: !request.no_push_cache,
            },
        )))
    }

    fn run_stages(
        &self,
        env: &Env<'_>,
        plan: &rbuild_plan::Plan,
        request: &BuildRequest,
        created: &str,
    ) -> Result<BuildOutcome, BuildError> {
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
                            let results = &results;
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
        // No step reads a stage's filesystem any more.
        let frozen = results
            .values_mut()
            .chain([&mut target])
            .filter_map(|r| r.frozen.get_mut().unwrap_or_else(|e| e.into_inner()).take());
        for tree in frozen {
            env.reaper.delete(tree.into_dir());
        }
        if request.single_snapshot {
            env.squash(&mut target)?;
        }
        let mut config = target.image.config;
        for (k, v) in &request.labels {
            config.config.labels.insert(k.clone(), v.clone());
        }
        if env.time_fixed {
            config.created = Some(created.to_string());
        } else {
            history_times::settle(&mut config, created);
        }
        if let Some(platform) = &request.platform {
            config.architecture = platform.architecture.clone();
            config.os = platform.os.clone();
            config.variant = platform.variant.clone();
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
            layers: target
                .layers
                .iter()
                .map(|l| layer_for_format(l, request.format))
                .collect(),
            subject: None,
            annotations: request.annotations.clone(),
        };
        env.settle_final_layers(&manifest.layers, request)?;
        let manifest_bytes = manifest.to_canonical_json();
        let image_name = request
            .image_name
            .clone()
            .unwrap_or_else(|| "localhost/rbuild:latest".into());
        let remote_layers: Vec<Digest> = manifest
            .layers
            .iter()
            .filter(|l| !self.store.has_blob(&l.digest))
            .map(|l| l.digest.clone())
            .collect();
        // A named image has all its blobs in the store; one whose layers stay in the registry
        // (the registry cache's lazy mode) is kept unnamed, for the push.
        let descriptor = if remote_layers.is_empty() {
            self.store
                .put_image(&image_name, &manifest_bytes, manifest_type)?
        } else {
            tracing::info!(
                layers = remote_layers.len(),
                "layers left in the registry; image not named in the store"
            );
            self.store.put_blob(&manifest_bytes, manifest_type)?
        };
        let digest = descriptor.digest.clone();
        self.emit(BuildEvent::ImageCommitted {
            digest: digest.clone(),
        });
        tracing::info!(%digest, image = %image_name, "image committed");

        // The outputs are made from this build's own descriptor, never looked up by name:
        // builds sharing the store cannot swap images. Tagged with the destinations (or the
        // image name when there is none).
        let names: Vec<rbuild_oci::Reference> = if request.destinations.is_empty() {
            rbuild_oci::Reference::parse(&image_name)
                .into_iter()
                .collect()
        } else {
            request.destinations.clone()
        };
        if let Some(dir) = &request.oci_layout_path {
            let tag = names.first().and_then(|r| r.tag()).unwrap_or("latest");
            self.store
                .export_image_as_is(dir, &descriptor, tag)
                .map_err(|e| BuildError::Output {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
        }
        if let Some(path) = &request.docker_archive_path {
            output_file::write_output(path, |file| {
                self.store
                    .export_docker_archive_images(&[(descriptor.clone(), names.clone())], file)
                    .map(|_| ())
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
            warnings: Vec::new(),
            remote_layers,
            pushed: Vec::new(),
        })
    }
}

/// What every step of one build shares.
struct Env<'a> {
    /// Streamed layers whose upload is being finished in the background.
    finishing_uploads: layer_upload::FinishingUploads,
    /// Moves scratch trees to the trash, deleted in the background.
    reaper: reaper::Reaper,
    /// The stages some stage depends on (`COPY --from`, `FROM`): their filesystems are kept
    /// until the end of the build; the others' go as soon as their stage is done.
    depended_on: std::collections::BTreeSet<usize>,
    /// What the report sink wants to know of the final image's layers: their tars are then
    /// scanned as they are written (no decompression later).
    layer_scan: Option<rbuild_attest::ScanOptions>,
    /// The build's claim on the blobs of its cache hits and layers (a concurrent prune keeps
    /// them).
    lease: rbuild_store::Lease,
    /// `--cache-ttl`: local records older than this are not used either.
    cache_ttl: Option<std::time::Duration>,
    /// Every step's cache key, by (stage index, step position), computed before the build.
    keys: BTreeMap<(usize, usize), Option<Digest>>,
    /// What each keyed layer step's key is made of, by (stage index, step position).
    key_inputs: BTreeMap<(usize, usize), rbuild_plan::KeyInputs>,
    /// The step identity of each of those steps.
    identities: BTreeMap<(usize, usize), Digest>,
    /// Where the step of each layer record stands.
    record_places: std::collections::HashMap<Digest, miss::StepPlace>,
    /// The names of the build's `--build-arg`s (a miss names them as build args).
    build_arg_names: std::collections::BTreeSet<String>,
    /// Images resolved without their layers (with `--cache`).
    lazy_images: &'a LazyImages,
    /// `--cache`: the registry cache.
    registry_cache: Option<registry_cache::RegistryCache>,
    /// Registry repositories holding layers the store may lack.
    blob_sources: std::sync::Mutex<std::collections::HashMap<Digest, rbuild_oci::Reference>>,
    builder: &'a Builder,
    /// This build's private work directory.
    scratch: &'a Path,
    context: &'a BuildContext,
    file_name: &'a str,
    /// The Dockerfile's text (instructions as written, for progress labels).
    dockerfile_text: &'a str,
    created: &'a str,
    time: BuildTime,
    /// The clock is `SOURCE_DATE_EPOCH`'s: every time is the build's.
    time_fixed: bool,
    layer_writer: &'a LayerWriter,
    /// Writes the layers that never leave the machine (uncompressed).
    local_layer_writer: LayerWriter,
    /// The stages whose layers are part of the built image.
    final_stages: std::collections::BTreeSet<usize>,
    /// Where the built image's layers are uploaded while they are written.
    stream_to: Option<rbuild_oci::Reference>,
    format: ImageFormat,
    no_cache: bool,
    /// `--allow security.insecure`.
    allow_security_insecure: bool,
    /// `--custom-platform` given: a base image of another platform is refused.
    custom_platform: bool,
    /// The default network of RUN steps.
    network: rbuild_sandbox::Network,
    cancel: crate::CancelToken,
    /// `--secret`s, for `RUN --mount=type=secret`.
    secrets: &'a BTreeMap<String, crate::SecretSource>,
    /// Proxy build args (`HTTP_PROXY`...) as `NAME=value`: every RUN sees them, no history,
    /// config or key records them.
    proxy_env: Vec<String>,
    /// What besides the cache key shapes a layer blob (compression, level, epoch, format).
    record_salt: String,
}

impl Env<'_> {
    /// Notes where the layers of the plan's images (bases, `COPY --from`, mounts) live, so
    /// that the ones left remote can be fetched when their bytes are needed.
    fn register_image_layers(&self, plan: &rbuild_plan::Plan) {
        for stage in &plan.stages {
            let from_steps = stage
                .steps
                .iter()
                .flat_map(|s| &s.inputs)
                .filter_map(|i| match i {
                    rbuild_plan::StepInput::Image { reference, .. } => Some(reference),
                    _ => None,
                });
            let base = match &stage.base {
                rbuild_plan::Base::Image { reference, .. } => Some(reference),
                _ => None,
            };
            for reference in base.into_iter().chain(from_steps) {
                let (Ok(parsed), Ok((_, manifest, _))) = (
                    rbuild_oci::Reference::parse(reference),
                    self.find_image(reference, &stage.platform),
                ) else {
                    continue;
                };
                for layer in &manifest.layers {
                    self.add_blob_source(&layer.digest, &parsed);
                }
            }
        }
    }

    /// The layer records the registry cache is asked about: every layer step with a key whose
    /// kind it caches, unless the local store has its record.
    fn registry_records(&self, plan: &rbuild_plan::Plan) -> Vec<Digest> {
        let Some(cache) = &self.registry_cache else {
            return Vec::new();
        };
        let mut records = Vec::new();
        for stage in &plan.stages {
            for (position, step) in stage.steps.iter().enumerate() {
                let key = self.keys.get(&(stage.index, position)).cloned().flatten();
                if let (true, Some(key)) = (step.layer, key) {
                    let record = self.record_key(&key);
                    // A step the local store has needs no registry round trip.
                    if cache.kinds.wants(step.instruction.keyword())
                        && self.local_record(&record).is_none()
                    {
                        records.push(record);
                    }
                }
            }
        }
        records
    }

    /// Makes the final image's layers local unless they may stay remote: with the registry
    /// cache, no export asked for, and every destination on the registry holding them (the
    /// push then mounts them there).
    fn settle_final_layers(
        &self,
        layers: &[Descriptor],
        request: &BuildRequest,
    ) -> Result<(), BuildError> {
        let exports = request.oci_layout_path.is_some() || request.docker_archive_path.is_some();
        let must_fetch: Vec<Descriptor> = layers
            .iter()
            .filter(|l| !self.builder.store.has_blob(&l.digest))
            .filter(|l| {
                let holder = self
                    .blob_holder(&l.digest)
                    .map(|h| h.registry().to_string());
                exports
                    || self.registry_cache.is_none()
                    || request.destinations.is_empty()
                    || request
                        .destinations
                        .iter()
                        .any(|d| Some(d.registry()) != holder.as_deref())
            })
            .cloned()
            .collect();
        self.ensure_blobs(&must_fetch)
    }

    /// The image `name` for `platform`, named in the store or resolved lazily.
    pub(super) fn find_image(
        &self,
        name: &str,
        platform: &rbuild_oci::Platform,
    ) -> Result<(Descriptor, Manifest, rbuild_oci::ImageConfig), rbuild_store::StoreError> {
        find_image(&self.builder.store, Some(self.lazy_images), name, platform)
    }

    /// The instruction of `step` as written: its lines (continuations joined), blanks
    /// collapsed. ONBUILD triggers, which have no lines of their own, show their keyword.
    pub(super) fn instruction_text(&self, step: &Step) -> String {
        let lines: Vec<&str> = self
            .dockerfile_text
            .lines()
            .skip(step.span.line.saturating_sub(1))
            .take(step.span.end_line.saturating_sub(step.span.line) + 1)
            .collect();
        let joined: Vec<&str> = lines
            .iter()
            .map(|l| l.trim().trim_end_matches('\\').trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let text = joined.join(" ");
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if step.onbuild || text.is_empty() {
            step.instruction.keyword().to_string()
        } else {
            text
        }
    }

    pub(super) fn step_error(&self, step: &Step, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.file_name.to_string(),
            line: step.span.line,
            message: message.into(),
        }
    }
}

/// Whether this machine runs programs of `target` itself: the same platform, or 32-bit x86 on
/// x86-64.
fn runs_natively(target: &rbuild_oci::Platform, host: &rbuild_oci::Platform) -> bool {
    let (t, h) = (target.normalized(), host.normalized());
    target.matches(host) || (t.os == h.os && h.architecture == "amd64" && t.architecture == "386")
}

/// The stages whose layers end up in the built image: the target and the stages it is built
/// `FROM`, transitively. The others are only `COPY --from`ed or mounted.
fn final_stages(plan: &rbuild_plan::Plan) -> std::collections::BTreeSet<usize> {
    let mut stages = std::collections::BTreeSet::new();
    let mut next = Some(plan.target);
    while let Some(index) = next.filter(|i| stages.insert(*i)) {
        next = plan
            .stages
            .iter()
            .find(|s| s.index == index)
            .and_then(|s| match s.base {
                rbuild_plan::Base::Stage { index } => Some(index),
                _ => None,
            });
    }
    stages
}

/// A layer descriptor with the media type of the image format: a base image's layers keep
/// their bytes and digest, but a Docker manifest lists Docker layer types and an OCI one OCI
/// types, as BuildKit's exporter converts them. zstd has no Docker type and stays OCI.
fn layer_for_format(layer: &Descriptor, format: ImageFormat) -> Descriptor {
    let docker_tar = "application/vnd.docker.image.rootfs.diff.tar";
    let media_type = match (format, &layer.media_type) {
        (ImageFormat::Docker, MediaType::OciLayerGzip) => MediaType::DockerLayerGzip,
        (ImageFormat::Docker, MediaType::OciLayer) => MediaType::Other(docker_tar.into()),
        (ImageFormat::Oci, MediaType::DockerLayerGzip) => MediaType::OciLayerGzip,
        (ImageFormat::Oci, MediaType::Other(t)) if t == docker_tar => MediaType::OciLayer,
        (_, other) => other.clone(),
    };
    Descriptor {
        media_type,
        ..layer.clone()
    }
}
