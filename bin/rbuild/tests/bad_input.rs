//! Bad input through the `rbuild` binary (issue 8): each mistake gives exactly one clear error
//! line naming the file, line or registry, and exit code 1 — except a failing RUN, whose own
//! exit code is rbuild's. After a failed push nothing is left tagged in the registry.
//!
//! The builds run with `--log-format json`, so every progress line is a JSON object and the
//! error is the only plain line on stderr: "exactly one line" is checked strictly.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine as _;
use rbuild_testkit::{BusyboxImage, Fault, FaultProxy, FaultRule, RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// A temporary directory with a context; removed on drop.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(dockerfile: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("context");
        fs::create_dir(&context).unwrap();
        fs::write(context.join("present.txt"), "here\n").unwrap();
        fs::write(context.join("Dockerfile"), dockerfile).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn context(&self) -> PathBuf {
        self.path("context")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(RBUILD);
        command
            .arg("--cache-dir")
            .arg(self.path("store"))
            .args(["--log-format", "json"])
            // A private, empty docker config: no credentials of the machine are used.
            .env("DOCKER_CONFIG", self.path("docker-config"));
        command
    }

    fn build(&self, extra: &[&str]) -> Output {
        let mut command = self.command();
        command.arg("--context").arg(self.context()).args(extra);
        command.output().expect("run rbuild")
    }
}

/// The one error line: every other stderr line must be a JSON progress event.
fn the_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let plain: Vec<&str> = stderr
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert_eq!(
        plain.len(),
        1,
        "expected exactly one plain error line on stderr, got:\n{stderr}"
    );
    let line = plain[0].to_owned();
    assert!(line.starts_with("error: "), "{line}");
    line
}

fn assert_fails_with(output: &Output, code: i32, wanted: &[&str]) -> String {
    let line = the_error_line(output);
    assert_eq!(output.status.code(), Some(code), "exit code; error: {line}");
    for piece in wanted {
        assert!(line.contains(piece), "{line:?} does not mention {piece:?}");
    }
    line
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there (loopback only).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn registry_with_busybox() -> Option<TestRegistry> {
    if !BusyboxImage::available_or_skip() {
        return None;
    }
    let registry = TestRegistry::start_or_skip(RegistryAuth::None)?;
    BusyboxImage::build()
        .unwrap()
        .push_to(&registry, "library/busybox:latest")
        .unwrap();
    Some(registry)
}

#[test]
fn missing_context_names_the_directory() {
    let scratch = Scratch::new("FROM scratch\n");
    let missing = scratch.path("no-such-context");
    let mut command = scratch.command();
    command.arg("--context").arg(&missing).arg("--no-push");
    let output = command.output().unwrap();
    assert_fails_with(&output, 1, &[missing.to_str().unwrap()]);
}

#[test]
fn missing_dockerfile_names_the_file() {
    let scratch = Scratch::new("FROM scratch\n");
    let output = scratch.build(&["--dockerfile", "Nope.dockerfile", "--no-push"]);
    assert_fails_with(&output, 1, &["Nope.dockerfile", "not found"]);
}

#[test]
fn malformed_dockerfile_names_the_line() {
    let scratch = Scratch::new("FROM scratch\nCOPY present.txt /x\nFROBNICATE the build\n");
    let output = scratch.build(&["--no-push"]);
    let line = assert_fails_with(&output, 1, &["Dockerfile:3"]);
    assert!(line.to_ascii_uppercase().contains("FROBNICATE"), "{line}");
}

#[test]
fn copy_of_a_missing_file_names_the_file_and_the_line() {
    let scratch = Scratch::new("FROM scratch\nCOPY present.txt /p\nCOPY absent.txt /a\n");
    let output = scratch.build(&["--no-push"]);
    assert_fails_with(&output, 1, &["Dockerfile:3", "absent.txt"]);
}

#[test]
fn failing_run_exits_with_the_steps_code() {
    let Some(registry) = registry_with_busybox() else {
        return;
    };
    let scratch = Scratch::new(&format!(
        "FROM {}/library/busybox:latest\nRUN true\nRUN echo failing; exit 42\n",
        registry.host()
    ));
    let output = scratch.build(&["--no-push"]);
    assert_fails_with(&output, 42, &["Dockerfile:3", "42"]);
}

#[test]
fn unreachable_base_registry_names_the_registry() {
    let host = format!("127.0.0.1:{}", closed_port());
    let scratch = Scratch::new(&format!("FROM {host}/library/busybox:latest\nRUN true\n"));
    let output = scratch.build(&["--no-push", "--image-download-retry", "0"]);
    assert_fails_with(&output, 1, &[&host]);
}

#[test]
fn unreachable_destination_names_the_registry() {
    let host = format!("127.0.0.1:{}", closed_port());
    let scratch = Scratch::new("FROM scratch\nCOPY present.txt /p\n");
    let destination = format!("{host}/bad/app:v1");
    let output = scratch.build(&["--destination", &destination, "--push-retry", "0"]);
    assert_fails_with(&output, 1, &[&host]);
}

#[test]
fn wrong_credentials_name_the_registry_and_tag_nothing() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::Htpasswd {
        username: "builder".into(),
        password: "right-password".into(),
    }) else {
        return;
    };
    let scratch = Scratch::new("FROM scratch\nCOPY present.txt /p\n");
    let config_dir = scratch.path("docker-config");
    fs::create_dir(&config_dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("builder:wrong-password");
    fs::write(
        config_dir.join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            registry.host()
        ),
    )
    .unwrap();
    let ca = registry
        .tls()
        .expect("htpasswd registry has TLS")
        .ca_cert
        .clone();
    let destination = format!("{}/secret/app:v1", registry.host());
    let output = scratch.build(&[
        "--destination",
        &destination,
        "--push-retry",
        "0",
        "--registry-certificate",
        &format!("{}={}", registry.host(), ca.display()),
    ]);
    let line = assert_fails_with(&output, 1, &[&registry.host(), "config.json"]);
    assert!(
        !line.contains("wrong-password"),
        "credential in the error: {line}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(&auth), "credential on stderr");
    assert!(!registry.has_tag("secret/app", "v1"));
}

#[test]
fn failed_manifest_push_leaves_no_tag() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    // Every manifest PUT fails: the blobs arrive but the image must not be tagged.
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![FaultRule::new(
            "PUT",
            "/manifests/",
            Fault::Status {
                code: 500,
                retry_after: None,
            },
            1000,
        )],
    )
    .unwrap();
    let scratch = Scratch::new("FROM scratch\nCOPY present.txt /p\n");
    let destination = format!("{}/half/app:v1", proxy.host());
    let output = scratch.build(&["--destination", &destination, "--push-retry", "0"]);
    assert_fails_with(&output, 1, &[&proxy.host()]);
    assert!(!registry.has_tag("half/app", "v1"));
    // The blobs did arrive (only the manifest failed): the image is half-pushed, untagged.
    assert!(registry
        .requests()
        .iter()
        .any(|r| r.method == "PUT" && r.path.contains("/blobs/uploads/")));
}

#[test]
fn add_of_a_git_url_is_cloned_or_clearly_not_supported() {
    // BuildKit treats `https://host/repo.git#ref` as a git source. rbuild must clone it or say
    // it cannot (as it already does for `git@host:repo.git`), never GET it as a file.
    let host = format!("127.0.0.1:{}", closed_port());
    let scratch = Scratch::new(&format!(
        "FROM scratch\nADD http://{host}/project.git#main /src\n"
    ));
    let output = scratch.build(&["--no-push"]);
    assert_fails_with(&output, 1, &["Dockerfile:2", "not supported"]);
}
