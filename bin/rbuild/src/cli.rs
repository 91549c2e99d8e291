//! The command line, with Kaniko's flag names where a flag has a Kaniko twin.

use clap::{Args, Parser, Subcommand};

/// Daemonless OCI image builder.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and plan a Dockerfile, print the layer plan as JSON (no network, nothing built).
    Plan(PlanArgs),
    /// Print rbuild's version.
    Version,
}

/// Flags of `rbuild plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Dockerfile to plan (`-` reads standard input).
    #[arg(short = 'f', long = "dockerfile", default_value = "Dockerfile")]
    pub dockerfile: String,
    /// A build argument `NAME=value`; a bare `NAME` takes the value of the environment
    /// variable of that name. Repeatable.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// The platform to build for, `os/arch[/variant]` (default: this machine's).
    #[arg(long, alias = "custom-platform")]
    pub platform: Option<String>,
}
