//! What the CLI prints when a step misses the cache (issue 14): one line per miss naming the
//! changed file, build arg (never its value) or missed parent step, and the same as a
//! `cache_miss` JSON event; `--no-cache` runs every step. Local store only (the explanation
//! comes from the store's step identity records), `FROM scratch` and COPY: no RUN, no
//! registry, nothing to skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

const DOCKERFILE: &str = "FROM scratch\n\
    ARG TAG\n\
    COPY src /src\n\
    COPY extra /extra-$TAG\n";

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("context");
        fs::create_dir_all(context.join("src")).unwrap();
        fs::write(context.join("src/main.rs"), "fn main() {}\n").unwrap();
        fs::write(context.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
        fs::write(context.join("extra"), "x\n").unwrap();
        fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
        Project { dir }
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    fn build(&self, extra: &[&str]) -> Output {
        let output = std::process::Command::new(RBUILD)
            .arg("--cache-dir")
            .arg(self.dir.path().join("store"))
            .arg("--context")
            .arg(self.context())
            .args(["--no-push", "--log-format", "text"])
            .args(extra)
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .output()
            .expect("run rbuild");
        assert!(output.status.success(), "{}", stderr(&output));
        output
    }

    fn write(&self, path: &str, text: &str) {
        fs::write(Path::new(&self.context()).join(path), text).unwrap();
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn miss_lines(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|l| l.contains(" missed: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_changed_file_is_named_and_the_next_step_names_its_parent() {
    let project = Project::new();
    let cold = project.build(&["--build-arg", "TAG=one"]);
    assert!(miss_lines(&cold).is_empty(), "{}", stderr(&cold));
    let warm = project.build(&["--build-arg", "TAG=one"]);
    assert!(miss_lines(&warm).is_empty(), "{}", stderr(&warm));
    assert_eq!(stderr(&warm).matches(" cached in ").count(), 2);

    project.write("src/main.rs", "fn main() { f() }\n");
    let changed = project.build(&["--build-arg", "TAG=one"]);
    assert_eq!(
        miss_lines(&changed),
        [
            "#2 COPY missed: src/main.rs changed",
            "#3 COPY missed: parent step #2 missed"
        ],
        "{}",
        stderr(&changed)
    );
}

#[test]
fn a_changed_build_arg_is_named_never_its_value_in_text_and_json() {
    let project = Project::new();
    project.build(&["--build-arg", "TAG=first-secret-ish-value"]);
    let output = project.build(&[
        "--build-arg",
        "TAG=second-secret-ish-value",
        "--log-format",
        "json",
    ]);
    let text = stderr(&output);
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["event"] == "cache_miss")
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    let event = &events[0];
    assert_eq!(event["step"], 3);
    assert_eq!(event["line"], 4);
    assert_eq!(event["instruction"], "COPY");
    assert_eq!(event["reason"], "value_changed");
    assert_eq!(event["name"], "TAG");
    assert_eq!(event["build_arg"], true);
    assert_eq!(event["message"], "build arg TAG changed");
    assert!(!text.contains("secret-ish"), "a value was printed: {text}");
    // The store's records of the step hold names and digests only.
    let store = project.dir.path().join("store/.rbuild-cache");
    for entry in walk(&store) {
        let bytes = fs::read_to_string(&entry).unwrap_or_default();
        if bytes.contains("key_inputs") {
            assert!(!bytes.contains("secret-ish"), "{}", entry.display());
        }
    }
}

#[test]
fn no_cache_runs_every_step() {
    let project = Project::new();
    project.build(&["--build-arg", "TAG=a"]);
    let again = project.build(&["--build-arg", "TAG=a", "--no-cache"]);
    let text = stderr(&again);
    assert_eq!(text.matches(" cached in ").count(), 0, "{text}");
    assert_eq!(text.matches(" built in ").count(), 2, "{text}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
