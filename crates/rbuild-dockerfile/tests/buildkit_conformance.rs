//! BuildKit's own parser and word-expansion test data, run against rbuild-dockerfile.
//!
//! The data lives outside the repository, in `../shared/conformance/buildkit` next to the
//! workspace (override with `RBUILD_BUILDKIT_CONFORMANCE`). When `CI` is set and the folder is
//! missing the test fails; elsewhere it prints a notice and passes.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use rbuild_dockerfile::{expand_word, expand_words, parse, parse_syntax};
use std::fs;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    match std::env::var_os("RBUILD_BUILDKIT_CONFORMANCE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/buildkit"),
    }
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[derive(Default)]
struct Tally {
    passed: usize,
    total: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        self.total += 1;
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(failure());
        }
    }
}

/// (a) every `testfiles/<case>`: our first-pass dump equals BuildKit's `result`.
fn testfiles(root: &Path, t: &mut Tally) {
    for dir in sorted_dirs(&root.join("testfiles")) {
        let case = name(&dir);
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let expected = fs::read_to_string(dir.join("result")).expect("result");
        match parse_syntax(&text) {
            Ok(tree) => {
                let got = tree.dump();
                t.check(got == expected, || {
                    format!(
                        "testfiles/{case}: dump differs\n--- expected\n{expected}--- got\n{got}"
                    )
                });
            }
            Err(e) => t.check(false, || format!("testfiles/{case}: rejected: {e}")),
        }
    }
}

/// (b) every `testfiles-negative/<case>` is rejected.
fn negative(root: &Path, t: &mut Tally) {
    for dir in sorted_dirs(&root.join("testfiles-negative")) {
        let case = name(&dir);
        let text = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        match parse(&text) {
            Err(e) => {
                println!("  negative/{case}: {}", e.render("Dockerfile"));
                t.check(true, String::new);
            }
            Ok(_) => t.check(false, || format!("testfiles-negative/{case}: accepted")),
        }
    }
}

/// (c) `testfile-line/Dockerfile`: BuildKit's `TestLineInformation` expectations.
fn line_info(root: &Path, t: &mut Tally) {
    let text = fs::read_to_string(root.join("testfile-line/Dockerfile")).expect("Dockerfile");
    let expected = [(5, 5), (11, 12), (17, 31)];
    match parse_syntax(&text) {
        Ok(tree) => {
            let got: Vec<(usize, usize)> = tree
                .nodes
                .iter()
                .map(|n| (n.span.line, n.span.end_line))
                .collect();
            t.check(got == expected, || {
                format!("testfile-line: expected {expected:?}, got {got:?}")
            });
        }
        Err(e) => t.check(false, || format!("testfile-line: rejected: {e}")),
    }
}

/// (d) every `A` and `U` row of `shell/envVarTest`.
fn env_var_test(root: &Path, t: &mut Tally) {
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let text = fs::read_to_string(root.join("shell/envVarTest")).expect("envVarTest");
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "envVarTest line {}: {line:?}", i + 1);
        let platform = parts[0].trim();
        if platform == "W" {
            continue;
        }
        let source = parts[1].trim();
        let expected = parts[2].trim();
        let got = expand_word(source, &env, '\\');
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok((w, _)), e) => e != "error" && w == e,
            _ => false,
        };
        t.check(ok, || {
            format!(
                "envVarTest:{}: {source:?} expected {expected:?}, got {got:?}",
                i + 1
            )
        });
    }
}

/// (e) every row of `shell/wordsTest`.
fn words_test(root: &Path, t: &mut Tally) {
    let text = fs::read_to_string(root.join("shell/wordsTest")).expect("wordsTest");
    let mut env: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        if parts.len() != 2 {
            continue;
        }
        let input = parts[0].trim();
        let expected: Vec<String> = parts[1]
            .trim_start_matches(' ')
            .split(',')
            .map(str::to_string)
            .collect();
        let got = match expand_words(input, &env, '\\') {
            Ok((w, _)) => w,
            Err(_) => vec!["error".to_string()],
        };
        t.check(got == expected, || {
            format!(
                "wordsTest:{}: {input:?} expected {expected:?}, got {got:?}",
                i + 1
            )
        });
    }
}

/// Runs one kind of case, counting into the tally.
type CaseKind = fn(&Path, &mut Tally);

#[test]
fn buildkit_conformance() {
    let root = data_dir();
    if !root.is_dir() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "BuildKit conformance data missing at {} (CI is set)",
                root.display()
            );
        }
        eprintln!(
            "skipping: BuildKit conformance data not found at {}",
            root.display()
        );
        return;
    }
    let kinds: [(&str, CaseKind); 5] = [
        ("testfiles", testfiles),
        ("testfiles-negative", negative),
        ("testfile-line", line_info),
        ("envVarTest (A+U)", env_var_test),
        ("wordsTest", words_test),
    ];
    let mut failures = Vec::new();
    for (kind, run) in kinds {
        let mut t = Tally::default();
        run(&root, &mut t);
        println!(
            "buildkit conformance {kind}: {}/{} cases pass",
            t.passed, t.total
        );
        assert!(
            t.total > 0,
            "no {kind} cases found under {}",
            root.display()
        );
        failures.extend(t.failures);
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
