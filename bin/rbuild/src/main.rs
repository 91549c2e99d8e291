//! `rbuild`: build OCI images from Dockerfiles without a daemon.
//!
//! The binary only parses flags, calls the `rbuild` library and prints; every decision is made in
//! the library. Exit codes: 0 on success, 1 on any error (with a one-line cause on stderr).

// Only the binary writes to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod plan_cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Plan(args) => plan_cmd::run(&args),
        cli::Command::Version => {
            println!("rbuild {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err:#}");
            ExitCode::from(1)
        }
    }
}
