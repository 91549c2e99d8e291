//! The layer-plan IR and the planner.
//!
//! [`plan`] takes a Dockerfile parsed by `rbuild-dockerfile` and the build's options and
//! returns a [`Plan`]: plain serde data that `rbuild plan` prints as JSON and the engine walks.
//! Planning follows BuildKit's semantics and does no I/O: base images are looked up through a
//! [`BaseResolver`].
//!
//! - **ARG scoping**: meta ARGs (before the first `FROM`) are visible to `FROM` lines only,
//!   unless a stage re-declares them with `ARG NAME`; a `--build-arg` wins over a default; the
//!   platform args (`TARGETPLATFORM`, `BUILDARCH`, ...) are predefined in the global scope;
//!   stages built `FROM` another stage inherit its ARGs and ENV; build args no ARG declares are
//!   reported as a warning; proxy args are never persisted.
//! - **Stages**: `FROM scratch`, an image, or an earlier stage; `COPY --from` and
//!   `RUN --mount=from=` by name, index or image; ONBUILD triggers of the base run first; the
//!   stage graph is pruned to the target (default: the last stage), dependencies first.
//! - **Keys**: every step gets a step digest (the expanded instruction, exactly the ARG/ENV
//!   values it observes, the platform) and, where no engine-only input is involved, a cache key
//!   chained from its parent's ([`chain_key`]).
//!
//! ```
//! use rbuild_plan::{plan, OfflineResolver, PlanOptions};
//!
//! let dockerfile = rbuild_dockerfile::parse(
//!     "ARG BASE=busybox\nFROM $BASE AS build\nARG GREETING=hello\nRUN echo $GREETING > /g\n\
//!      FROM scratch\nCOPY --from=build /g /g\n",
//! )
//! .unwrap();
//! let plan = plan(&dockerfile, &PlanOptions::default(), &OfflineResolver).unwrap();
//! assert_eq!(plan.target, 1);
//! assert_eq!(plan.stages.len(), 2);
//! assert_eq!(plan.stages[1].depends_on, vec![0]);
//! ```

mod args;
mod error;
mod key;
mod key_inputs;
mod model;
mod planner;
mod resolver;
mod suggest;

pub use args::{is_platform_arg, is_proxy_arg, platform_args, PROXY_ARGS};
pub use error::PlanError;
pub use key::{
    chain_key, image_base_key, image_input_key, scratch_base_key, stage_input_key, url_input_key,
    KeyEncoder, KEY_VERSION,
};
pub use key_inputs::{
    explain_miss, value_digest, KeyInputs, MissReason, ParentKind, StepInputs, MAX_DESCRIBED_FILES,
};
pub use model::{Base, Plan, PlanWarning, PlannedStage, Step, StepInput};
pub use planner::{
    clean_abs, normalize_workdir, plan, PlanOptions, DEFAULT_PATH, MAX_ENVIRONMENT_BYTES,
    MAX_PLAN_RECORDED_BYTES,
};
pub use resolver::{BaseImage, BaseResolver, OfflineResolver, Resolution, StaticResolver};
