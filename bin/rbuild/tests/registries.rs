//! Issue 16 item 5 through the binary: a self-signed leaf certificate trusted when given,
//! certificate files and push permission checked before any step runs (skippable), `rbuild
//! login` verifying what it stores (0700/0600), and `--push-ignore-immutable-tag-errors`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use rbuild_testkit::{Fault, FaultProxy, FaultRule, RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A `FROM scratch` context (no RUN: no sandbox needed).
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        fs::create_dir(&context).unwrap();
        fs::write(context.join("a.txt"), "a\n").unwrap();
        fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY a.txt /a.txt\n",
        )
        .unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn build(&self, args: &[&str]) -> Output {
        Command::new(RBUILD)
            .arg("--context")
            .arg(self.path("ctx"))
            .arg("--cache-dir")
            .arg(self.path("store"))
            .args(["--log-format", "json"])
            .args(args)
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .output()
            .unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn steps_started(output: &Output) -> usize {
    stderr(output)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_started")
        .count()
}

fn error_event(output: &Output) -> serde_json::Value {
    stderr(output)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "error")
        .unwrap_or_else(|| panic!("no error event:\n{}", stderr(output)))
}

#[test]
fn self_signed_leaf_certificate_is_trusted_when_given() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::SelfSignedTls) else {
        return;
    };
    let cert = registry.tls().unwrap().ca_cert.clone();
    let scratch = Scratch::new();
    let destination = format!("{}/self/signed:v1", registry.host());

    let refused = scratch.build(&["--destination", &destination]);
    assert!(
        !refused.status.success(),
        "pushed without trusting the certificate"
    );
    assert!(
        stderr(&refused).contains("certificate"),
        "{}",
        stderr(&refused)
    );

    let trust = format!("{}={}", registry.host(), cert.display());
    let pushed = scratch.build(&[
        "--destination",
        &destination,
        "--registry-certificate",
        &trust,
    ]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert!(registry.has_tag("self/signed", "v1"));

    // A pinned certificate is trusted for its own names only: another certificate given for
    // the host (the testkit CA, which did not sign this one) is no substitute.
    let other_ca = rbuild_testkit::TestTls::generate(&scratch.path(""))
        .unwrap()
        .ca_cert;
    let wrong = format!("{}={}", registry.host(), other_ca.display());
    let refused = scratch.build(&[
        "--destination",
        &destination,
        "--registry-certificate",
        &wrong,
    ]);
    assert!(!refused.status.success());
}

#[test]
fn missing_certificate_file_fails_before_any_step() {
    let scratch = Scratch::new();
    let output = scratch.build(&[
        "--destination",
        "127.0.0.1:9/x/y:v1",
        "--registry-certificate",
        "127.0.0.1:9=/nonexistent/ca.pem",
    ]);
    assert!(!output.status.success());
    assert_eq!(steps_started(&output), 0, "{}", stderr(&output));
    let error = error_event(&output);
    let text = error["text"].as_str().unwrap();
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    assert_eq!(error["exit_code"], 1);
}

/// A TLS registry with user `builder` / `right-password`, and the `--registry-certificate`
/// value that trusts it.
fn htpasswd_registry() -> Option<(TestRegistry, String)> {
    let registry = TestRegistry::start_or_skip(RegistryAuth::Htpasswd {
        username: "builder".into(),
        password: "right-password".into(),
    })?;
    let trust = format!(
        "{}={}",
        registry.host(),
        registry.tls().unwrap().ca_cert.display()
    );
    Some((registry, trust))
}

