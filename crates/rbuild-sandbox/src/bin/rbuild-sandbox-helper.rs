//! A tiny binary around `rbuild-sandbox`: the helper that the tests re-execute, and a driver
//! for running a spec by hand or as another user:
//!
//! - `rbuild-sandbox-helper run SPEC.json [--isolation userns|chroot] [--single-id]`: runs the
//!   step, prints its output prefixed by `out: ` / `err: `, exits with the step's code.
//! - `rbuild-sandbox-helper detect [--isolation MODE]`: prints the chosen mode and what its
//!   probe found, or the error.
//! - `--rootless-userns` first enters the builder's own user namespace
//!   ([`rbuild_sandbox::enter_rootless_userns`]); `--stat PATH` prints `stat: UID:GID PATH`
//!   after the step, as the builder sees it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use rbuild_sandbox::{Isolation, RunSpec, Sandbox, Stream};

fn main() -> ExitCode {
    rbuild_sandbox::run_helper_if_requested();
    if std::env::args().any(|a| a == "--rootless-userns") {
        if let Err(e) = rbuild_sandbox::enter_rootless_userns() {
            eprintln!("error: {e}");
            return ExitCode::from(125);
        }
    }
    match drive(std::env::args().skip(1).collect()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(125)
        }
    }
}

fn drive(args: Vec<String>) -> Result<u8, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut builder = Sandbox::builder().helper(exe);
    let mut rest = Vec::new();
    let mut stats = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--isolation" => {
                let v = it.next().ok_or("--isolation needs a value")?;
                builder = builder.isolation(v.parse::<Isolation>().map_err(|e| e.to_string())?);
            }
            "--single-id" => builder = builder.force_single_id(true),
            "--rootless-userns" => {}
            "--stat" => stats.push(it.next().ok_or("--stat needs a path")?),
            _ => rest.push(a),
        }
    }
    match rest.first().map(String::as_str) {
        Some("detect") => {
            let sandbox = builder.build().map_err(|e| e.to_string())?;
            let report = sandbox.probe_report();
            println!(
                "{} fresh_proc={} overlay={}",
                sandbox.isolation(),
                report.fresh_proc,
                report.overlay
            );
            Ok(0)
        }
        Some("run") => {
            let path = rest.get(1).ok_or("run needs a spec file")?;
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let spec: RunSpec = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            let sandbox = builder.build().map_err(|e| e.to_string())?;
            let status = sandbox
                .run(&spec, |l| {
                    let tag = if l.stream == Stream::Stdout { "out" } else { "err" };
                    println!("{tag}: {}", String::from_utf8_lossy(l.bytes));
                })
                .map_err(|e| e.to_string())?;
            for path in &stats {
                use std::os::unix::fs::MetadataExt;
                let md = std::fs::symlink_metadata(path).map_err(|e| format!("{path}: {e}"))?;
                println!("stat: {}:{} {path}", md.uid(), md.gid());
            }
            Ok(u8::try_from(status.code).unwrap_or(255))
        }
        _ => Err("usage: rbuild-sandbox-helper (run SPEC.json | detect) [--isolation MODE] [--single-id] [--rootless-userns] [--stat PATH]...".into()),
    }
}
