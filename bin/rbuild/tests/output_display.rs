//! Issue 16 item 6 through the binary: `[stage n/m] INSTRUCTION args` step labels, JSON logs
//! carrying warnings, library log events at `-v debug` and the final error as events, no
//! panic when stdout's reader goes away, `--help` for users, `rbuild version` with its commit.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

fn build(dir: &Path, dockerfile: &str, args: &[&str]) -> Output {
    let context = dir.join("ctx");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("a.txt"), "a\n").unwrap();
    fs::write(context.join("Dockerfile"), dockerfile).unwrap();
    Command::new(RBUILD)
        .arg("--context")
        .arg(&context)
        .arg("--cache-dir")
        .arg(dir.join("store"))
        .arg("--no-push")
        .args(args)
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn events(output: &Output) -> Vec<serde_json::Value> {
    stderr(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({"plain": l})))
        .collect()
}

#[test]
fn steps_show_stage_position_and_the_instruction() {
    let dir = tempfile::tempdir().unwrap();
    let output = build(
        dir.path(),
        "FROM scratch AS build\nCOPY a.txt \\\n     /a.txt\nLABEL org.example.x=y\n\
         FROM scratch\nCOPY --from=build /a.txt /b.txt\n",
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    for wanted in [
        "[build 2/3] COPY a.txt /a.txt",
        "[build 3/3] LABEL org.example.x=y",
        "[stage-1 2/2] COPY --from=build /a.txt /b.txt",
    ] {
        assert!(err.contains(wanted), "no {wanted:?} in:\n{err}");
    }
}

#[test]
fn json_log_carries_warnings_debug_events_and_the_final_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = build(
        dir.path(),
        "FROM scratch\nMAINTAINER someone\nCOPY a.txt /a.txt\n",
        &["--log-format", "json", "-v", "debug"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let events = events(&output);
    let plain: Vec<_> = events.iter().filter(|e| e.get("plain").is_some()).collect();
    assert!(plain.is_empty(), "plain lines in a JSON log: {plain:?}");
    assert!(
        events.iter().any(|e| e["event"] == "warning"
            && e["text"]
                .as_str()
                .unwrap()
                .contains("Maintainer instruction is deprecated")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["level"] == "DEBUG"),
        "-v debug shows the libraries' debug events: {events:?}"
    );
    let started = events
        .iter()
        .find(|e| e["event"] == "step_started")
        .unwrap();
    assert_eq!(started["text"], "MAINTAINER someone");
    assert_eq!(started["position"], 2);
    assert_eq!(started["count"], 3);

    let failed = build(
        dir.path(),
        "FROM scratch\nCOPY missing.txt /m\n",
        &["--log-format", "json"],
    );
    assert_eq!(failed.status.code(), Some(1));
    let events = self::events(&failed);
    let error = events
        .iter()
        .find(|e| e["event"] == "error")
        .unwrap_or_else(|| panic!("no error event: {events:?}"));
    assert!(
        error["text"].as_str().unwrap().contains("missing.txt"),
        "{error}"
    );
    assert_eq!(error["exit_code"], 1);
    // A person reading the raw log still finds the error as its last line.
    assert!(events.last().unwrap()["plain"]
        .as_str()
        .unwrap()
        .starts_with("error: "));
}

#[test]
fn a_closed_stdout_ends_output_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut dockerfile = String::from("FROM scratch\n");
    for i in 0..3000 {
        dockerfile.push_str(&format!("LABEL n{i}=v{i}\n"));
    }
    let path = dir.path().join("Dockerfile");
    fs::write(&path, dockerfile).unwrap();
    let mut child = Command::new(RBUILD)
        .args(["plan", "-f"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -c 10`: read a little, then go away.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(status.code(), Some(101), "{err}");
}

#[test]
fn help_is_for_users_and_version_names_the_commit() {
    let help = Command::new(RBUILD).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.starts_with("Build a container image from a Dockerfile"),
        "{help}"
    );
    assert!(
        !help.contains("thin script") && !help.contains("library"),
        "{help}"
    );

    let version = Command::new(RBUILD).arg("version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    // rbuild 0.1.0 (commit 0123456789ab[-dirty], built 2026-12-06)
    let commit = version
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.split([',', '-']).next())
        .unwrap_or_default();
    let in_git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        assert!(
            commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{version}"
        );
    } else {
        assert!(version.contains("(commit unknown,"), "{version}");
    }
    let date = version.split("built ").nth(1).unwrap_or_default();
    assert!(date.len() >= 10 && date.as_bytes()[4] == b'-', "{version}");
    let flag = Command::new(RBUILD).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&flag.stdout), version);
}