fn write_docker_config(dir: &Path, host: &str, user: &str, password: &str) {
    fs::create_dir_all(dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    fs::write(
        dir.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
}

#[test]
fn push_permission_is_checked_before_any_step_runs() {
    let Some((registry, trust)) = htpasswd_registry() else {
        return;
    };
    let scratch = Scratch::new();
    write_docker_config(
        &scratch.path("docker-config"),
        &registry.host(),
        "builder",
        "wrong-password",
    );
    let destination = format!("{}/perm/app:v1", registry.host());
    let args = [
        "--destination",
        &destination,
        "--registry-certificate",
        &trust,
    ];

    let refused = scratch.build(&args);
    assert!(!refused.status.success());
    assert_eq!(
        steps_started(&refused),
        0,
        "a step ran:\n{}",
        stderr(&refused)
    );
    let text = error_event(&refused)["text"].as_str().unwrap().to_owned();
    assert!(
        text.contains("checked before building") && text.contains(&registry.host()),
        "{text}"
    );
    assert!(!stderr(&refused).contains("wrong-password"));

    // Skipped: the build runs, and the push fails after it.
    let mut skipped_args = args.to_vec();
    skipped_args.push("--skip-push-permission-check");
    let skipped = scratch.build(&skipped_args);
    assert!(!skipped.status.success());
    assert!(steps_started(&skipped) > 0, "{}", stderr(&skipped));

    // Right credentials: the check starts an upload and cancels it; the push succeeds.
    write_docker_config(
        &scratch.path("docker-config"),
        &registry.host(),
        "builder",
        "right-password",
    );
    let pushed = scratch.build(&args);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let log = registry.access_log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"DELETE /v2/perm/app/blobs/uploads/")),
        "the check's upload was not cancelled:\n{log}"
    );
}

fn login(config: &Path, host: &str, password: &str, extra: &[&str]) -> Output {
    let mut child = Command::new(RBUILD)
        .args(["login", host, "-u", "builder", "--password-stdin"])
        .args(extra)
        .env("DOCKER_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn login_verifies_before_storing_and_keeps_the_file_private() {
    let Some((registry, trust)) = htpasswd_registry() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("new-config-dir");

    let wrong = login(
        &config,
        &registry.host(),
        "wrong-password",
        &["--registry-certificate", &trust],
    );
    assert!(!wrong.status.success());
    let text = stderr(&wrong);
    assert!(
        text.contains("nothing stored") && !text.contains("wrong-password"),
        "{text}"
    );
    assert!(
        !config.join("config.json").exists(),
        "a refused login was stored"
    );

    let right = login(
        &config,
        &registry.host(),
        "right-password",
        &["--registry-certificate", &trust],
    );
    assert!(right.status.success(), "{}", stderr(&right));
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config), 0o700);
    assert_eq!(mode(&config.join("config.json")), 0o600);
    assert!(fs::read_to_string(config.join("config.json"))
        .unwrap()
        .contains(&registry.host()));
}

#[test]
fn immutable_tag_errors_fail_unless_ignored() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let rule = || {
        FaultRule::new(
            "PUT",
            "/manifests/v1",
            Fault::ErrorBody {
                code: 400,
                error_code: "TAG_INVALID".into(),
                message: "The image tag 'v1' already exists in the 'immutable/app' repository \
                          and cannot be overwritten because the tag is immutable."
                    .into(),
            },
            1,
        )
    };
    let scratch = Scratch::new();

    let proxy = FaultProxy::start(registry.addr(), vec![rule()]).unwrap();
    let destination = format!("{}/immutable/app:v1", proxy.host());
    let digest_file = scratch.path("digest");
    let refused = scratch.build(&[
        "--destination",
        &destination,
        "--digest-file",
        digest_file.to_str().unwrap(),
    ]);
    assert!(
        !digest_file.exists(),
        "a digest file names an image that was not pushed"
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("immutable"),
        "{}",
        stderr(&refused)
    );

    let proxy = FaultProxy::start(registry.addr(), vec![rule()]).unwrap();
    let destination = format!("{}/immutable/app:v1", proxy.host());
    let kept = scratch.build(&[
        "--destination",
        &destination,
        "--push-ignore-immutable-tag-errors",
    ]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert_eq!(proxy.faults_left(), 0, "the manifest PUT was not refused");
    assert!(stderr(&kept).contains("left as it is"), "{}", stderr(&kept));
    assert!(!registry.has_tag("immutable/app", "v1"));
}
