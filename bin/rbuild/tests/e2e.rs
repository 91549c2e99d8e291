//! End to end through the `rbuild` binary (issue 8): build from a busybox base in a real test
//! registry, push to two destinations, and check the result with independent tools — `skopeo`
//! pulls the image back, `umoci` reads the OCI layout, `skopeo inspect docker-archive:` reads the
//! tarball — and with `ImageTree` snapshots (content, owners after `RUN chown`, modes).
//!
//! Needs `docker-registry`, `busybox-static`, `skopeo` and `umoci` (skipped with a notice when one
//! is missing, unless `CI` is set), and user namespaces for RUN.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_testkit::skopeo::{self, Access};
use rbuild_testkit::{
    BusyboxImage, EntryKind, ImageTree, RegistryAuth, TestRegistry, TokenIssuerConfig,
};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// A busybox base in a fresh registry, a context and a store, all removed on drop.
struct Fixture {
    registry: TestRegistry,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// `None` (with a notice) when a tool is missing and `CI` is unset.
    fn start() -> Option<Fixture> {
        if !(BusyboxImage::available_or_skip() && skopeo::available_or_skip() && umoci_or_skip()) {
            return None;
        }
        let registry = TestRegistry::start_or_skip(RegistryAuth::None)?;
        BusyboxImage::build()
            .unwrap()
            .push_to(&registry, "library/busybox:latest")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fixture = Fixture { registry, dir };
        fixture.write_context();
        Some(fixture)
    }

