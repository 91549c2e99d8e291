//! Issue 16 item 3 through the binary: output files written in place when the target cannot
//! be replaced (a bind-mounted file as Kubernetes' `/dev/termination-log`, a FIFO), tarballs
//! made from each build's own image and named after its destination even when two builds
//! share a store, and an OCI layout whose digest is the pushed digest in both formats.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_testkit::{RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "rbuild failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A `FROM scratch` context in `dir/name` holding `payload` as `/payload.bin`.
fn context(dir: &Path, name: &str, payload: &[u8]) -> PathBuf {
    let context = dir.join(name);
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("payload.bin"), payload).unwrap();
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY payload.bin /payload.bin\n",
    )
    .unwrap();
    context
}

fn rbuild(store: &Path, context: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(RBUILD);
    command
        .arg("--context")
        .arg(context)
        .arg("--cache-dir")
        .arg(store)
        .args(["--log-format", "json"])
        .args(args)
        .env("DOCKER_CONFIG", store.with_extension("docker-config"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

fn digest_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "built")
        .and_then(|e| e["digest"].as_str().map(str::to_owned))
        .expect("a built event")
}

#[test]
fn digest_file_is_written_into_a_bind_mounted_file() {
    if !common::is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the bind-mount output test needs root (CI is set)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "ctx", b"termination\n");
    // As the kubelet does: a file of the host bind-mounted over a file in the container.
    let host_file = dir.path().join("host-termination-log");
    let target = dir.path().join("termination-log");
    fs::write(&host_file, "").unwrap();
    fs::write(&target, "").unwrap();
    common::sh(
        "mount",
        &[
            "--bind",
            host_file.to_str().unwrap(),
            target.to_str().unwrap(),
        ],
    );
    let output = rbuild(
        &dir.path().join("store"),
        &ctx,
        &["--no-push", "--digest-file"],
    )
    .arg(&target)
    .output()
    .unwrap();
    let written = fs::read_to_string(&target);
    common::sh("umount", &[target.to_str().unwrap()]);
    assert_ok(&output);
    let digest = digest_of(&output);
    assert_eq!(written.unwrap(), digest);
    assert_eq!(
        fs::read_to_string(&host_file).unwrap(),
        digest,
        "the mounted file itself"
    );
    // No temporary file left beside it.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn digest_file_is_written_into_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "ctx", b"fifo\n");
    let fifo = dir.path().join("digest.fifo");
    common::sh("mkfifo", &[fifo.to_str().unwrap()]);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            fs::File::open(fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    let output = rbuild(
        &dir.path().join("store"),
        &ctx,
        &["--no-push", "--digest-file"],
    )
    .arg(&fifo)
    .output()
    .unwrap();
    assert_ok(&output);
    assert_eq!(reader.join().unwrap(), digest_of(&output));
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::metadata(&fifo).unwrap().file_type().is_fifo(),
        "still a FIFO"
    );
}

/// `manifest.json` of a docker-archive: (RepoTags, sizes of the layer blobs).
fn archive_summary(path: &Path) -> (Vec<String>, Vec<u64>) {
    let mut manifest = None;
    let mut sizes = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            manifest = Some(serde_json::from_str::<serde_json::Value>(&text).unwrap());
        } else {
            sizes.insert(name, entry.header().size().unwrap());
        }
    }
    let manifest = manifest.expect("manifest.json");
    let entry = &manifest.as_array().unwrap()[0];
    let tags = entry["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let layers = entry["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| sizes[l.as_str().unwrap()])
        .collect();
    (tags, layers)
}

#[test]
fn concurrent_tar_paths_sharing_a_store_keep_their_own_image_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("shared-store");
    // Random bytes do not compress: the big image's layer stays big.
    let mut big = vec![0u8; 24 << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for b in big.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let big_ctx = context(dir.path(), "big", &big);
    let small_ctx = context(dir.path(), "small", b"small\n");
    for round in 0..3 {
        let big_tar = dir.path().join(format!("big-{round}.tar"));
        let small_tar = dir.path().join(format!("small-{round}.tar"));
        let mut big_run = rbuild(
            &store,
            &big_ctx,
            &[
                "--no-push",
                "-d",
                "registry.example/team/big:v1",
                "--tar-path",
            ],
        );
        big_run.arg(&big_tar);
        let mut small_run = rbuild(
            &store,
            &small_ctx,
            &[
                "--no-push",
                "-d",
                "registry.example/team/small:v2",
                "--tar-path",
            ],
        );
        small_run.arg(&small_tar);
        let big_child = big_run.spawn().unwrap();
        let small_child = small_run.spawn().unwrap();
        assert_ok(&big_child.wait_with_output().unwrap());
        assert_ok(&small_child.wait_with_output().unwrap());
        let (tags, layers) = archive_summary(&big_tar);
        assert_eq!(tags, ["registry.example/team/big:v1"]);
        assert!(layers[0] > 20 << 20, "big tarball holds {layers:?}");
        let (tags, layers) = archive_summary(&small_tar);
        assert_eq!(tags, ["registry.example/team/small:v2"]);
        assert!(layers[0] < 4096, "small tarball holds {layers:?}");
    }
}

#[test]
fn oci_layout_digest_is_the_pushed_digest_in_both_formats() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "ctx", b"formats\n");
    for format in ["oci", "docker"] {
        let layout = dir.path().join(format!("layout-{format}"));
        let digest_file = dir.path().join(format!("digest-{format}"));
        let destination = format!("{}/formats/{format}:v1", registry.host());
        let output = rbuild(&dir.path().join("store"), &ctx, &["--image-format", format])
            .args(["--destination", &destination, "--oci-layout-path"])
            .arg(&layout)
            .arg("--digest-file")
            .arg(&digest_file)
            .output()
            .unwrap();
        assert_ok(&output);
        let pushed = String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "pushed")
            .and_then(|e| e["digest"].as_str().map(str::to_owned))
            .expect("a pushed event");
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], pushed.as_str(), "{format}: {index}");
        assert_eq!(fs::read_to_string(&digest_file).unwrap(), pushed);
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"], "v1",
            "{format}"
        );
        let manifest_path = layout
            .join("blobs/sha256")
            .join(pushed.trim_start_matches("sha256:"));
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(manifest_path).unwrap()).unwrap();
        let wanted = match format {
            "docker" => "application/vnd.docker.distribution.manifest.v2+json",
            _ => "application/vnd.oci.image.manifest.v1+json",
        };
        assert_eq!(manifest["mediaType"], wanted);
    }
}
