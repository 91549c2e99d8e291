//! One stage: its base, then each step (metadata, WORKDIR, RUN, COPY/ADD), with reports.

use super::copy_step::FromSource;
use super::{Env, StageResult};
use crate::copy::{owner::resolve_owner, staging::Staging};
use crate::error::BuildError;
use crate::history;
use crate::image_state::ImageState;
use crate::request::{BuildEvent, StepReport, StepStatus};
use crate::runner::{RunError, RunRequest};
use rbuild_dockerfile::{Instruction, RunScript};
use rbuild_layer::ChangeSet;
use rbuild_oci::Digest;
use rbuild_plan::{image_base_key, scratch_base_key, Base, PlannedStage, Step, StepInput};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

impl Env<'_> {
    pub(super) fn build_stage(
        &self,
        stage: &PlannedStage,
        results: &BTreeMap<usize, StageResult>,
    ) -> Result<(StageResult, Vec<StepReport>), BuildError> {
        let cancel = &self.cancel;
        let mut reports = Vec::new();
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
                key: Some(scratch_base_key(&stage.platform.to_string())),
                base_layers: 0,
                base_history: 0,
                frozen: Default::default(),
                final_image: self.final_stages.contains(&stage.index),
                phases: Default::default(),
            },
            Base::Image { reference, .. } => {
                let (descriptor, manifest, config) = self
                    .find_image(reference, &stage.platform)
                    .map_err(|e| BuildError::BaseImage {
                        reference: reference.clone(),
                        reason: e.to_string(),
                    })?;
                let base_platform = rbuild_oci::Platform::new(
                    &config.os,
                    &config.architecture,
                    config.variant.as_deref(),
                );
                if self.custom_platform
                    && !config.architecture.is_empty()
                    && !base_platform.matches(&stage.platform)
                {
                    return Err(BuildError::BaseImage {
                        reference: reference.clone(),
                        reason: format!(
                            "the image is for {base_platform}, the build for {}: rbuild does not \
                             convert or emulate platforms; use a base with a {} image (a \
                             multi-platform index) or drop --custom-platform",
                            stage.platform, stage.platform
                        ),
                    });
                }
                StageResult {
                    image: ImageState::from_base(config),
                    layers: manifest.layers,
                    rootfs: None,
                    label,
                    key: Some(image_base_key(&descriptor.digest)),
                    base_layers: 0,
                    base_history: 0,
                    frozen: Default::default(),
                    final_image: self.final_stages.contains(&stage.index),
                    phases: Default::default(),
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
                    final_image: self.final_stages.contains(&stage.index),
                    phases: Default::default(),
                }
            }
        };
        result.base_layers = result.layers.len();
        result.base_history = result.image.config.history.len();
        for (position, step) in stage.steps.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(BuildError::Cancelled);
            }
            let keyword = step.instruction.keyword();
            self.builder.emit(BuildEvent::StepStarted {
                stage: stage.index,
                line: step.span.line,
                keyword,
                stage_name: stage
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{}", stage.index)),
                position: position + 2,
                count: stage.steps.len() + 1,
                text: self.instruction_text(step),
            });
            let started = Instant::now();
            let key = self.keys.get(&(stage.index, position)).cloned().flatten();
            let record = key
                .as_ref()
                .filter(|_| step.layer)
                .map(|k| self.layer_record_key(&result, keyword, k));
            result.phases = Default::default();
            let done = self.run_step(step, &mut result, results, record.as_ref())?;
            if let Some((_, cached)) = &done {
                self.record_inputs(stage.index, position, !cached && !self.no_cache);
            }
            result.key = key.clone();
            if let Some((_, false)) = &done {
                self.builder.emit(BuildEvent::StepProfile {
                    stage: stage.index,
                    line: step.span.line,
                    phases: std::mem::take(&mut result.phases),
                });
            }
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
        // Later stages copy from what this one left; a stage none depends on needs its
        // filesystem no more.
        let tree = result.rootfs.take();
        if self.depended_on.contains(&stage.index) {
            *result.frozen.get_mut().unwrap_or_else(|e| e.into_inner()) = tree;
        } else if let Some(tree) = tree {
            self.reaper.delete(tree.into_dir());
        }
        Ok((result, reports))
    }

    /// Runs one step; returns the digest of the layer it made or reused (true when reused).
    pub(super) fn run_step(
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
            if let Some(digest) = self.try_compress_local(record, stage)? {
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
                if let Some(digest) = self.try_compress_local(record, stage)? {
                    return Ok(Some((digest, true)));
                }
                self.ensure_rootfs(stage)?;
                let user = stage.image.config.config.user.clone();
                let owner = if user.is_empty() {
                    (0, 0)
                } else {
                    resolve_owner(&user, stage.rootfs.as_ref().map(|t| t.path()))
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
                // Symlinks of the path are followed inside the stage, as BuildKit's mkdir does
                // (fs.RootPath): `WORKDIR /bin/x` with `/bin -> usr/bin` makes /usr/bin/x and
                // keeps the link, never replaces it by a directory.
                let target = staging.resolve(&wd)?;
                let created = staging.ensure_dir(&target)?;
                // Owners as recorded (a builder that is not root cannot give files away).
                let (root, owners) = staging.finish_with_owners()?;
                // A new directory comes with its existing parents, as in BuildKit's diff of a
                // `mkdir -p`; a directory that already exists gives an empty layer, as there.
                let changes = if created {
                    ChangeSet::whole_tree(&root)?
                } else {
                    ChangeSet::new()
                };
                let layer = super::layers::LayerSource {
                    root: &root,
                    changes: &changes,
                    owners: &owners,
                };
                let desc = self.commit_layer_with_owners(
                    stage,
                    &layer,
                    format!("WORKDIR {wd}"),
                    false,
                    record,
                )?;
                self.keep_step_result(stage, crate::runner::AfterRun::MergeUpper, &root);
                Ok(Some(desc))
            }
            Instruction::Run(run) => {
                self.ensure_rootfs(stage)?;
                let scratch = self.scratch_dir("run")?;
                let mut mounts = self.prepare_mounts(step, run, stage, results, scratch.path())?;
                // What BuildKit runs: the heredoc body itself for `RUN <<EOF`, a script file
                // under /dev/pipes when that body starts with `#!`, else the line.
                let argv = match run.script() {
                    RunScript::Exec(args) => args,
                    RunScript::Shell(text) => stage.image.with_shell(&text),
                    RunScript::ShebangFile { name, content } => {
                        let file = scratch.path().join("heredoc-script");
                        std::fs::write(&file, content)
                            .and_then(|()| {
                                std::fs::set_permissions(
                                    &file,
                                    std::fs::Permissions::from_mode(0o755),
                                )
                            })
                            .map_err(BuildError::io("write the heredoc script", file.clone()))?;
                        let target = format!("/dev/pipes/{name}");
                        mounts.mounts.push(rbuild_sandbox::Mount {
                            target: target.clone(),
                            kind: rbuild_sandbox::MountKind::Bind {
                                source: file,
                                readwrite: false,
                            },
                        });
                        stage.image.with_shell(&target)
                    }
                };
                let mut env: Vec<String> = stage.image.config.config.env.clone();
                let defined =
                    |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
                for (k, v) in &step.args {
                    if !defined(&env, k) {
                        env.push(format!("{k}={v}"));
                    }
                }
                for pair in &self.proxy_env {
                    if !defined(&env, pair.split('=').next().unwrap_or("")) {
                        env.push(pair.clone());
                    }
                }
                // Secrets exposed with `env=` win over any other value of that name.
                for pair in &mounts.env {
                    let name = pair.split('=').next().unwrap_or("");
                    env.retain(|e| e.split('=').next() != Some(name));
                    env.push(pair.clone());
                }
                let rootfs = stage
                    .rootfs
                    .as_ref()
                    .map(|t| t.path().to_path_buf())
                    .unwrap_or_default();
                let insecure = run.security == Some(rbuild_dockerfile::SecurityMode::Insecure);
                if insecure && !self.allow_security_insecure {
                    return Err(self.step_error(
                        step,
                        "RUN --security=insecure needs the security.insecure entitlement: pass --allow security.insecure to rbuild (the step then runs without the seccomp filter)".to_string(),
                    ));
                }
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
                    network: match run.network {
                        Some(rbuild_dockerfile::NetworkMode::None) => rbuild_sandbox::Network::None,
                        Some(rbuild_dockerfile::NetworkMode::Host) => rbuild_sandbox::Network::Host,
                        Some(rbuild_dockerfile::NetworkMode::Default) | None => self.network,
                    },
                    mounts: mounts.mounts.clone(),
                    cancel: self.cancel.clone(),
                    seccomp: !insecure,
                };
                let line = step.span.line;
                let mut on_line = |text: &str| {
                    self.builder.emit(BuildEvent::Output {
                        line,
                        text: text.to_string(),
                    })
                };
                let started = Instant::now();
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
                stage.phases.run = started.elapsed().saturating_sub(changes.snapshot);
                stage.phases.snapshot = changes.snapshot;
                // Cache locks go as soon as the step ends.
                drop(mounts);
                if changes.exit_code != 0 {
                    return Err(BuildError::RunFailed {
                        file: self.file_name.to_string(),
                        line,
                        command: argv.last().cloned().unwrap_or_default(),
                        code: changes.exit_code,
                    });
                }
                let text = format!("RUN {}", history::run_command_string(&step.args, &argv));
                let layer = super::layers::LayerSource {
                    root: &changes.root,
                    changes: &changes.changes,
                    owners: &changes.owners,
                };
                let desc = self.commit_layer_with_owners(stage, &layer, text, true, record)?;
                self.keep_step_result(stage, changes.after, &changes.root);
                // The upper dir's leftovers (directories, whiteouts) and the step's scratch.
                self.reaper.delete(scratch);
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
}
