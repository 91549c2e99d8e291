//! The build report, provenance and SBOM, end to end: a two-stage build with a cached stage,
//! a cache miss and a failing RUN gets a report whose numbers are the events' and that a real
//! headless browser (Debian `chromium`) renders (screenshots saved as artifacts of the run);
//! provenance and SBOM pushed to the real `docker-registry` are found through the referrers
//! tag schema; no secret reaches any of them. RUN needs the sandbox, whose helper is this test
//! binary itself, hence `harness = false`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{put_busybox, write_files};
use rbuild::attest::BuildRecord;
use rbuild::oci::{Digest, Manifest, MediaType, Reference};
use rbuild::registry::{CredentialChain, MemoryBlobs, RegistryClient, RegistryOptions};
use rbuild::{
    AttestFormat, BuildError, BuildEvent, BuildRequest, Builder, ContextSource, DockerfileSource,
    Remote, SandboxRunner, SecretSource, StepStatus,
};
use rbuild_testkit::{BusyboxImage, ExtraFile, RegistryAuth, TestRegistry};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SECRET_ARG: &str = "ghp_buildargSECRETvalue123";
const SECRET_MOUNT: &str = "npm-mounted-SECRET-bytes-456";

fn main() {
    rbuild::sandbox::run_helper_if_requested();
    attestations_pushed_and_found_through_the_tag_schema();
    println!("test attestations_pushed_and_found_through_the_tag_schema ... ok");
    buildkit_form_is_an_index_beside_the_image();
    println!("test buildkit_form_is_an_index_beside_the_image ... ok");
    match rbuild::sandbox::Sandbox::detect() {
        Ok(sandbox) => {
            report_of_a_failed_two_stage_build(Arc::new(SandboxRunner::new(sandbox)));
            println!("test report_of_a_failed_two_stage_build ... ok");
        }
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("SKIPPED report_of_a_failed_two_stage_build: no sandbox here: {e}");
        }
        Err(e) => panic!("no sandbox on CI: {e}"),
    }
}

/// Where screenshots go: `$RBUILD_TEST_ARTIFACTS`, else `<target>/tmp/artifacts`.
fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("RBUILD_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Debian's chromium, or `None` (a failure on CI, where the test script installs it).
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing on CI (scripts/install-deps.sh installs it)"
        );
        println!("SKIPPED browser rendering: no chromium");
    }
    found
}

/// Runs headless chromium on `page` with `args`; returns its standard output.
fn run_chromium(chromium: &Path, page: &Path, args: &[&str]) -> Vec<u8> {
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            // Nothing may be fetched: any request would fail rather than leave the machine.
            "--proxy-server=127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The HTML references nothing outside itself and runs no script.
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script", "<link", "<img", "<iframe", "<object", "<embed", "src=\"", "href=\"", "url(",
        "@import", "http://", "https://",
    ] {
        assert!(!lower.contains(bad), "the report contains {bad:?}");
    }
    assert!(lower.starts_with("<!doctype html>"));
    assert!(lower.trim_end().ends_with("</html>"));
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [SECRET_ARG, SECRET_MOUNT] {
        assert!(!text.contains(secret), "{what} contains a secret");
    }
}

