//! From a parsed Dockerfile to a [`Plan`]: ARG scoping, stage resolution, pruning to the target
//! and step keys, following BuildKit's dockerfile2llb semantics.

use crate::args::{is_platform_arg, is_proxy_arg, platform_args};
use crate::error::PlanError;
use crate::key::{
    chain_key, image_base_key, image_input_key, scratch_base_key, stage_input_key, url_input_key,
    KeyEncoder,
};
use crate::model::{Base, Plan, PlanWarning, PlannedStage, Step, StepInput};
use crate::resolver::{BaseImage, BaseResolver, Resolution};
use crate::suggest::closest;
use rbuild_dockerfile::{
    expand_word, ArgDecl, ArgInstruction, CopySource, Dockerfile, Instruction, Lookups, Mount,
    MountType, Span,
};
use rbuild_oci::{Digest, Platform, Reference};
use std::collections::{BTreeMap, BTreeSet};

/// The `PATH` BuildKit gives a Linux stage whose base image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the caller asks of the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// `--build-arg NAME=value` pairs.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
    /// `--platform`: the platform to build for (default: the build platform).
    pub target_platform: Option<Platform>,
    /// The platform the build runs on.
    pub build_platform: Platform,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            build_args: BTreeMap::new(),
            target: None,
            target_platform: None,
            build_platform: Platform::host(),
        }
    }
}

/// Plans `dockerfile`: see the crate documentation.
pub fn plan(
    dockerfile: &Dockerfile,
    options: &PlanOptions,
    resolver: &dyn BaseResolver,
) -> Result<Plan, PlanError> {
    Planner::new(dockerfile, options, resolver).run()
}

/// A stage after its `FROM` line was resolved.
struct StageHead {
    name: Option<String>,
    display: String,
    span: Span,
    platform: Platform,
    base: HeadBase,
    deps: BTreeSet<usize>,
}

enum HeadBase {
    Scratch,
    Stage(usize),
    Image(Reference),
}

/// Where `COPY --from` / `RUN --mount=from=` reads.
enum FromSource {
    Stage(usize),
    Image(Reference),
}

/// What later stages inherit from a planned stage.
#[derive(Clone, Default)]
struct StageOutcome {
    config_env: Vec<(String, String)>,
    state_env: Vec<(String, String)>,
    args: Vec<(String, String)>,
    workdir: String,
    last_key: Option<Digest>,
    onbuild: Vec<String>,
}

struct Planner<'a> {
    dockerfile: &'a Dockerfile,
    options: &'a PlanOptions,
    resolver: &'a dyn BaseResolver,
    escape: char,
    target_platform: Platform,
    /// Platform args and meta ARGs: what `FROM` lines see.
    global: Vec<(String, String)>,
    /// Names declared by an ARG (meta or in a planned stage): build args not among them are
    /// reported as unused.
    consumed: BTreeSet<String>,
    warnings: Vec<PlanWarning>,
    /// Bytes of ARG/ENV values recorded in the steps so far (kept under
    /// [`MAX_PLAN_RECORDED_BYTES`]).
    recorded: usize,
}