    fn host(&self) -> String {
        self.registry.host()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn context(&self) -> PathBuf {
        self.path("context")
    }

    /// A context with a plain file, an executable script and a Dockerfile that copies them,
    /// chowns in a RUN step and switches to a named user.
    fn write_context(&self) {
        let context = self.context();
        fs::create_dir(&context).unwrap();
        fs::write(context.join("hello.txt"), "hello from the context\n").unwrap();
        fs::set_permissions(context.join("hello.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(context.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
        fs::set_permissions(context.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            context.join("Dockerfile"),
            format!(
                "FROM {}/library/busybox:latest\n\
                 COPY hello.txt /app/hello.txt\n\
                 COPY --chmod=0750 run.sh /app/run.sh\n\
                 RUN mkdir -p /data/sub && echo made-in-run > /data/sub/made.txt \\\n\
                 \x20   && chown -R 100:101 /data && chmod 0640 /data/sub/made.txt\n\
                 RUN echo second > /app/second.txt && chown 1000:1000 /app/second.txt\n\
                 RUN echo visible-output-of-run\n\
                 USER app\n\
                 LABEL org.example.e2e=yes\n",
                self.host()
            ),
        )
        .unwrap();
    }

    /// Runs the binary with this fixture's context and a private store.
    fn rbuild(&self, extra: &[&str]) -> Output {
        let store = self.path("store");
        let mut command = Command::new(RBUILD);
        command
            .arg("--context")
            .arg(self.context())
            .arg("--cache-dir")
            .arg(&store)
            .args(extra)
            // An empty docker config: no credentials of the machine are used.
            .env("DOCKER_CONFIG", self.path("docker-config"));
        run(command)
    }
}

fn run(mut command: Command) -> Output {
    command.output().expect("run rbuild")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: rbuild exited with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
}

// A skipped check must say why to the person running it.
#[allow(clippy::print_stderr)]
fn umoci_or_skip() -> bool {
    let found = Command::new("umoci")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "umoci not found and CI is set: apt-get install umoci"
        );
        eprintln!("skipping: umoci not found (apt-get install umoci)");
    }
    found
}

fn read_digest_file(path: &Path) -> String {
    let digest = fs::read_to_string(path).unwrap();
    let digest = digest.trim().to_owned();
    assert!(
        digest.starts_with("sha256:")
            && digest.len() == 71
            && digest[7..].bytes().all(|b| b.is_ascii_hexdigit()),
        "digest file holds {digest:?}"
    );
    digest
}

/// The files the Dockerfile of [`Fixture::write_context`] makes, as every reader must see them.
fn assert_built_files(tree: &ImageTree, with_owners: bool) {
    let entry = |path: &str| {
        tree.get(path)
            .unwrap_or_else(|| panic!("{path} missing from the image:\n{}", tree.listing()))
    };
    assert_eq!(
        tree.text_of("/app/hello.txt").as_deref(),
        Some("hello from the context\n")
    );
    assert_eq!(entry("/app/hello.txt").kind, EntryKind::File);
    assert_eq!(entry("/app/hello.txt").mode, 0o644);
    assert_eq!(entry("/app/run.sh").mode, 0o750);
    assert_eq!(entry("/app").kind, EntryKind::Dir);
    assert_eq!(entry("/app").mode, 0o755);
    assert_eq!(
        tree.text_of("/data/sub/made.txt").as_deref(),
        Some("made-in-run\n")
    );
    assert_eq!(entry("/data/sub/made.txt").mode, 0o640);
    assert_eq!(tree.text_of("/app/second.txt").as_deref(), Some("second\n"));
    // The base is still there.
    assert_eq!(
        entry("/bin/sh").link_target.as_deref(),
        Some("busybox"),
        "base layer"
    );
    if with_owners {
        let owner = |path: &str| (entry(path).uid, entry(path).gid);
        assert_eq!(owner("/app/hello.txt"), (0, 0));
        assert_eq!(owner("/app/run.sh"), (0, 0));
        assert_eq!(owner("/data"), (100, 101), "RUN chown -R");
        assert_eq!(owner("/data/sub"), (100, 101), "RUN chown -R");
        assert_eq!(owner("/data/sub/made.txt"), (100, 101), "RUN chown -R");
        assert_eq!(owner("/app/second.txt"), (1000, 1000), "RUN chown");
    }
    assert_eq!(tree.config.config.user, "app");
    assert_eq!(
        tree.config
            .config
            .labels
            .get("org.example.e2e")
            .map(String::as_str),
        Some("yes")
    );
}

#[test]
fn build_push_two_destinations_and_read_back_with_skopeo_umoci_and_docker_archive() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let first = format!("{}/e2e/app:v1", fx.host());
    let second = format!("{}/e2e/app:latest", fx.host());
    let digest_file = fx.path("digest");
    let names_file = fx.path("names");
    let tar = fx.path("image.tar");
    let layout = fx.path("layout");
    let output = fx.rbuild(&[
        "--reproducible",
        "--destination",
        &first,
        "--destination",
        &second,
        "--digest-file",
        digest_file.to_str().unwrap(),
        "--image-name-with-digest-file",
        names_file.to_str().unwrap(),
        "--tar-path",
        tar.to_str().unwrap(),
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ]);
    assert_success(&output, "build and push");
    let stderr = text(&output.stderr);
    let isolation = stderr
        .find("isolation userns: RUN steps run in user, mount, PID, UTS and IPC namespaces as host ids ")
        .expect("the build says how RUN is isolated");
    assert!(
        stderr
            .find("==> stage")
            .is_some_and(|stage| isolation < stage),
        "before its first stage: {stderr}"
    );
    assert!(!stderr.contains("WARN"), "no stray warnings: {stderr}");
    let digest = read_digest_file(&digest_file);
    assert_eq!(
        fs::read_to_string(&names_file).unwrap(),
        format!(
            "{}/e2e/app@{digest}\n{}/e2e/app@{digest}\n",
            fx.host(),
            fx.host()
        )
    );

    // Both tags resolve to the pushed digest, as the registry itself records them.
    assert!(fx.registry.has_tag("e2e/app", "v1"));
    assert!(fx.registry.has_tag("e2e/app", "latest"));
    let access = Access::default();
    for reference in [&first, &second] {
        let inspected = skopeo::inspect(reference, &access).unwrap();
        assert_eq!(inspected["Digest"], digest.as_str(), "{reference}");
        let by_digest = skopeo::inspect(&format!("{}/e2e/app@{digest}", fx.host()), &access);
        assert!(by_digest.is_ok(), "{by_digest:?}");
    }

