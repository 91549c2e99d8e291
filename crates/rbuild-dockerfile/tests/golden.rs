//! Golden files under `testdata/`: every `parse/*.Dockerfile` parses to the JSON in the
//! matching `.json`, and every `errors/*.Dockerfile` fails with the one-line message in the
//! matching `.err`. Run with `RBUILD_UPDATE_GOLDEN=1` to rewrite them after a deliberate
//! change (and review the diff).

use rbuild_dockerfile::{parse, Dockerfile};
use std::fs;
use std::path::{Path, PathBuf};

fn cases(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no cases in {}", dir.display());
    out
}

fn compare(golden: &Path, got: &str, failures: &mut Vec<String>) {
    if std::env::var_os("RBUILD_UPDATE_GOLDEN").is_some() {
        fs::write(golden, got).expect("write golden");
        return;
    }
    match fs::read_to_string(golden) {
        Ok(want) if want == got => {}
        Ok(want) => failures.push(format!(
            "{}:\n--- want\n{want}\n--- got\n{got}",
            golden.display()
        )),
        Err(e) => failures.push(format!("{}: {e}", golden.display())),
    }
}

#[test]
fn parse_goldens() {
    let mut failures = Vec::new();
    for case in cases("parse") {
        let text = fs::read_to_string(&case).expect("read");
        let got = match parse(&text) {
            Ok(df) => {
                let json = serde_json::to_string_pretty(&df).expect("json");
                let back: Dockerfile = serde_json::from_str(&json)
                    .unwrap_or_else(|e| panic!("{}: JSON does not read back: {e}", case.display()));
                assert_eq!(
                    back,
                    df,
                    "{}: JSON round trip changed the value",
                    case.display()
                );
                json + "\n"
            }
            Err(e) => format!("unexpected error: {}\n", e.render("Dockerfile")),
        };
        compare(&case.with_extension("json"), &got, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_goldens() {
    let mut failures = Vec::new();
    for case in cases("errors") {
        let text = fs::read_to_string(&case).expect("read");
        let got = match parse(&text) {
            Ok(_) => "unexpectedly parsed\n".to_string(),
            Err(e) => e.render("Dockerfile") + "\n",
        };
        compare(&case.with_extension("err"), &got, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
