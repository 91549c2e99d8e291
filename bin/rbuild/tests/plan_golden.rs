//! `rbuild plan` against the golden files in `testdata/plan/`:
//! - `ok/<case>/`: `Dockerfile`, optional `args` (extra flags), `plan.json` (the expected plan,
//!   `build_platform` left out since it is the host's) and optional `stderr` (the warnings);
//! - `errors/<case>/`: `Dockerfile`, optional `args`, `expected`: the one line on stderr.
//!
//! `RBUILD_BLESS=1 cargo test -p rbuild-cli --test plan_golden` rewrites the expected files;
//! review the diff before committing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/plan")
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(testdata().join(kind))
        .expect("testdata/plan exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.join("Dockerfile").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases under testdata/plan/{kind}");
    dirs
}

fn run_plan(case: &Path) -> std::process::Output {
    let extra = std::fs::read_to_string(case.join("args")).unwrap_or_default();
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .current_dir(case)
        .args(["plan", "-f", "Dockerfile", "--platform", "linux/amd64"])
        .args(extra.split_whitespace())
        .env_remove("UID")
        .output()
        .expect("rbuild runs")
}

fn blessing() -> bool {
    std::env::var_os("RBUILD_BLESS").is_some()
}

fn without_build_platform(mut plan: Value) -> Value {
    plan.as_object_mut()
        .expect("the plan is a JSON object")
        .remove("build_platform");
    plan
}

#[test]
fn plans_match_golden_files() {
    let mut failures = Vec::new();
    for case in cases("ok") {
        let out = run_plan(&case);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            failures.push(format!(
                "{}: exit {:?}: {stderr}",
                case.display(),
                out.status
            ));
            continue;
        }
        let actual = without_build_platform(serde_json::from_str(&stdout).expect("JSON on stdout"));
        let golden = case.join("plan.json");
        let golden_stderr = case.join("stderr");
        if blessing() {
            std::fs::write(
                &golden,
                serde_json::to_string_pretty(&actual).unwrap() + "\n",
            )
            .unwrap();
            if stderr.is_empty() {
                let _ = std::fs::remove_file(&golden_stderr);
            } else {
                std::fs::write(&golden_stderr, stderr.as_bytes()).unwrap();
            }
            continue;
        }
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&golden)
                .unwrap_or_else(|_| panic!("{} missing", golden.display())),
        )
        .expect("golden JSON");
        if actual != expected {
            failures.push(format!(
                "{}: plan differs from plan.json:\n{}",
                case.display(),
                serde_json::to_string_pretty(&actual).unwrap()
            ));
        }
        let expected_stderr = std::fs::read_to_string(&golden_stderr).unwrap_or_default();
        if stderr != expected_stderr {
            failures.push(format!(
                "{}: stderr {stderr:?} != expected {expected_stderr:?}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn bad_input_gives_one_located_line_and_exit_1() {
    let mut failures = Vec::new();
    for case in cases("errors") {
        let out = run_plan(&case);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let expected_file = case.join("expected");
        if blessing() {
            std::fs::write(&expected_file, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|_| panic!("{} missing", expected_file.display()));
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, want 1",
                case.display(),
                out.status.code()
            ));
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{}: printed a plan on error", case.display()));
        }
        if stderr.lines().count() != 1 {
            failures.push(format!(
                "{}: want one line on stderr, got {stderr:?}",
                case.display()
            ));
        }
        if stderr != expected {
            failures.push(format!(
                "{}: stderr {stderr:?} != expected {expected:?}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_dockerfile_is_one_clear_line() {
    let dir = std::env::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .current_dir(&dir)
        .args(["plan", "-f", "no-such-Dockerfile-here"])
        .output()
        .expect("rbuild runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "no-such-Dockerfile-here: no such Dockerfile (pass its path with -f/--dockerfile)\n"
    );
}