    // Pulled back by skopeo (every blob downloaded and verified), then snapshotted.
    let pulled_dir = fx.path("pulled");
    skopeo::copy_to_oci_dir(&first, &access, &pulled_dir).unwrap();
    let pulled = ImageTree::from_oci_layout(&pulled_dir, Some("copied")).unwrap();
    assert_built_files(&pulled, true);

    // --tar-path: skopeo reads the docker-archive; same files and config as the pushed image.
    let archive = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", tar.display()))
        .output()
        .unwrap();
    assert!(archive.status.success(), "{}", text(&archive.stderr));
    let archive: serde_json::Value = serde_json::from_slice(&archive.stdout).unwrap();
    let pushed = skopeo::inspect(&first, &access).unwrap();
    assert_eq!(
        archive["Layers"].as_array().map(Vec::len),
        pushed["Layers"].as_array().map(Vec::len),
        "layer count: {archive}"
    );
    assert_eq!(archive["Labels"], pushed["Labels"]);
    assert_eq!(archive["Architecture"], pushed["Architecture"]);
    let from_tar = ImageTree::from_docker_archive(&tar).unwrap();
    assert_built_files(&from_tar, true);
    assert_eq!(from_tar.entries, pulled.entries);

    // --oci-layout-path: umoci lists and unpacks it (rootless, so owners are not applied).
    let tags = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(tags.status.success(), "umoci ls: {}", text(&tags.stderr));
    let tags = text(&tags.stdout);
    let tag = tags.lines().next().expect("umoci ls lists a tag").trim();
    let bundle = fx.path("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "umoci unpack: {}",
        text(&unpack.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs::read_to_string(rootfs.join("app/hello.txt")).unwrap(),
        "hello from the context\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("data/sub/made.txt")).unwrap(),
        "made-in-run\n"
    );
    let run_sh = fs::metadata(rootfs.join("app/run.sh")).unwrap();
    assert_eq!(run_sh.permissions().mode() & 0o7777, 0o750);
    let from_layout = ImageTree::from_oci_layout(&layout, None).unwrap();
    assert_eq!(from_layout.entries, pulled.entries);

    // A second push of the unchanged image (`--reproducible`: same config, same digest) uploads
    // no blob: the summary says so and the registry saw no upload session.
    let before = fx.registry.requests().len();
    let again = fx.rbuild(&[
        "--reproducible",
        "--destination",
        &first,
        "--destination",
        &second,
    ]);
    assert_success(&again, "second push");
    let stderr = text(&again.stderr);
    let pushed_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("pushed "))
        .collect();
    assert_eq!(pushed_lines.len(), 2, "{stderr}");
    for line in &pushed_lines {
        assert!(line.contains(&digest), "{line}");
        assert!(line.contains("(0 blobs uploaded"), "{line}");
    }
    // Only bytes count: the push permission check opens a session and deletes it.
    let uploads: Vec<_> = fx.registry.requests()[before..]
        .iter()
        .filter(|r| r.path.contains("/blobs/uploads"))
        .filter(|r| r.method == "PATCH" || r.method == "PUT")
        .cloned()
        .collect();
    assert!(uploads.is_empty(), "blob uploads on a re-push: {uploads:?}");
}

