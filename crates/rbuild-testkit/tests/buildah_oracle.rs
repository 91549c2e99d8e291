//! Proves the oracle side of the conformance suite: every case of `testdata/conformance` that
//! Buildah can build is built by `buildah bud` from the busybox bases in a test registry, read
//! back as a snapshot, and checked against the case's `expect` file.
//!
//! `RBUILD_CONFORMANCE_CASES=name,name` runs only those cases.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rbuild_testkit::conformance::{cases_dir, load_cases, tally, tally_markdown, Case, Oracle};
use rbuild_testkit::expect::{check_expectations, Side};
use rbuild_testkit::ConformanceEnv;

#[test]
fn every_case_loads_and_the_suite_covers_30_cases() {
    let cases = load_cases(&cases_dir()).unwrap();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    for case in &cases {
        assert!(
            case.dir.join("context").is_dir() || !needs_context(case),
            "{}: no context/",
            case.name
        );
        if let Oracle::None(reason) = &case.oracle {
            assert!(
                !case.expectations.is_empty(),
                "{}: oracle none ({reason}) needs an expect file",
                case.name
            );
        }
    }
}

/// Every case says where BuildKit decides what its `expect` lines state, and the counts the
/// READMEs quote are the ones the case files give. `RBUILD_UPDATE_TALLY=1` rewrites the
/// blocks (testdata/conformance/README.md between `<!-- tally -->` markers, the project
/// README between `<!-- conformance -->` markers).
#[test]
fn every_case_cites_buildkit_and_the_readme_numbers_are_counted() {
    let cases = load_cases(&cases_dir()).unwrap();
    let uncited: Vec<&str> = cases
        .iter()
        .filter(|c| c.buildkit.is_empty() || c.expectations.is_empty())
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        uncited.is_empty(),
        "cases whose README lacks a `buildkit: <file> <function>` line or that have no expect file: {uncited:?}"
    );
    let t = tally(&cases);
    assert_eq!(t.cases, t.compared_with_buildah + t.expect_only);
    let summary = format!(
        "{} conformance cases, each stating BuildKit's result in `expect` lines with a reference to BuildKit's source: {} also built by Buildah 1.28 and compared with rbuild's image, {} checked by `expect` only (Buildah cannot build them, or builds them other than BuildKit)",
        t.cases, t.compared_with_buildah, t.expect_only
    );
    let update = std::env::var_os("RBUILD_UPDATE_TALLY").is_some();
    let mut stale = Vec::new();
    for (file, open, close, block) in [
        (
            cases_dir().join("README.md"),
            "<!-- tally -->\n",
            "<!-- /tally -->",
            tally_markdown(&t),
        ),
        (
            cases_dir().join("../../README.md"),
            "<!-- conformance -->",
            "<!-- /conformance -->",
            summary,
        ),
    ] {
        let text = std::fs::read_to_string(&file).unwrap();
        let (before, rest) = text
            .split_once(open)
            .unwrap_or_else(|| panic!("{}: no {open:?} marker", file.display()));
        let (current, after) = rest
            .split_once(close)
            .unwrap_or_else(|| panic!("{}: no {close:?} marker", file.display()));
        if current != block {
            if update {
                std::fs::write(&file, format!("{before}{open}{block}{close}{after}")).unwrap();
            } else {
                stale.push(file.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "counts out of date in {stale:?}: run `RBUILD_UPDATE_TALLY=1 cargo test -p rbuild-testkit --test buildah_oracle every_case_cites`"
    );
}

fn needs_context(case: &Case) -> bool {
    std::fs::read_to_string(case.dir.join("Dockerfile"))
        .map(|d| {
            d.lines().any(|l| {
                let l = l.trim_start().to_ascii_uppercase();
                (l.starts_with("COPY ") || l.starts_with("ADD ")) && !l.contains("--FROM=")
            })
        })
        .unwrap_or(false)
}

// Progress lines are the point of a long differential run.
#[allow(clippy::print_stderr)]
#[test]
fn buildah_builds_every_case_and_meets_its_expectations() {
    let Some(env) = ConformanceEnv::start_or_skip() else {
        return;
    };
    let only: Option<Vec<String>> = std::env::var("RBUILD_CONFORMANCE_CASES")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let cases: Vec<Case> = load_cases(&cases_dir())
        .unwrap()
        .into_iter()
        .filter(|c| c.oracle == Oracle::Buildah)
        .filter(|c| only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    let failures = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    // Two builds at a time: buildah with vfs is mostly copying and waiting on processes.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let case_started = Instant::now();
                    if let Err(failure) = check_case(&env, case) {
                        failures.lock().unwrap().push(failure);
                    }
                    eprintln!(
                        "oracle: {} built in {:.1}s",
                        case.name,
                        case_started.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    eprintln!(
        "oracle: {} cases built in {:.1}s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Builds one case with Buildah and checks the snapshot: not empty, and its `expect` lines.
fn check_case(env: &ConformanceEnv, case: &Case) -> Result<(), String> {
    if let Some(want) = case.expected_error() {
        // BuildKit fails on it; Buildah must fail too (its message is its own).
        return match env.oracle_tree(case) {
            Err(_) => Ok(()),
            Ok(_) => Err(format!(
                "{}: buildah built it, but BuildKit fails with {want:?}",
                case.name
            )),
        };
    }
    let tree = env
        .oracle_tree(case)
        .map_err(|e| format!("{}: {e}", case.name))?;
    if tree.entries.is_empty() {
        return Err(format!("{}: empty image", case.name));
    }
    let origin = format!("{}/expect", case.name);
    let failed = check_expectations(&tree, &case.expectations, &origin, Side::Oracle);
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}:\n    {}\n  image (without /bin and /etc):\n{}",
        case.name,
        failed.join("\n    "),
        tree.listing()
            .lines()
            .filter(|l| !l.starts_with("/bin/") && !l.starts_with("/etc/"))
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

/// Checks the `oracle: none` claims: Buildah 1.28 fails on each of those cases, or builds an
/// image that misses its `expect` lines. Ignored by default (it only re-proves READMEs):
/// `cargo test -p rbuild-testkit --test buildah_oracle -- --ignored`.
#[allow(clippy::print_stderr)]
#[test]
#[ignore]
fn buildah_really_cannot_build_the_oracle_none_cases() {
    let Some(env) = ConformanceEnv::start_or_skip() else {
        return;
    };
    let mut wrong = Vec::new();
    for case in load_cases(&cases_dir()).unwrap() {
        let Oracle::None(reason) = &case.oracle else {
            continue;
        };
        match env.oracle_tree(&case) {
            Err(e) => eprintln!("{}: buildah fails as stated ({reason}): {e}", case.name),
            Ok(tree) => {
                let failed =
                    check_expectations(&tree, &case.expectations, &case.name, Side::Oracle);
                if failed.is_empty() {
                    wrong.push(format!("{}: buildah builds it correctly", case.name));
                } else {
                    eprintln!(
                        "{}: buildah builds it wrongly: {}",
                        case.name,
                        failed.join("; ")
                    );
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
