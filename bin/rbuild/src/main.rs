//! `rbuild`: build OCI images from Dockerfiles without a daemon.
//!
//! The binary only parses flags, calls the `rbuild` library and prints; every decision is made in
//! the library. Exit codes: 0 on success; a failing RUN's own exit code; 1 on any other error,
//! with a one-line cause on stderr.

// Only the binary writes to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod build_cmd;
mod cli;
mod error_text;
mod kaniko_flags;
mod logging;
mod login_cmd;
mod plan_cmd;
mod progress;
mod prune_cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The RUN sandbox re-executes this binary with a hidden first argument: that process does
    // the namespace work and never reaches the CLI.
    rbuild::run_sandbox_helper_if_requested();
    // A non-root user with subordinate id ranges builds inside its own user namespace (as
    // `buildah unshare` does), so it can read and delete what RUN steps chown. Returns in the
    // child, or at once when not needed; the parent exits with the child's code.
    if let Err(e) = rbuild::sandbox::enter_rootless_userns() {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }

    let cli = cli::Cli::parse();
    let result = match &cli.command {
        Some(cli::Command::Plan(args)) => plan_cmd::run(args),
        Some(cli::Command::Login(args)) => login_cmd::run(args),
        Some(cli::Command::Prune(args)) => prune_cmd::run(args),
        Some(cli::Command::Version) => print_stdout(&format!("rbuild {}\n", cli::VERSION)),
        None => match build(&cli.build) {
            Ok(()) => Ok(()),
            Err(failure) => {
                let line = error_text::one_line(&failure.error);
                // Log collectors get the error as an event; a person reading the log still
                // finds it as the last plain line.
                if cli.build.log_format == cli::LogFormatArg::Json {
                    progress::Progress::new(cli.build.log_format, cli.build.kaniko.log_timestamp)
                        .error(&line, failure.code);
                }
                eprintln!("error: {line}");
                return ExitCode::from(failure.code);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", error_text::one_line(&err));
            ExitCode::from(1)
        }
    }
}

/// Writes machine output to stdout; a reader that went away (`rbuild plan | head`) ends the
/// output quietly instead of panicking.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// The build, with the libraries' log events routed to stderr first.
fn build(args: &cli::BuildArgs) -> Result<(), build_cmd::BuildFailure> {
    logging::init(&args.verbosity, args.log_format, args.kaniko.log_timestamp);
    build_cmd::run(args)
}