#[test]
fn json_log_format_prints_one_object_per_line() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let layout = fx.path("layout");
    let output = fx.rbuild(&[
        "--no-push",
        "--log-format",
        "json",
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ]);
    assert_success(&output, "json build");
    let stderr = text(&output.stderr);
    let mut events = Vec::new();
    for line in stderr.lines().chain(text(&output.stdout).lines()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nall:\n{stderr}"));
        let event = value["event"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"event\" in {line}"));
        events.push(event.to_owned());
    }
    for wanted in [
        "isolation",
        "step_started",
        "step_finished",
        "step_profile",
        "output",
        "built",
    ] {
        assert!(
            events.iter().any(|e| e == wanted),
            "no {wanted} event in {events:?}"
        );
    }
    let position = |e: &str| events.iter().position(|x| x == e);
    assert!(
        position("isolation") < position("stage_started"),
        "the mode comes before the first stage: {events:?}"
    );
}

#[test]
fn profile_prints_a_table_of_each_layer_steps_phases() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let output = fx.rbuild(&["--no-push", "--profile"]);
    assert_success(&output, "profiled build");
    let stderr = text(&output.stderr);
    let start = stderr
        .lines()
        .position(|l| l.starts_with("profile (seconds"))
        .unwrap_or_else(|| panic!("no profile table:\n{stderr}"));
    let lines: Vec<&str> = stderr.lines().skip(start + 1).collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "step",
            "stage",
            "line",
            "run",
            "snapshot",
            "tar",
            "compress",
            "hash",
            "store_write",
            "upload",
            "apply"
        ]
    );
    // Two COPY and three RUN steps made layers; each row has a time for every phase.
    let rows: Vec<Vec<f64>> = lines[1..6]
        .iter()
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 11), "{rows:?}");
    let lines_of_steps: Vec<f64> = rows.iter().map(|r| r[2]).collect();
    assert_eq!(lines_of_steps, [2.0, 3.0, 4.0, 6.0, 7.0]);
    // The RUN processes take measurable time (the layers here are too small for the layer
    // parts to reach a millisecond; the library's tests check those).
    assert!(rows[2..].iter().all(|r| r[3] > 0.0), "{rows:?}");
    // Without --profile, no table.
    let plain = fx.rbuild(&["--no-push"]);
    assert_success(&plain, "plain build");
    assert!(!text(&plain.stderr).contains("profile (seconds"));
}

#[test]
fn reproducible_builds_give_the_same_digest() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let mut digests = Vec::new();
    for round in ["one", "two"] {
        // Separate stores, so the second build cannot reuse the first one's cached steps.
        let digest_file = fx.path(&format!("digest-{round}"));
        let mut command = Command::new(RBUILD);
        command
            .arg("--context")
            .arg(fx.context())
            .arg("--cache-dir")
            .arg(fx.path(&format!("store-{round}")))
            .args(["--no-push", "--reproducible", "--digest-file"])
            .arg(&digest_file)
            .env("DOCKER_CONFIG", fx.path("docker-config"));
        let output = run(command);
        assert_success(&output, round);
        digests.push(read_digest_file(&digest_file));
    }
    assert_eq!(digests[0], digests[1]);
}

/// Builds the fixture with `--reproducible --no-push` and extra flags in a fresh store;
/// returns the digest.
fn reproducible_digest(fx: &Fixture, name: &str, extra: &[&str], stdin: Option<&Path>) -> String {
    let digest_file = fx.path(&format!("digest-{name}"));
    let mut command = Command::new(RBUILD);
    command
        // A store of its own: the image is built again, not found in the step cache.
        .arg("--cache-dir")
        .arg(fx.path(&format!("store-{name}")))
        .args(["--no-push", "--reproducible", "--digest-file"])
        .arg(&digest_file)
        .args(extra)
        .env("DOCKER_CONFIG", fx.path("docker-config"));
    if let Some(file) = stdin {
        command.stdin(fs::File::open(file).unwrap());
    }
    let output = run(command);
    assert_success(&output, name);
    read_digest_file(&digest_file)
}

