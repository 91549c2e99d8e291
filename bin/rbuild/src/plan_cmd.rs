//! `rbuild plan`.

use crate::args::{parse_build_args, read_dockerfile_text};
use crate::cli::PlanArgs;
use anyhow::{anyhow, Result};
use rbuild::oci::Platform;
use rbuild::{plan_dockerfile, PlanRequest};

pub fn run(args: &PlanArgs) -> Result<()> {
    let text = read_dockerfile_text(&args.dockerfile)?;
    let request = PlanRequest {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        platform: args
            .platform
            .as_deref()
            .map(|p| Platform::parse(p).map_err(|e| anyhow!("--platform {p}: {e}")))
            .transpose()?,
    };
    let name = &args.dockerfile;
    let planned = plan_dockerfile(&text, &request).map_err(|e| anyhow!(e.render(name)))?;
    for warning in &planned.plan.warnings {
        eprintln!("{}", warning.render(name));
    }
    crate::print_stdout(&format!(
        "{}\n",
        serde_json::to_string_pretty(&planned.plan)?
    ))
}
