//! The rbuild side of the conformance suite (issue 8): every case of `testdata/conformance` is
//! built by the `rbuild` binary (`--no-push --oci-layout-path`, bases pulled from the
//! `ConformanceEnv` registry, the case's build args, target and labels), then
//! `ConformanceEnv::run_case` checks the case's `expect` lines and compares the image with
//! Buildah's, path by path and config field by config field.
//!
//! `RBUILD_CONFORMANCE_CASES=a,b` runs only those cases. Cases listed in [`KNOWN_ENGINE_BUGS`]
//! are still built and must still fail: when one passes, the test says to remove it.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rbuild_testkit::conformance::{cases_dir, load_cases, Case};
use rbuild_testkit::ConformanceEnv;

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// Cases that fail because of an rbuild engine bug (reported to the lead): the case, the bug,
/// and a piece of the failure that shows it is still that bug (not some other failure).
const KNOWN_ENGINE_BUGS: &[(&str, &str, &str)] = &[];

/// The outcome of one case.
enum Outcome {
    Passed,
    Failed(String),
}

/// Builds `case` with the binary into an OCI layout and runs the comparison.
fn check_case(env: &ConformanceEnv, case: &Case, store: &Path) -> Outcome {
    let prepared = match env.prepare(case) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(format!("prepare: {e}")),
    };
    let mut command = Command::new(RBUILD);
    command
        .arg("--context")
        .arg(&prepared.context)
        .arg("--dockerfile")
        .arg(&prepared.dockerfile)
        .arg("--cache-dir")
        .arg(store)
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(&prepared.output)
        // No docker config: the bases come from the unauthenticated test registry.
        .env("DOCKER_CONFIG", store.join("no-docker-config"));
    for (name, value) in &prepared.build_args {
        command.arg("--build-arg").arg(format!("{name}={value}"));
    }
    for (name, value) in &prepared.labels {
        command.arg("--label").arg(format!("{name}={value}"));
    }
    if let Some(target) = &prepared.target {
        command.arg("--target").arg(target);
    }
    let output = match command.output() {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("run rbuild: {e}")),
    };
    if let Some(want) = case.expected_error() {
        // BuildKit refuses this Dockerfile (or a step of it fails): so must rbuild.
        let stderr = String::from_utf8_lossy(&output.stderr);
        return if output.status.success() {
            Outcome::Failed(format!("rbuild built it, but BuildKit fails with {want:?}"))
        } else if stderr.contains(want) {
            Outcome::Passed
        } else {
            Outcome::Failed(format!(
                "rbuild failed without {want:?} in its error output:\n{stderr}"
            ))
        };
    }
    if !output.status.success() {
        return Outcome::Failed(format!(
            "rbuild exited with {:?}:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    match env.run_case(case, &prepared.output) {
        Ok(()) => Outcome::Passed,
        Err(failure) => Outcome::Failed(failure.to_string()),
    }
}

// The per-case lines and the tally are the point of a long differential run.
#[allow(clippy::print_stderr)]
#[test]
fn rbuild_matches_buildah_on_every_conformance_case() {
    let Some(env) = ConformanceEnv::start_or_skip() else {
        return;
    };
    let only: Option<Vec<String>> = std::env::var("RBUILD_CONFORMANCE_CASES")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_owned).collect());
    let cases: Vec<Case> = load_cases(&cases_dir())
        .unwrap()
        .into_iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    let stores = tempfile::tempdir().unwrap();
    let results = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    // Two cases at a time, each worker with its own store (the bases are pulled once each).
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let store = stores.path().join(format!("store-{worker}"));
            let (results, next, cases, env) = (&results, &next, &cases, &env);
            scope.spawn(move || {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let case_started = Instant::now();
                    let outcome = check_case(env, case, &store);
                    eprintln!(
                        "conformance: {} {} in {:.1}s",
                        case.name,
                        match outcome {
                            Outcome::Passed => "passed",
                            Outcome::Failed(_) => "FAILED",
                        },
                        case_started.elapsed().as_secs_f64()
                    );
                    results.lock().unwrap().push((case.name.clone(), outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let passed = results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Passed))
        .count();
    eprintln!(
        "conformance: {passed}/{} cases pass in {:.1}s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    let mut problems = Vec::new();
    for (name, outcome) in &results {
        let known = KNOWN_ENGINE_BUGS.iter().find(|(case, _, _)| case == name);
        match (outcome, known) {
            (Outcome::Passed, Some((_, bug, _))) => problems.push(format!(
                "{name}: passes now; remove it from KNOWN_ENGINE_BUGS ({bug})"
            )),
            (Outcome::Failed(why), None) => problems.push(format!("{name}:\n{why}")),
            (Outcome::Failed(why), Some((_, bug, sign))) if why.contains(sign) => {
                eprintln!("conformance: {name} fails as known ({bug}):\n{why}");
            }
            (Outcome::Failed(why), Some((_, bug, sign))) => problems.push(format!(
                "{name}: known bug ({bug}) but the failure does not show {sign:?}:\n{why}"
            )),
            (Outcome::Passed, None) => {}
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}