fn report_of_a_failed_two_stage_build(runner: Arc<SandboxRunner>) {
    let dir = tempfile::tempdir().unwrap();
    let events: Arc<Mutex<Vec<BuildEvent>>> = Arc::default();
    let seen = events.clone();
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_runner(runner)
        .with_progress(Arc::new(move |e: &BuildEvent| {
            seen.lock().unwrap().push(e.clone())
        }));
    put_busybox(builder.store(), "docker.io/library/busybox:latest");
    let context = dir.path().join("ctx");
    write_files(&context, &[("app.txt", "v1\n", 0o644)]);
    let stages = "FROM busybox AS deps\n\
        RUN echo deps > /deps\n\
        FROM busybox\n\
        COPY --from=deps /deps /deps\n\
        COPY app.txt /app.txt\n";
    let request = |dockerfile: String, reports: Vec<PathBuf>| BuildRequest {
        context: ContextSource::Dir(context.clone()),
        dockerfile: DockerfileSource::Text(dockerfile),
        source_date_epoch: Some(1_700_000_000),
        build_args: [("NPM_TOKEN".to_string(), SECRET_ARG.to_string())].into(),
        secrets: [(
            "npm".to_string(),
            SecretSource::Bytes(SECRET_MOUNT.as_bytes().to_vec()),
        )]
        .into(),
        report: reports,
        ..BuildRequest::default()
    };
    // First build: fills the cache.
    builder
        .build(request(format!("{stages}RUN echo ok\n"), Vec::new()))
        .unwrap();
    events.lock().unwrap().clear();

    // Second: the deps stage is cached, app.txt changed (a miss), the last RUN fails.
    write_files(&context, &[("app.txt", "v2\n", 0o644)]);
    let html = dir.path().join("out/report.html");
    let json = dir.path().join("out/report.json");
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let dockerfile = format!(
        "{stages}ARG NPM_TOKEN\nRUN --mount=type=secret,id=npm test -s /run/secrets/npm && echo failing && exit 3\n"
    );
    let error = builder
        .build(request(dockerfile, vec![html.clone(), json.clone()]))
        .unwrap_err();
    assert!(
        matches!(error, BuildError::RunFailed { code: 3, .. }),
        "{error}"
    );

    let json_bytes = std::fs::read(&json).unwrap();
    let html_text = std::fs::read_to_string(&html).unwrap();
    assert_no_secret("the JSON report", &json_bytes);
    assert_no_secret("the HTML report", html_text.as_bytes());
    let record: BuildRecord = serde_json::from_slice(&json_bytes).unwrap();
    assert!(!record.success);
    assert_eq!(record.error.as_deref(), Some(error.to_string().as_str()));
    assert!(record.image.is_none());

    // Every finished step of the events is in the record with the same numbers.
    let events = events.lock().unwrap().clone();
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::StepFinished(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert!(finished.len() >= 3, "{finished:?}");
    for report in &finished {
        let stage = record
            .stages
            .iter()
            .find(|s| s.index == report.stage)
            .unwrap();
        let step = stage.steps.iter().find(|s| s.line == report.line).unwrap();
        assert_eq!(step.duration_us, report.duration.as_micros() as u64);
        assert_eq!(step.keyword, report.keyword);
        assert_eq!(
            step.layer,
            report.layer.as_ref().map(|d| d.to_string()),
            "line {}",
            report.line
        );
        let state = match report.status {
            StepStatus::Built => "built",
            StepStatus::Cached => "cached",
            StepStatus::Metadata => "metadata",
        };
        assert_eq!(serde_json::to_value(step.state).unwrap(), state);
    }
    let by_line = |stage: usize, line: usize| {
        record
            .stages
            .iter()
            .find(|s| s.index == stage)
            .and_then(|s| s.steps.iter().find(|st| st.line == line))
            .unwrap_or_else(|| panic!("no step {stage}:{line} in {record:?}"))
    };
    use rbuild::attest::StepState;
    assert_eq!(
        by_line(0, 2).state,
        StepState::Cached,
        "the deps stage is cached"
    );
    assert_eq!(by_line(1, 4).state, StepState::Cached);
    assert_eq!(
        by_line(1, 5).state,
        StepState::Built,
        "app.txt changed: a miss"
    );
    // The miss is explained as the engine explained it, and the built steps' phases are there.
    let misses: Vec<(usize, usize, String)> = events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::CacheMiss {
                stage,
                line,
                reason,
                ..
            } => Some((*stage, *line, reason.to_string())),
            _ => None,
        })
        .collect();
    assert!(
        misses.iter().any(|(s, l, _)| (*s, *l) == (1, 5)),
        "the changed COPY missed: {misses:?}"
    );
    for (stage, line, reason) in &misses {
        assert_eq!(
            by_line(*stage, *line).miss_reason.as_deref(),
            Some(reason.as_str())
        );
        assert!(html_text.contains(
            &reason
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;")
        ));
    }
    for e in &events {
        if let BuildEvent::StepProfile {
            stage,
            line,
            phases,
        } = e
        {
            let step = by_line(*stage, *line);
            if !phases.compress.is_zero() {
                assert_eq!(step.phases["compress"], phases.compress.as_micros() as u64);
            }
        }
    }
    let failed = by_line(1, 7);
    assert_eq!(failed.state, StepState::Failed);
    assert!(failed.duration_us > 0);
    assert_eq!(record.stages.len(), 2);

    assert_self_contained(&html_text);
    assert!(html_text.contains("exited with code 3"));
    if let Some(chromium) = chromium() {
        let dom = run_chromium(&chromium, &html, &["--dump-dom"]);
        let dom = String::from_utf8_lossy(&dom);
        assert!(dom.contains("Build report") && dom.contains("exited with code 3"));
        assert!(
            dom.contains("<svg"),
            "the timelines are in the rendered page"
        );
        let artifacts = artifacts_dir();
        for (name, extra) in [
            ("attest-report-light.png", None),
            (
                "attest-report-dark.png",
                Some("--blink-settings=preferredColorScheme=0"),
            ),
        ] {
            let shot = artifacts.join(name);
            let _ = std::fs::remove_file(&shot);
            let mut args = vec![
                format!("--screenshot={}", shot.display()),
                "--window-size=1100,1500".to_string(),
            ];
            args.extend(extra.map(str::to_string));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_chromium(&chromium, &html, &args);
            let png = std::fs::read(&shot).unwrap();
            assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
            println!("screenshot: {}", shot.display());
        }
    }
}

