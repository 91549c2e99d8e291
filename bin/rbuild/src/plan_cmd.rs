//! `rbuild plan`.

use crate::cli::PlanArgs;
use anyhow::{anyhow, Context, Result};
use rbuild::oci::Platform;
use rbuild::{plan_dockerfile, PlanRequest};
use std::collections::BTreeMap;
use std::io::Read;

pub fn run(args: &PlanArgs) -> Result<()> {
    let text = read_dockerfile(&args.dockerfile)?;
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
    println!("{}", serde_json::to_string_pretty(&planned.plan)?);
    Ok(())
}

fn read_dockerfile(path: &str) -> Result<String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the Dockerfile from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow!("{path}: no such Dockerfile (pass its path with -f/--dockerfile)")
        }
        _ => anyhow!("{path}: cannot read the Dockerfile: {e}"),
    })
}

/// `NAME=value`, or a bare `NAME` taking its value from the environment (as Kaniko and docker
/// do; a bare name that is not set in the environment is left out).
fn parse_build_args(raw: &[String]) -> Result<BTreeMap<String, String>> {
    let mut args = BTreeMap::new();
    for item in raw {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (item.as_str(), std::env::var(item).ok()),
        };
        if name.is_empty() {
            return Err(anyhow!(
                "--build-arg {item:?}: the name is empty (use NAME=value)"
            ));
        }
        if let Some(value) = value {
            args.insert(name.to_string(), value);
        }
    }
    Ok(args)
}