#[test]
fn every_form_of_context_and_dockerfile_gives_the_same_image() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let context = fx.context();
    let context_arg = context.to_str().unwrap();
    let reference = reproducible_digest(&fx, "dir", &["--context", context_arg], None);

    // tar://FILE (gzip), made by GNU tar.
    let tarball = fx.path("context.tar.gz");
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&context)
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", text(&tar.stderr));
    let tar_context = format!("tar://{}", tarball.display());
    assert_eq!(
        reproducible_digest(&fx, "tar", &["--context", &tar_context], None),
        reference,
        "tar:// context"
    );

    // --context-sub-path: the context is a directory of the given one.
    assert_eq!(
        reproducible_digest(
            &fx,
            "sub-path",
            &[
                "--context",
                fx.dir.path().to_str().unwrap(),
                "--context-sub-path",
                "context"
            ],
            None
        ),
        reference,
        "--context-sub-path"
    );

    // --dockerfile - (standard input) and an absolute Dockerfile outside the context.
    let outside = fx.path("Outside.Dockerfile");
    fs::copy(context.join("Dockerfile"), &outside).unwrap();
    assert_eq!(
        reproducible_digest(
            &fx,
            "stdin",
            &["--context", context_arg, "--dockerfile", "-"],
            Some(&outside)
        ),
        reference,
        "--dockerfile -"
    );
    assert_eq!(
        reproducible_digest(
            &fx,
            "absolute",
            &[
                "--context",
                context_arg,
                "--dockerfile",
                outside.to_str().unwrap()
            ],
            None
        ),
        reference,
        "absolute --dockerfile"
    );
}

#[test]
fn docker_format_and_zstd_layers_push_and_read_back() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let access = Access::default();
    let docker = format!("{}/formats/docker:v1", fx.host());
    let zstd = format!("{}/formats/zstd:v1", fx.host());
    assert_success(
        &fx.rbuild(&["--image-format", "docker", "--destination", &docker]),
        "docker format",
    );
    assert_success(
        &fx.rbuild(&["--compression", "zstd", "--destination", &zstd]),
        "zstd",
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&skopeo::inspect_raw(&docker, &access).unwrap()).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&skopeo::inspect_raw(&zstd, &access).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    // The base layer is reused as pulled (gzip); the built layers are zstd.
    assert!(
        layers[1..]
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"),
        "{manifest}"
    );
    for (reference, name) in [(&docker, "docker"), (&zstd, "zstd")] {
        let dir = fx.path(&format!("pulled-{name}"));
        skopeo::copy_to_oci_dir(reference, &access, &dir).unwrap();
        let tree = ImageTree::from_oci_layout(&dir, Some("copied")).unwrap();
        assert_built_files(&tree, true);
    }
}

#[test]
fn secret_mount_is_readable_in_run_and_absent_from_image_and_logs() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let secret = fx.path("token.txt");
    fs::write(&secret, "s3cr3t-t0ken-value\n").unwrap();
    let context = fx.path("secret-context");
    fs::create_dir(&context).unwrap();
    fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\n\
             RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /secret-size.txt\n",
            fx.host()
        ),
    )
    .unwrap();
    let tar = fx.path("secret.tar");
    let mut command = Command::new(RBUILD);
    command
        .arg("--context")
        .arg(&context)
        .arg("--cache-dir")
        .arg(fx.path("store"))
        .arg("--secret")
        .arg(format!("id=token,src={}", secret.display()))
        .args(["--no-push", "--log-format", "json", "--tar-path"])
        .arg(&tar);
    let output = run(command);
    assert_success(&output, "secret build");
    let tree = ImageTree::from_docker_archive(&tar).unwrap();
    assert_eq!(tree.text_of("/secret-size.txt").as_deref(), Some("19\n"));
    assert!(tree.get("/run/secrets/token").is_none());
    let archive = fs::read(&tar).unwrap();
    assert!(
        !archive.windows(18).any(|w| w == b"s3cr3t-t0ken-value"),
        "the secret is in the image"
    );
    assert!(!text(&output.stderr).contains("s3cr3t-t0ken-value"));
}