/// A base with a fake dpkg database, in the registry.
fn base_in_registry(remote: &Remote, registry: &TestRegistry) -> (Reference, BusyboxImage) {
    let base = BusyboxImage::build_with(
        &[
            ExtraFile::new(
                "var/lib/dpkg/status",
                "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\nMaintainer: Test <t@example.invalid>\nDescription: greets\n multi-line: text\n\nPackage: libfake1\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n\nPackage: removed\nStatus: deinstall ok config-files\nVersion: 9\n",
            ),
            ExtraFile::new("var/lib/dpkg/info/hello.list", "/.\n/usr\n/usr/bin\n/usr/bin/hello\n"),
            ExtraFile::new("usr/bin/hello", "#!/bin/sh\necho hello\n"),
        ],
        |_| {},
    )
    .unwrap();
    let reference = Reference::parse(&format!("{}/base/busybox:1", registry.host())).unwrap();
    let manifest = base.store().read_blob(base.digest()).unwrap();
    remote
        .push_from_store(
            base.store(),
            &manifest,
            &MediaType::OciManifest,
            std::slice::from_ref(&reference),
        )
        .unwrap();
    (reference, base)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fetch_document(
    rt: &tokio::runtime::Runtime,
    client: &RegistryClient,
    repository: &Reference,
    manifest: &Digest,
) -> (Manifest, Vec<u8>) {
    let reference = Reference::parse(&format!("{}@{manifest}", repository.name())).unwrap();
    let fetched = rt.block_on(client.fetch_manifest(&reference)).unwrap();
    let m = Manifest::from_json(&fetched.bytes).unwrap();
    let blobs = MemoryBlobs::new();
    rt.block_on(client.fetch_blob(&reference, &m.layers[0], &blobs))
        .unwrap();
    let bytes = blobs.get(&m.layers[0].digest).unwrap().as_ref().clone();
    (m, bytes)
}

/// A registry, a client of it, the base image pushed there, a context holding `app.txt` and
/// a builder on a fresh store: what the registry tests start from.
struct RegistryFixture {
    registry: TestRegistry,
    remote: Remote,
    base_ref: Reference,
    base: BusyboxImage,
    dir: tempfile::TempDir,
    context: std::path::PathBuf,
    builder: Builder,
}

/// The fixture, or `None` where no registry can run (a failure under `CI`).
fn registry_fixture() -> Option<RegistryFixture> {
    let registry = TestRegistry::start_or_skip(RegistryAuth::None)?;
    let remote = Remote::new(RegistryOptions::default(), CredentialChain::empty()).unwrap();
    let (base_ref, base) = base_in_registry(&remote, &registry);
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    write_files(&context, &[("app.txt", "the app\n", 0o644)]);
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_remote(&remote);
    Some(RegistryFixture {
        registry,
        remote,
        base_ref,
        base,
        dir,
        context,
        builder,
    })
}

fn attestations_pushed_and_found_through_the_tag_schema() {
    let Some(RegistryFixture {
        registry,
        remote: _remote,
        base_ref,
        base,
        dir,
        context,
        builder,
    }) = registry_fixture()
    else {
        return;
    };
    let destination = Reference::parse(&format!("{}/team/app:v1", registry.host())).unwrap();
    let dockerfile =
        format!("FROM {base_ref}\nARG GITHUB_TOKEN\nARG VERSION\nCOPY app.txt /app/app.txt\n");
    let report = dir.path().join("report.json");
    let layout = dir.path().join("layout");
    let outcome = builder
        .build(BuildRequest {
            context: ContextSource::Dir(context),
            dockerfile: DockerfileSource::Text(dockerfile.clone()),
            build_args: [
                ("GITHUB_TOKEN".to_string(), SECRET_ARG.to_string()),
                ("VERSION".to_string(), "1.2".to_string()),
            ]
            .into(),
            secrets: [("npm".to_string(), SecretSource::Bytes(SECRET_MOUNT.into()))].into(),
            destinations: vec![destination.clone()],
            sbom: true,
            report: vec![report.clone()],
            oci_layout_path: Some(layout.clone()),
            ..BuildRequest::default()
        })
        .unwrap();
    assert_eq!(outcome.pushed.len(), 1);
    let tag = rbuild::registry::referrers_tag(&outcome.digest);
    assert!(registry.has_tag("team/app", &tag), "the referrers tag");

    // A fresh client finds both documents through the tag schema.
    let rt = runtime();
    let client = RegistryClient::new(RegistryOptions::default(), CredentialChain::empty());
    let found = rt
        .block_on(client.referrers(&destination, &outcome.digest))
        .unwrap();
    assert_eq!(found.manifests.len(), 2, "{found:?}");
    let mut provenance = None;
    let mut sbom = None;
    for d in &found.manifests {
        let (m, document) = fetch_document(&rt, &client, &destination, &d.digest);
        assert_eq!(m.subject.as_ref().unwrap().digest, outcome.digest);
        assert_no_secret("an attestation", &document);
        match m.artifact_type.as_deref() {
            Some("application/vnd.in-toto+json") => provenance = Some(document),
            Some("application/spdx+json") => sbom = Some(document),
            other => panic!("unexpected artifact type {other:?}"),
        }
    }
    // The image's tag still names the image.
    let tagged = rt.block_on(client.fetch_manifest(&destination)).unwrap();
    assert_eq!(tagged.digest, outcome.digest);

    let p: serde_json::Value = serde_json::from_slice(&provenance.unwrap()).unwrap();
    assert_eq!(p["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        p["subject"][0]["digest"]["sha256"],
        outcome.digest.encoded()
    );
    let definition = &p["predicate"]["buildDefinition"];
    let deps = definition["resolvedDependencies"].as_array().unwrap();
    assert!(
        deps.iter()
            .any(|d| d["digest"]["sha256"] == base.digest().encoded()),
        "the base by digest: {deps:?}"
    );
    let ext = &definition["externalParameters"];
    assert_eq!(ext["buildArgs"]["GITHUB_TOKEN"], "[REDACTED]");
    assert_eq!(ext["buildArgs"]["VERSION"], "1.2");
    assert_eq!(ext["secrets"][0], "npm");
    assert_eq!(
        ext["dockerfile"]["digest"]["sha256"],
        Digest::sha256_of(dockerfile.as_bytes()).encoded()
    );
    assert!(ext["context"]["digest"]["sha256"].is_string());
    assert_eq!(
        p["predicate"]["runDetails"]["builder"]["version"]["rbuild"],
        env!("CARGO_PKG_VERSION")
    );

    let s: serde_json::Value = serde_json::from_slice(&sbom.unwrap()).unwrap();
    assert_eq!(s["spdxVersion"], "SPDX-2.3");
    let packages: Vec<&str> = s["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        packages.contains(&"hello") && packages.contains(&"libfake1"),
        "{packages:?}"
    );
    assert!(!packages.contains(&"removed"));
    let files = s["files"].as_array().unwrap();
    let file = |name: &str| files.iter().find(|f| f["fileName"] == name);
    let busybox = file("/bin/busybox").expect("busybox's own file");
    assert_eq!(
        busybox["checksums"][0]["checksumValue"],
        Digest::sha256_of(&std::fs::read("/bin/busybox").unwrap()).encoded()
    );
    assert!(file("/app/app.txt").is_some());
    assert!(
        file("/usr/bin/hello").is_none(),
        "owned by the hello package"
    );

    // The built layer's scan is kept by its diffID (made from its tar as it was written).
    let diff_id = outcome.config.rootfs.diff_ids.last().unwrap();
    assert!(dir
        .path()
        .join("store/.rbuild-scans")
        .join(format!("{}.json", diff_id.encoded()))
        .exists());

    // The report lists them; the OCI layout holds them under the referrers tag too.
    let report_bytes = std::fs::read(&report).unwrap();
    assert_no_secret("the report", &report_bytes);
    let record: BuildRecord = serde_json::from_slice(&report_bytes).unwrap();
    assert_eq!(record.attestations.len(), 2);
    assert!(record
        .pushed
        .iter()
        .any(|p| p.digest == outcome.digest.to_string()));
    let layout_index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(layout_index.contains(&tag), "{layout_index}");
    for d in &found.manifests {
        assert!(layout
            .join("blobs/sha256")
            .join(d.digest.encoded())
            .exists());
    }
}

fn buildkit_form_is_an_index_beside_the_image() {
    let Some(RegistryFixture {
        registry,
        remote: _remote,
        base_ref,
        dir: _dir,
        context,
        builder,
        ..
    }) = registry_fixture()
    else {
        return;
    };
    let destination = Reference::parse(&format!("{}/team/bk:v1", registry.host())).unwrap();
    let outcome = builder
        .build(BuildRequest {
            context: ContextSource::Dir(context),
            dockerfile: DockerfileSource::Text(format!("FROM {base_ref}\nCOPY app.txt /app.txt\n")),
            destinations: vec![destination.clone()],
            sbom: true,
            sbom_files: false,
            attest_format: AttestFormat::Buildkit,
            ..BuildRequest::default()
        })
        .unwrap();
    let rt = runtime();
    let client = RegistryClient::new(RegistryOptions::default(), CredentialChain::empty());
    let tagged = rt.block_on(client.fetch_manifest(&destination)).unwrap();
    assert_eq!(tagged.media_type, MediaType::OciIndex);
    let index = rbuild::oci::Index::from_json(&tagged.bytes).unwrap();
    assert_eq!(index.manifests[0].digest, outcome.digest);
    let attestation = &index.manifests[1];
    assert_eq!(
        attestation.annotations["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        attestation.annotations["vnd.docker.reference.digest"],
        outcome.digest.to_string()
    );
    let reference =
        Reference::parse(&format!("{}@{}", destination.name(), attestation.digest)).unwrap();
    let m = Manifest::from_json(
        &rt.block_on(client.fetch_manifest(&reference))
            .unwrap()
            .bytes,
    )
    .unwrap();
    let predicates: Vec<&str> = m
        .layers
        .iter()
        .map(|l| l.annotations["in-toto.io/predicate-type"].as_str())
        .collect();
    assert_eq!(
        predicates,
        vec![
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
    // Without --sbom-files the SBOM lists packages only.
    let blobs = MemoryBlobs::new();
    rt.block_on(client.fetch_blob(&reference, &m.layers[1], &blobs))
        .unwrap();
    let statement: serde_json::Value =
        serde_json::from_slice(&blobs.get(&m.layers[1].digest).unwrap()).unwrap();
    assert_eq!(statement["predicate"]["spdxVersion"], "SPDX-2.3");
    assert!(statement["predicate"]["files"]
        .as_array()
        .unwrap()
        .is_empty());
}
