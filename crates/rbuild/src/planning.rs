//! Dockerfile text → plan, the first user-facing step (`rbuild plan`).

use rbuild_oci::Platform;
use rbuild_plan::{BaseResolver, OfflineResolver, Plan, PlanError, PlanOptions};
use std::collections::BTreeMap;

/// What to plan: the options of `rbuild plan` (and, later, of a build).
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// `--build-arg NAME=value` pairs.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform` (default: the host's).
    pub platform: Option<Platform>,
}

/// A planned Dockerfile.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
}

/// Parses and plans `text` with no network access: base images stay unresolved (their `ENV`
/// and ONBUILD triggers are unknown until a build resolves them).
pub fn plan_dockerfile(text: &str, request: &PlanRequest) -> Result<Planned, PlanError> {
    plan_dockerfile_with(text, request, &OfflineResolver)
}

/// Like [`plan_dockerfile`], looking base images up through `resolver`.
pub fn plan_dockerfile_with(
    text: &str,
    request: &PlanRequest,
    resolver: &dyn BaseResolver,
) -> Result<Planned, PlanError> {
    let dockerfile = rbuild_dockerfile::parse(text)?;
    let options = PlanOptions {
        build_args: request.build_args.clone(),
        target: request.target.clone(),
        target_platform: request.platform.clone(),
        ..PlanOptions::default()
    };
    let plan = rbuild_plan::plan(&dockerfile, &options, resolver)?;
    Ok(Planned { plan })
}
