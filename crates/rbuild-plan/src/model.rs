//! The layer-plan IR: plain serde data, printed by `rbuild plan` and walked by the engine.

use rbuild_dockerfile::{Instruction, Span};
use rbuild_oci::{Digest, Platform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to build: the stages the target needs, in an order where every stage comes after the
/// stages it depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Index of the target stage (the last stage unless `--target` named another).
    pub target: usize,
    /// The platform images are built for (`TARGETPLATFORM`).
    pub target_platform: Platform,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// The stages the target needs, dependencies first; stages the target does not need are
    /// pruned and never built.
    pub stages: Vec<PlannedStage>,
    /// Non-fatal findings, from the parser and the planner.
    pub warnings: Vec<PlanWarning>,
}

impl Plan {
    /// The planned stage with file index `index`, if the target needs it.
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.index == index)
    }
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStage {
    /// Position of the stage in the Dockerfile (0-based).
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// Where the stage's `FROM` stands.
    pub span: Span,
    /// The platform this stage is built for (`FROM --platform`, else the target platform).
    pub platform: Platform,
    /// What the stage starts from.
    pub base: Base,
    /// File indices of the stages this one needs (its base stage, `COPY --from`,
    /// `RUN --mount=from=`), ascending.
    pub depends_on: Vec<usize>,
    /// The stage's environment after its last step (`NAME=value`, the image config's `Env`).
    pub env: Vec<String>,
    /// The steps, ONBUILD triggers of the base first.
    pub steps: Vec<Step>,
}

/// The starting point of a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An image from a registry or the store.
    Image {
        /// The normalised reference (`docker.io/library/busybox:latest`).
        reference: String,
        /// The manifest digest, when the resolver knew it.
        digest: Option<Digest>,
    },
    /// An earlier stage of the same Dockerfile.
    Stage {
        /// Its file index.
        index: usize,
    },
}

/// One step: an instruction after expansion, with what its cache key is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Where the instruction stands (for an ONBUILD trigger: the stage's `FROM`).
    pub span: Span,
    /// True for an ONBUILD trigger inherited from the base.
    pub onbuild: bool,
    /// The instruction with every word BuildKit expands already expanded.
    pub instruction: Instruction,
    /// True when the step changes the filesystem (RUN, COPY, ADD, WORKDIR): it makes a layer.
    pub layer: bool,
    /// For `RUN`: the build ARGs in scope, in declaration order, with their values, which the
    /// command sees in its environment and its history entry lists (proxy args are never
    /// listed: they are passed but never persisted). Empty for other instructions.
    pub args: Vec<(String, String)>,
    /// Exactly the ARG/ENV values the step can observe: what its expansion read (unset names as
    /// `null`), plus every ARG in scope for `RUN`.
    pub observed: BTreeMap<String, Option<String>>,
    /// What the engine must hash into the key besides the step itself.
    pub inputs: Vec<StepInput>,
    /// Digest of the expanded instruction, the observed values and the platform.
    pub step_digest: Digest,
    /// `chain_key(parent key, step digest, input digests)`, when every part is known at plan
    /// time; `None` when it depends on content only the engine can hash (context files, a URL,
    /// an unresolved base image).
    pub cache_key: Option<Digest>,
}

/// Content a step reads from outside the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StepInput {
    /// Files of the build context (after `.dockerignore`): `COPY`/`ADD` sources or a
    /// `RUN --mount=type=bind` source.
    Context {
        /// Source paths or patterns as written (after expansion).
        paths: Vec<String>,
    },
    /// Files of another stage of this Dockerfile.
    Stage {
        /// Its file index.
        index: usize,
        /// Source paths.
        paths: Vec<String>,
    },
    /// Files of an image (`COPY --from=image`, `RUN --mount=from=image`).
    Image {
        /// The normalised reference.
        reference: String,
        /// Its digest when known.
        digest: Option<Digest>,
        /// Source paths.
        paths: Vec<String>,
    },
    /// A remote file of `ADD`.
    Url {
        /// The URL.
        url: String,
        /// `--checksum`, when given.
        checksum: Option<String>,
    },
}

/// A warning with the place it concerns, when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanWarning {
    /// Rule name (BuildKit's where it has one).
    pub rule: String,
    /// Human-readable text.
    pub message: String,
    /// Where, if the warning concerns a line.
    pub span: Option<Span>,
}

impl PlanWarning {
    /// The one-line form the CLI prints (`Dockerfile:3:1: warning: ...`).
    pub fn render(&self, file_name: &str) -> String {
        match &self.span {
            Some(span) => format!(
                "{file_name}:{}:{}: warning: {}",
                span.line, span.column, self.message
            ),
            None => format!("{file_name}: warning: {}", self.message),
        }
    }
}
