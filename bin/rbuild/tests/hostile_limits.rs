//! Issue 12 through the `rbuild` binary: hostile inputs give one clear error line and exit
//! code 1 under an address-space limit (`prlimit --as`, i.e. `setrlimit(RLIMIT_AS)` in the
//! child), never an abort; and every cause of an error is printed once.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use rbuild_testkit::{CannedServer, Reply};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// The address space rbuild gets: far below what the hostile inputs asked for before the
/// limits (4 GB for the ENV doubling, 2.1 GB for a 1 GiB ADD body, 4.2 GB for a 1 GiB config),
/// and enough for a small build (a build of `FROM scratch` + `COPY` runs in it).
const ADDRESS_SPACE: u64 = 256 << 20;

/// `prlimit` (util-linux) runs a command with a resource limit set by `setrlimit`.
#[allow(clippy::print_stderr)] // the skip notice
fn prlimit_or_skip() -> bool {
    let found = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("prlimit not found (apt-get install util-linux) and CI is set");
        }
        eprintln!("skipping: prlimit not found (apt-get install util-linux)");
    }
    found
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(dockerfile: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("context")).unwrap();
        fs::write(dir.path().join("context/Dockerfile"), dockerfile).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `rbuild ARGS…` under the address-space limit, with a private store and docker config.
    fn limited(&self, args: &[&str]) -> Output {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--as={ADDRESS_SPACE}"))
            .arg("--")
            .arg(RBUILD)
            .args(args)
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("XDG_CACHE_HOME", self.path("cache"));
        command.output().expect("run prlimit rbuild")
    }

    fn build_limited(&self) -> Output {
        let context = self.path("context");
        let store = self.path("store");
        self.limited(&[
            "--context",
            context.to_str().unwrap(),
            "--cache-dir",
            store.to_str().unwrap(),
            "--no-push",
            "--log-format",
            "json",
        ])
    }
}

/// The one plain (non-JSON) line on stderr, after checking the process ended normally with 1.
fn error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "rbuild must exit 1 (not abort or be killed): {:?}\n{stderr}",
        output.status
    );
    let plain: Vec<&str> = stderr
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert_eq!(plain.len(), 1, "one error line expected:\n{stderr}");
    plain[0].to_owned()
}

fn doubling_envs() -> String {
    let mut text = String::from("FROM scratch\nENV a0=xxxxxxxx\n");
    for n in 1..=40 {
        text.push_str(&format!("ENV a{n}=${{a{}}}${{a{}}}\n", n - 1, n - 1));
    }
    text
}

#[test]
fn forty_doubling_envs_give_a_clear_error_in_plan_and_build() {
    if !prlimit_or_skip() {
        return;
    }
    let scratch = Scratch::new(&doubling_envs());
    let dockerfile = scratch.path("context/Dockerfile");
    let output = scratch.limited(&["plan", "-f", dockerfile.to_str().unwrap()]);
    assert_eq!(
        error_line(&output),
        format!(
            "{}:19:1: ENV expands to more than 1 MiB",
            dockerfile.display()
        )
    );
    let output = scratch.build_limited();
    assert_eq!(
        error_line(&output),
        "error: Dockerfile:19:1: ENV expands to more than 1 MiB"
    );
}

#[test]
fn a_base_config_advertised_at_one_gib_is_refused_unread() {
    if !prlimit_or_skip() {
        return;
    }
    let config_digest = format!("sha256:{}", "c".repeat(64));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": 1u64 << 30,
        },
        "layers": [],
    })
    .to_string()
    .into_bytes();
    let server = CannedServer::start(move |_, path| match path {
        "/v2/" => Reply::status(200),
        p if p.contains("/manifests/") => Reply::ok(
            "application/vnd.oci.image.manifest.v1+json",
            manifest.clone(),
        ),
        // The config, were it asked for: 1 GiB announced, never sent.
        _ => Reply::Announce { length: 1 << 30 },
    })
    .unwrap();
    let scratch = Scratch::new(&format!("FROM {}/team/base:1\n", server.host()));
    let line = error_line(&scratch.build_limited());
    assert!(
        line.contains(&format!("image config {config_digest}")),
        "{line}"
    );
    assert!(
        line.contains("is larger than the limit of 8388608 bytes (1073741824 bytes)"),
        "{line}"
    );
    let requests = server.requests();
    assert!(
        !requests.iter().any(|r| r.contains("/blobs/")),
        "the config must not be requested: {requests:?}"
    );
}

#[test]
fn an_add_url_body_larger_than_the_address_space_streams_to_disk() {
    if !prlimit_or_skip() {
        return;
    }
    // Buffered, as before (the body, then a copy of it), it exceeds the address space.
    let body = vec![0u8; 160 << 20];
    let digest = rbuild::oci::Digest::sha256_of(&body);
    let server =
        CannedServer::start(move |_, _| Reply::ok("application/octet-stream", body.clone()))
            .unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let scratch = Scratch::new(&format!(
        "FROM scratch\nADD --checksum={wrong} http://{}/big.bin /big.bin\n",
        server.host()
    ));
    let line = error_line(&scratch.build_limited());
    // The whole body was read and hashed (its real digest is named), within the limit.
    assert!(
        line.ends_with(&format!(
            "ADD failed: digest mismatch for http://{}/big.bin: expected {wrong}, got {digest}",
            server.host(),
        )),
        "{line}"
    );
}

#[test]
fn an_error_names_each_cause_once() {
    let scratch = Scratch::new("FROM scratch\n");
    fs::write(scratch.path("a-file"), "not a directory").unwrap();
    let store = scratch.path("a-file").join("store");
    let output = Command::new(RBUILD)
        .arg("--context")
        .arg(scratch.path("context"))
        .arg("--cache-dir")
        .arg(&store)
        .args(["--no-push", "--log-format", "json"])
        .env("DOCKER_CONFIG", scratch.path("docker-config"))
        .output()
        .unwrap();
    let line = error_line(&output);
    assert_no_repeated_phrase(&line);
    assert_eq!(line.matches("Not a directory").count(), 1, "{line}");
    assert!(line.contains(&store.display().to_string()), "{line}");
}

/// No `: `-separated part of `line` appears twice.
fn assert_no_repeated_phrase(line: &str) {
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} is repeated in {line:?}"
        );
    }
}

#[test]
fn long_inputs_are_cut_short_in_the_error_line() {
    let n = 10_000;
    for (name, dockerfile) in [
        (
            "nested",
            format!(
                "FROM scratch\nENV a={}x{}\n",
                "${a:-".repeat(n),
                "}".repeat(n)
            ),
        ),
        (
            "unknown instruction",
            format!("FROM scratch\n{} a\n", "X".repeat(60_000)),
        ),
        ("stage name", format!("FROM {}:1\n", "a".repeat(60_000))),
    ] {
        let scratch = Scratch::new(&dockerfile);
        let path = scratch.path("context/Dockerfile");
        let output = Command::new(RBUILD)
            .args(["plan", "-f", path.to_str().unwrap()])
            .output()
            .unwrap();
        let line = error_line(&output);
        assert!(line.len() < 1200, "{name}: a line of {} bytes", line.len());
        assert!(line.contains("…("), "{name}: {line}");
        assert!(line.contains("more characters)"), "{name}: {line}");
    }
}