impl<'a> Planner<'a> {
    fn new(
        dockerfile: &'a Dockerfile,
        options: &'a PlanOptions,
        resolver: &'a dyn BaseResolver,
    ) -> Self {
        let target_platform = options
            .target_platform
            .clone()
            .unwrap_or_else(|| options.build_platform.clone());
        Planner {
            dockerfile,
            options,
            resolver,
            escape: dockerfile.directives.escape,
            global: platform_args(&target_platform, &options.build_platform),
            target_platform,
            consumed: BTreeSet::new(),
            recorded: 0,
            warnings: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Plan, PlanError> {
        if self.dockerfile.stages.is_empty() {
            return Err(PlanError::Request(
                "the Dockerfile has no FROM instruction: there is nothing to build".into(),
            ));
        }
        self.warnings
            .extend(self.dockerfile.warnings.iter().map(|w| PlanWarning {
                rule: w.rule.clone(),
                message: w.message.clone(),
                span: Some(w.span),
            }));
        self.expand_meta_args()?;
        let mut heads = self.stage_heads()?;
        self.add_dependencies(&mut heads)?;
        let target = self.target(&heads)?;
        let reachable = reachable_from(target, &heads);

        let mut outcomes: BTreeMap<usize, StageOutcome> = BTreeMap::new();
        let mut stages = Vec::with_capacity(reachable.len());
        for &index in &reachable {
            let (stage, outcome) = self.plan_stage(index, &heads, &mut outcomes)?;
            // ONBUILD triggers may add dependencies on stages the target did not need yet;
            // BuildKit resolves those too. They are always earlier stages, so they are planned
            // on demand inside `plan_stage`.
            outcomes.insert(index, outcome);
            stages.push(stage);
        }
        stages.sort_by_key(|s: &PlannedStage| s.index);
        self.report_unused_build_args();
        Ok(Plan {
            target,
            target_platform: self.target_platform.clone(),
            build_platform: self.options.build_platform.clone(),
            stages,
            warnings: self.warnings,
        })
    }

    /// ARGs before the first FROM: a `--build-arg` wins over the default, which is expanded
    /// with the args declared before it.
    fn expand_meta_args(&mut self) -> Result<(), PlanError> {
        for arg in &self.dockerfile.meta_args {
            for decl in &arg.node.args {
                self.consumed.insert(decl.name.clone());
                let value = match self.options.build_args.get(&decl.name) {
                    Some(v) => Some(v.clone()),
                    None => match &decl.default {
                        Some(default) => Some(
                            expand_word(default, &self.global, self.escape)
                                .map_err(|e| PlanError::Parse(e.at(arg.span)))?
                                .0,
                        ),
                        None => None,
                    },
                };
                if let Some(value) = value {
                    set_var(&mut self.global, &decl.name, value);
                }
            }
        }
        Ok(())
    }

    /// Expands every `FROM` with the global args and decides what each stage starts from.
    fn stage_heads(&self) -> Result<Vec<StageHead>, PlanError> {
        let mut heads: Vec<StageHead> = Vec::with_capacity(self.dockerfile.stages.len());
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for stage in &self.dockerfile.stages {
            let span = stage.span;
            if let Some(name) = &stage.from.name {
                if let Some(&first) = names.get(name) {
                    return Err(PlanError::at(
                        span,
                        format!(
                            "duplicate stage name {name:?}: it already names the stage on line {}",
                            heads[first].span.line
                        ),
                    ));
                }
            }
            let (image, _) = expand_word(&stage.from.image, &self.global, self.escape)
                .map_err(|e| PlanError::Parse(e.at(span)))?;
            if image.is_empty() {
                return Err(PlanError::at(
                    span,
                    format!("base name ({}) should not be blank", stage.from.image),
                ));
            }
            let platform = match &stage.from.platform {
                None => self.target_platform.clone(),
                Some(word) => {
                    let (value, _) = expand_word(word, &self.global, self.escape)
                        .map_err(|e| PlanError::Parse(e.at(span)))?;
                    if value.is_empty() {
                        return Err(PlanError::at(
                            span,
                            format!("empty platform value from expression {word}"),
                        ));
                    }
                    Platform::parse(&value).map_err(|e| {
                        PlanError::at(span, format!("failed to parse platform {word}: {e}"))
                    })?
                }
            };
            let base = if image == "scratch" {
                HeadBase::Scratch
            } else if let Some(&earlier) = names.get(&image.to_ascii_lowercase()) {
                HeadBase::Stage(earlier)
            } else {
                let reference = Reference::parse(&image).map_err(|e| {
                    PlanError::at(span, format!("failed to parse stage name {image:?}: {e}"))
                })?;
                HeadBase::Image(reference)
            };
            let mut deps = BTreeSet::new();
            if let HeadBase::Stage(earlier) = base {
                deps.insert(earlier);
            }
            if let Some(name) = &stage.from.name {
                names.insert(name.clone(), stage.index);
            }
            heads.push(StageHead {
                name: stage.from.name.clone(),
                display: stage
                    .from
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{}", stage.index)),
                span,
                platform,
                base,
                deps,
            });
        }
        Ok(heads)
    }

    /// `COPY --from` and `RUN --mount=from=` edges of the stage graph.
    fn add_dependencies(&self, heads: &mut [StageHead]) -> Result<(), PlanError> {
        for stage in &self.dockerfile.stages {
            for instruction in &stage.instructions {
                for from in from_values(&instruction.node) {
                    if let FromSource::Stage(source) =
                        self.resolve_from(from, stage.index, instruction.span, heads)?
                    {
                        heads[stage.index].deps.insert(source);
                    }
                }
            }
        }
        Ok(())
    }

    /// Resolves a `--from` value the way BuildKit does: a stage index, a stage name, or else an
    /// image reference. (The parser already refused values with variables, as BuildKit does.)
    fn resolve_from(
        &self,
        value: &str,
        current: usize,
        span: Span,
        heads: &[StageHead],
    ) -> Result<FromSource, PlanError> {
        let source = if let Ok(index) = value.parse::<usize>() {
            if index >= heads.len() {
                return Err(PlanError::at(span, format!("invalid stage index {index}")));
            }
            index
        } else if let Some(index) = heads
            .iter()
            .position(|h| h.name.as_deref() == Some(&value.to_ascii_lowercase()))
        {
            index
        } else {
            let stage_names: Vec<&str> = heads.iter().filter_map(|h| h.name.as_deref()).collect();
            let looks_like_name = !value.contains(['/', ':', '@', '.']);
            if looks_like_name {
                if let Some(near) = closest(value, &stage_names) {
                    return Err(PlanError::at(
                        span,
                        format!(
                            "--from={value}: no stage is named {value:?} (did you mean {near:?}?); \
                             to copy from an image of that name, write its full reference"
                        ),
                    ));
                }
            }
            let reference = Reference::parse(value).map_err(|e| {
                PlanError::at(
                    span,
                    format!("--from={value}: not a stage name nor an image: {e}"),
                )
            })?;
            return Ok(FromSource::Image(reference));
        };
        if source == current {
            return Err(PlanError::at(
                span,
                format!(
                    "circular dependency detected on stage: {}",
                    heads[current].display
                ),
            ));
        }
        if source > current {
            return Err(PlanError::at(
                span,
                format!(
                    "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                    heads[source].display, heads[current].display
                ),
            ));
        }
        Ok(FromSource::Stage(source))
    }

    fn target(&self, heads: &[StageHead]) -> Result<usize, PlanError> {
        let Some(target) = &self.options.target else {
            return Ok(heads.len() - 1);
        };
        let wanted = target.to_ascii_lowercase();
        if let Some(index) = heads
            .iter()
            .position(|h| h.name.as_deref() == Some(&wanted))
        {
            return Ok(index);
        }
        let names: Vec<&str> = heads.iter().filter_map(|h| h.name.as_deref()).collect();
        let hint = closest(&wanted, &names)
            .map(|n| format!(" (did you mean {n:?}?)"))
            .unwrap_or_default();
        Err(PlanError::Request(format!(
            "target stage {target:?} could not be found{hint}"
        )))
    }

    fn resolve_image(
        &self,
        reference: &Reference,
        platform: &Platform,
        span: Span,
        what: &str,
        heads: &[StageHead],
    ) -> Result<Option<BaseImage>, PlanError> {
        match self.resolver.resolve(reference, platform) {
            Resolution::Found(image) => Ok(Some(*image)),
            Resolution::Unknown => Ok(None),
            Resolution::NotFound(why) => {
                let names: Vec<&str> = heads.iter().filter_map(|h| h.name.as_deref()).collect();
                let familiar = reference.familiar();
                let hint = closest(&familiar, &names)
                    .map(|n| format!(" (did you mean stage {n:?}?)"))
                    .unwrap_or_default();
                Err(PlanError::at(
                    span,
                    format!("{what} {familiar}: {why}{hint}"),
                ))
            }
        }
    }

    fn plan_stage(
        &mut self,
        index: usize,
        heads: &[StageHead],
        outcomes: &mut BTreeMap<usize, StageOutcome>,
    ) -> Result<(PlannedStage, StageOutcome), PlanError> {
        let head = &heads[index];
        let dockerfile = self.dockerfile;
        let stage = &dockerfile.stages[index];
        let platform_text = head.platform.to_string();

        let (base, mut state, inherited_onbuild) = match &head.base {
            HeadBase::Scratch => {
                let state = StageOutcome {
                    last_key: Some(scratch_base_key(&platform_text)),
                    workdir: "/".into(),
                    ..StageOutcome::default()
                };
                (Base::Scratch, state, Vec::new())
            }
            HeadBase::Stage(source) => {
                let source_state = outcomes.get(source).cloned().unwrap_or_default();
                let onbuild = source_state.onbuild.clone();
                let state = StageOutcome {
                    onbuild: Vec::new(),
                    ..source_state
                };
                (Base::Stage { index: *source }, state, onbuild)
            }
            HeadBase::Image(reference) => {
                let image =
                    self.resolve_image(reference, &head.platform, head.span, "FROM", heads)?;
                let digest = image.as_ref().and_then(|i| i.digest.clone());
                let last_key = digest.as_ref().map(image_base_key);
                let config = image.map(|i| i.config.config).unwrap_or_default();
                let env: Vec<(String, String)> = config.env.iter().map(|e| split_env(e)).collect();
                let state = StageOutcome {
                    config_env: env.clone(),
                    state_env: env,
                    args: Vec::new(),
                    workdir: if config.working_dir.is_empty() {
                        "/".into()
                    } else {
                        config.working_dir.clone()
                    },
                    last_key,
                    onbuild: Vec::new(),
                };
                (
                    Base::Image {
                        reference: reference.to_string(),
                        digest,
                    },
                    state,
                    config.on_build,
                )
            }
        };
        if head.platform.os != "windows" && !state.config_env.iter().any(|(k, _)| k == "PATH") {
            set_var(&mut state.config_env, "PATH", DEFAULT_PATH.into());
            set_var(&mut state.state_env, "PATH", DEFAULT_PATH.into());
        }

        let triggers = inherited_onbuild
            .iter()
            .map(|t| parse_trigger(t, head.span))
            .collect::<Result<Vec<_>, _>>()?;
        let instructions = triggers
            .iter()
            .map(|t| (t, head.span, true))
            .chain(stage.instructions.iter().map(|i| (&i.node, i.span, false)));

        let mut steps = Vec::with_capacity(triggers.len() + stage.instructions.len());
        let mut deps = head.deps.clone();
        for (instruction, span, onbuild) in instructions {
            let step = self.plan_step(
                instruction,
                span,
                onbuild,
                index,
                heads,
                &head.platform,
                &mut state,
                outcomes,
                &mut deps,
            )?;
            steps.push(step);
        }

        let planned = PlannedStage {
            index,
            name: head.name.clone(),
            span: head.span,
            platform: head.platform.clone(),
            base,
            depends_on: deps.into_iter().collect(),
            env: state
                .config_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            steps,
        };
        Ok((planned, state))
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_step(
        &mut self,
        instruction: &Instruction,
        span: Span,
        onbuild: bool,
        index: usize,
        heads: &[StageHead],
        platform: &Platform,
        state: &mut StageOutcome,
        outcomes: &BTreeMap<usize, StageOutcome>,
        deps: &mut BTreeSet<usize>,
    ) -> Result<Step, PlanError> {
        let mut observed: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut inputs = Vec::new();
        let mut input_keys: Vec<Option<Digest>> = Vec::new();
        let mut layer = false;

        let expanded = match instruction {
            Instruction::Arg(arg) => {
                Instruction::Arg(self.declare_args(arg, span, state, &mut observed)?)
            }
            _ => {
                let expanded = instruction
                    .expand(&state.state_env, self.escape)
                    .map_err(|e| PlanError::Parse(e.at(span)))?;
                record_lookups(&mut observed, &expanded.lookups, &state.state_env);
                expanded.value
            }
        };

        match &expanded {
            Instruction::Env(env) => {
                for pair in &env.pairs {
                    set_var(&mut state.config_env, &pair.key, pair.value.clone());
                    set_var(&mut state.state_env, &pair.key, pair.value.clone());
                }
                check_environment_size(&state.state_env, span, "ENV")?;
            }
            Instruction::Run(run) => {
                layer = true;
                for (name, value) in &state.args {
                    observed.insert(name.clone(), Some(value.clone()));
                }
                for mount in &run.mounts {
                    if let Some(input) = self.mount_input(mount, index, span, heads, deps)? {
                        input_keys.push(input_key(&input, outcomes));
                        inputs.push(input);
                    }
                }
            }
            Instruction::Copy(copy) => {
                layer = true;
                let paths = source_paths(&copy.sources);
                let input = match &copy.from {
                    Some(from) => Some(self.copy_input(from, paths, index, span, heads, deps)?),
                    None if paths.is_empty() => None,
                    None => Some(StepInput::Context { paths }),
                };
                if let Some(input) = input {
                    input_keys.push(input_key(&input, outcomes));
                    inputs.push(input);
                }
            }
            Instruction::Add(add) => {
                layer = true;
                let (remote, local): (Vec<String>, Vec<String>) = source_paths(&add.sources)
                    .into_iter()
                    .partition(|p| is_remote(p));
                if !local.is_empty() {
                    inputs.push(StepInput::Context { paths: local });
                    input_keys.push(None);
                }
                for url in remote {
                    let input = StepInput::Url {
                        url,
                        checksum: add.checksum.clone(),
                    };
                    input_keys.push(input_key(&input, outcomes));
                    inputs.push(input);
                }
            }
            Instruction::Workdir { path } => {
                state.workdir = normalize_workdir(&state.workdir, path);
                layer = state.workdir != "/";
            }
            Instruction::Onbuild(trigger) => state.onbuild.push(trigger.expression.clone()),
            _ => {}
        }

        let mut encoder = KeyEncoder::new("step");
        encoder
            .field("instruction", &key_json(&expanded))
            .field("observed", &key_json(&observed))
            .field("platform", platform.to_string().as_bytes());
        let step_digest = encoder.finish();
        // An ARG changes nothing by itself: the steps that see its value (its name in their
        // expansion, every RUN) carry it in their own digest. Chaining it would make a build
        // arg change the key of every later step. The engine chains the same way.
        let cache_key = if matches!(expanded, Instruction::Arg(_)) {
            state.last_key.clone()
        } else {
            match (&state.last_key, input_keys.iter().all(Option::is_some)) {
                (Some(parent), true) => {
                    let known: Vec<Digest> = input_keys.into_iter().flatten().collect();
                    Some(chain_key(parent, &step_digest, &known))
                }
                _ => None,
            }
        };
        state.last_key = cache_key.clone();

        let args = if matches!(expanded, Instruction::Run(_)) {
            state.args.clone()
        } else {
            Vec::new()
        };
        // Every step carries the values it observes: a few large values seen by many steps
        // would multiply without this bound.
        let step_bytes: usize = observed
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
            .chain(args.iter().map(|(k, v)| k.len() + v.len()))
            .sum();
        self.recorded = self.recorded.saturating_add(step_bytes);
        if self.recorded > MAX_PLAN_RECORDED_BYTES {
            return Err(PlanError::at(
                span,
                format!(
                    "{}: the ARG and ENV values the steps observe add up to more than {} MiB",
                    expanded.keyword(),
                    MAX_PLAN_RECORDED_BYTES >> 20
                ),
            ));
        }
        Ok(Step {
            span,
            onbuild,
            instruction: expanded,
            layer,
            args,
            observed,
            inputs,
            step_digest,
            cache_key,
        })
    }

    /// An `ARG` inside a stage, as BuildKit's dispatchArg: a `--build-arg` wins; else the default
    /// expanded with what the stage sees so far; else the value of a meta ARG of that name.
    fn declare_args(
        &mut self,
        arg: &ArgInstruction,
        span: Span,
        state: &mut StageOutcome,
        observed: &mut BTreeMap<String, Option<String>>,
    ) -> Result<ArgInstruction, PlanError> {
        let mut resolved = Vec::with_capacity(arg.args.len());
        for decl in &arg.args {
            self.consumed.insert(decl.name.clone());
            let value = if let Some(v) = self.options.build_args.get(&decl.name) {
                Some(v.clone())
            } else if decl.default.is_some() {
                let expanded = decl
                    .expand_default(&state.state_env, self.escape)
                    .map_err(|e| PlanError::Parse(e.at(span)))?;
                record_lookups(observed, &expanded.lookups, &state.state_env);
                expanded.value
            } else {
                self.global
                    .iter()
                    .rev()
                    .find(|(k, _)| k == &decl.name)
                    .map(|(_, v)| v.clone())
            };
            if let Some(value) = &value {
                set_var(&mut state.state_env, &decl.name, value.clone());
                set_var(&mut state.args, &decl.name, value.clone());
            }
            check_environment_size(&state.state_env, span, "ARG")?;
            observed.insert(decl.name.clone(), value.clone());
            resolved.push(ArgDecl {
                name: decl.name.clone(),
                default: value,
            });
        }
        Ok(ArgInstruction { args: resolved })
    }

    fn copy_input(
        &self,
        from: &str,
        paths: Vec<String>,
        index: usize,
        span: Span,
        heads: &[StageHead],
        deps: &mut BTreeSet<usize>,
    ) -> Result<StepInput, PlanError> {
        Ok(match self.resolve_from(from, index, span, heads)? {
            FromSource::Stage(source) => {
                deps.insert(source);
                StepInput::Stage {
                    index: source,
                    paths,
                }
            }
            FromSource::Image(reference) => {
                let image =
                    self.resolve_image(&reference, &heads[index].platform, span, "--from", heads)?;
                StepInput::Image {
                    reference: reference.to_string(),
                    digest: image.and_then(|i| i.digest),
                    paths,
                }
            }
        })
    }

    /// What a `RUN --mount` reads: a bind mount's source (context, stage or image); cache,
    /// tmpfs, secret and ssh mounts are never part of a key.
    fn mount_input(
        &self,
        mount: &Mount,
        index: usize,
        span: Span,
        heads: &[StageHead],
        deps: &mut BTreeSet<usize>,
    ) -> Result<Option<StepInput>, PlanError> {
        let source = mount.source.clone().unwrap_or_else(|| "/".into());
        match (mount.kind, &mount.from) {
            (MountType::Bind, None) => Ok(Some(StepInput::Context {
                paths: vec![source],
            })),
            (MountType::Bind, Some(from)) => Ok(Some(self.copy_input(
                from,
                vec![source],
                index,
                span,
                heads,
                deps,
            )?)),
            (MountType::Cache, Some(from)) => {
                // A cache mount seeded from a stage depends on that stage but its content is a
                // cache, not an input of the key.
                if let FromSource::Stage(source) = self.resolve_from(from, index, span, heads)? {
                    deps.insert(source);
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn report_unused_build_args(&mut self) {
        let unused: Vec<&str> = self
            .options
            .build_args
            .keys()
            .filter(|k| !self.consumed.contains(*k) && !is_proxy_arg(k) && !is_platform_arg(k))
            .map(String::as_str)
            .collect();
        if !unused.is_empty() {
            self.warnings.push(PlanWarning {
                rule: "UnusedBuildArg".into(),
                message: format!(
                    "one or more build-args [{}] were not consumed",
                    unused.join(" ")
                ),
                span: None,
            });
        }
    }
}

/// The JSON encoding of a value inside a key. Plain `serde_json` output is deterministic for
/// the planner's types (struct fields in declaration order, maps are `BTreeMap`s), and several
/// times faster than re-sorting through `canonical_json`; a change of field order is a change
/// of meaning and bumps [`KEY_VERSION`](crate::KEY_VERSION).
fn key_json<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plan values serialize to JSON")
}

/// Stages reachable from `target` through bases and `--from` edges, ascending.
fn reachable_from(target: usize, heads: &[StageHead]) -> Vec<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(index) = todo.pop() {
        if seen.insert(index) {
            todo.extend(heads[index].deps.iter().copied());
        }
    }
    seen.into_iter().collect()
}

/// The `--from` values an instruction names (COPY --from, RUN --mount from=).
fn from_values(instruction: &Instruction) -> Vec<&str> {
    match instruction {
        Instruction::Copy(copy) => copy.from.as_deref().into_iter().collect(),
        Instruction::Run(run) => run
            .mounts
            .iter()
            .filter_map(|m| m.from.as_deref())
            .collect(),
        _ => Vec::new(),
    }
}

fn source_paths(sources: &[CopySource]) -> Vec<String> {
    sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Path(p) => Some(p.clone()),
            CopySource::Heredoc(_) => None,
        })
        .collect()
}

fn is_remote(source: &str) -> bool {
    source.starts_with("http://")
        || source.starts_with("https://")
        || source.starts_with("git@")
        || source.starts_with("git://")
}

/// The digest standing for an input in the key, when the plan can know it: another stage's
/// final key, or an image's digest. Context files and URLs need the engine.
fn input_key(input: &StepInput, outcomes: &BTreeMap<usize, StageOutcome>) -> Option<Digest> {
    match input {
        StepInput::Stage { index, paths } => Some(stage_input_key(
            outcomes.get(index)?.last_key.as_ref()?,
            paths,
        )),
        StepInput::Image { digest, paths, .. } => Some(image_input_key(digest.as_ref()?, paths)),
        StepInput::Url { url, checksum } => Some(url_input_key(url, checksum.as_deref()?)),
        StepInput::Context { .. } => None,
    }
}

/// Parses one ONBUILD trigger of a base (`RUN make`, `COPY . /src`...).
fn parse_trigger(trigger: &str, span: Span) -> Result<Instruction, PlanError> {
    rbuild_dockerfile::parse_trigger(trigger)
        .map(|parsed| parsed.node)
        .map_err(|e| {
            PlanError::at(
                span,
                format!(
                    "ONBUILD trigger {trigger:?} of the base image: {}",
                    e.message
                ),
            )
        })
}

fn record_lookups(
    observed: &mut BTreeMap<String, Option<String>>,
    lookups: &Lookups,
    env: &[(String, String)],
) {
    for name in &lookups.found {
        let value = env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        observed.insert(name.clone(), value);
    }
    for name in &lookups.missing {
        observed.entry(name.clone()).or_insert(None);
    }
}

/// The most bytes of names and values a stage's environment (its ARGs and ENVs) may hold:
/// 4 MiB. Each instruction expands to at most
/// [`MAX_EXPANSION_BYTES`](rbuild_dockerfile::MAX_EXPANSION_BYTES); this bounds the sum, so a
/// thousand `ENV` lines copying a large value cannot exhaust memory either.
pub const MAX_ENVIRONMENT_BYTES: usize = 4 << 20;

/// The most bytes of ARG/ENV names and values all the steps of a plan may record together
/// (64 MiB): each step keeps the values it observes (for its cache key and `rbuild plan`), so
/// without this bound a few large values seen by thousands of steps would multiply.
pub const MAX_PLAN_RECORDED_BYTES: usize = 64 << 20;

/// Refuses an environment larger than [`MAX_ENVIRONMENT_BYTES`] after `keyword` at `span`.
fn check_environment_size(
    env: &[(String, String)],
    span: Span,
    keyword: &str,
) -> Result<(), PlanError> {
    let total: usize = env.iter().map(|(k, v)| k.len() + v.len() + 1).sum();
    if total > MAX_ENVIRONMENT_BYTES {
        return Err(PlanError::at(
            span,
            format!(
                "{keyword}: the stage's environment grows past {} MiB",
                MAX_ENVIRONMENT_BYTES >> 20
            ),
        ));
    }
    Ok(())
}

/// Sets `name` in an ordered environment: replaced in place when present (as BuildKit's
/// addEnv keeps the position), appended otherwise.
fn set_var(env: &mut Vec<(String, String)>, name: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_string(), value)),
    }
}

fn split_env(entry: &str) -> (String, String) {
    match entry.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (entry.to_string(), String::new()),
    }
}

/// `WORKDIR` semantics: a relative path is joined to the current one (`/` when there is none);
/// the result is cleaned (`.`/`..`/duplicate slashes removed) and absolute. The engine applies
/// WORKDIR with this same function.
pub fn normalize_workdir(current: &str, path: &str) -> String {
    if path.starts_with('/') {
        clean_abs(path)
    } else {
        clean_abs(&format!("{current}/{path}"))
    }
}

/// Go's `path.Clean` for an absolute path: `.`, `..` and repeated slashes resolved, never above
/// `/`.
pub fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize_workdir;

    #[test]
    fn workdir_is_joined_and_cleaned() {
        assert_eq!(normalize_workdir("/", "app"), "/app");
        assert_eq!(normalize_workdir("/app", "src/../lib/"), "/app/lib");
        assert_eq!(normalize_workdir("/app", "/"), "/");
        assert_eq!(normalize_workdir("/a", "/b//c/."), "/b/c");
        assert_eq!(normalize_workdir("/", ".."), "/");
        assert_eq!(normalize_workdir("", "a"), "/a");
    }
}