/// `rbuild login HOST -u USER --password-stdin [EXTRA...]` into a private DOCKER_CONFIG.
fn login(config_dir: &Path, host: &str, user: &str, password: &str, extra: &[&str]) {
    use std::io::Write;
    let mut child = Command::new(RBUILD)
        .args(["login", host, "-u", user, "--password-stdin"])
        .args(extra)
        .env("DOCKER_CONFIG", config_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_success(&output, "rbuild login");
    assert!(
        !text(&output.stderr).contains(password),
        "the password is printed"
    );
}

#[test]
fn login_then_push_to_htpasswd_tls_and_token_registries() {
    let Some(fx) = Fixture::start() else {
        return;
    };
    let Some(basic) = TestRegistry::start_or_skip(RegistryAuth::Htpasswd {
        username: "builder".into(),
        password: "basic-secret-pw".into(),
    }) else {
        return;
    };
    let Some(token) =
        TestRegistry::start_or_skip(RegistryAuth::Token(TokenIssuerConfig::default()))
    else {
        return;
    };
    let config_dir = fx.path("docker-config");
    fs::create_dir_all(&config_dir).unwrap();
    let ca = basic.tls().expect("TLS").ca_cert.clone();
    let trust = format!("{}={}", basic.host(), ca.display());
    login(
        &config_dir,
        &basic.host(),
        "builder",
        "basic-secret-pw",
        &["--registry-certificate", &trust],
    );
    let defaults = TokenIssuerConfig::default();
    login(
        &config_dir,
        &token.host(),
        &defaults.username,
        &defaults.password,
        &[],
    );
    let config = fs::read_to_string(config_dir.join("config.json")).unwrap();
    assert!(config.contains(&basic.host()) && config.contains(&token.host()));

    // One build, pushed to both (the base comes from the plain registry).
    let to_basic = format!("{}/auth/basic:v1", basic.host());
    let to_token = format!("{}/auth/token:v1", token.host());
    let digest_file = fx.path("digest");
    let report_json = fx.path("report.json");
    let report_html = fx.path("report.html");
    let output = fx.rbuild(&[
        "--reproducible",
        "--destination",
        &to_basic,
        "--destination",
        &to_token,
        "--registry-certificate",
        &format!("{}={}", basic.host(), ca.display()),
        "--digest-file",
        digest_file.to_str().unwrap(),
        "--sbom",
        "--report",
        report_json.to_str().unwrap(),
        "--report",
        report_html.to_str().unwrap(),
    ]);
    assert_success(&output, "authenticated push");
    assert!(!text(&output.stderr).contains("basic-secret-pw"));
    assert!(basic.has_tag("auth/basic", "v1"));
    assert!(token.has_tag("auth/token", "v1"));
    let digest = read_digest_file(&digest_file);
    // Provenance (on by default when pushing) and the SBOM were attached with these
    // credentials; neither password is in them, in the reports, or anywhere the registries
    // stored (the documents are stored as plain JSON blobs).
    let referrers = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    assert!(
        basic.has_tag("auth/basic", &referrers),
        "attestations pushed"
    );
    let passwords = ["basic-secret-pw", defaults.password.as_str()];
    let mut scanned = vec![report_json.clone(), report_html.clone()];
    for root in [basic.storage_dir(), token.storage_dir()] {
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                match path.is_dir() {
                    true => dirs.push(path),
                    false => scanned.push(path),
                }
            }
        }
    }
    assert!(scanned.len() > 10, "{scanned:?}");
    for path in &scanned {
        let bytes = fs::read(path).unwrap();
        for password in passwords {
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "{} holds a registry password",
                path.display()
            );
        }
    }
    let certs = fx.path("certs");
    fs::create_dir(&certs).unwrap();
    fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let inspected = skopeo::inspect(
        &to_basic,
        &Access {
            creds: Some("builder:basic-secret-pw"),
            cert_dir: Some(&certs),
        },
    )
    .unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
}
