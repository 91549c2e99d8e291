//! Push and pull of a large image over loopback (default 1 GiB in 8 layers; set
//! `RBUILD_BENCH_MB` for another size), beside `skopeo copy` of the same image in the same run.
//! Prints a table with MB/s and peak RSS. Each measured transfer runs in a child process (this
//! binary re-executed) so its peak RSS is its own.
//!
//! Run: `cargo bench -p rbuild-registry --bench push_pull`.

// A benchmark's output is its table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rbuild_oci::{
    Descriptor, Digest, ImageConfig, Manifest, MediaType, Platform, Reference, RootFs,
};
use rbuild_registry::{BlobSink, CredentialChain, DirBlobs, RegistryClient, RegistryOptions};
use rbuild_testkit::{RegistryAuth, TestRegistry};

const LAYERS: u64 = 8;

fn main() {
    if let Ok(role) = std::env::var("RBUILD_BENCH_ROLE") {
        child(&role);
        return;
    }
    if !TestRegistry::available() {
        eprintln!("skipping: docker-registry not installed (apt-get install docker-registry)");
        return;
    }
    let total_mb: u64 = std::env::var("RBUILD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let work = tempfile::tempdir().expect("temp dir");
    let layout = work.path().join("layout");
    let (manifest_bytes, total_bytes) = make_image(&layout, total_mb << 20);
    let ours = TestRegistry::start(RegistryAuth::None).expect("start registry");
    let theirs = TestRegistry::start(RegistryAuth::None).expect("start registry");
    let mb = total_bytes as f64 / 1e6;
    println!(
        "image: {LAYERS} layers, {:.0} MB total, manifest {}",
        mb,
        Digest::sha256_of(&manifest_bytes)
    );

    let mut rows = Vec::new();
    let push_ref = format!("{}/bench/image:v1", ours.host());
    rows.push((
        "rbuild push",
        run_child("push", &[("REF", &push_ref), ("DIR", &path_str(&layout))]),
    ));
    let pull_dir = work.path().join("pulled-rbuild");
    rows.push((
        "rbuild pull",
        run_child("pull", &[("REF", &push_ref), ("DIR", &path_str(&pull_dir))]),
    ));
    std::fs::remove_dir_all(&pull_dir).ok();

    if Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let home = work.path().join("skopeo-home");
        std::fs::create_dir_all(&home).ok();
        let skopeo_ref = format!("{}/bench/image:v1", theirs.host());
        rows.push((
            "skopeo copy oci: → registry",
            run_skopeo(
                &home,
                &format!("oci:{}:bench", layout.display()),
                &format!("docker://{skopeo_ref}"),
            ),
        ));
        let skopeo_pull = work.path().join("pulled-skopeo");
        rows.push((
            "skopeo copy registry → oci:",
            run_skopeo(
                &home,
                &format!("docker://{skopeo_ref}"),
                &format!("oci:{}:bench", skopeo_pull.display()),
            ),
        ));
    } else {
        eprintln!("skopeo not installed: no comparison rows");
    }

    println!();
    println!("| transfer | seconds | MB/s | peak RSS MB |");
    println!("|---|---:|---:|---:|");
    for (name, (seconds, rss_kb)) in rows {
        println!(
            "| {name} | {seconds:.2} | {:.0} | {:.1} |",
            mb / seconds,
            rss_kb as f64 / 1024.0
        );
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Writes an OCI layout with `LAYERS` random layers totalling `total` bytes; returns the
/// manifest bytes and the blob total.
fn make_image(root: &Path, total: u64) -> (Vec<u8>, u64) {
    let blobs = DirBlobs::new(root);
    let per_layer = total / LAYERS;
    let mut layers = Vec::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..LAYERS {
        let mut writer = blobs.begin_blob().expect("blob writer");
        let mut hasher = rbuild_oci::Sha256Hasher::new();
        let mut left = per_layer;
        while left > 0 {
            for word in chunk.chunks_exact_mut(8) {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            }
            let n = left.min(chunk.len() as u64) as usize;
            writer.write_all(&chunk[..n]).expect("write layer");
            hasher.update(&chunk[..n]);
            left -= n as u64;
        }
        let (digest, size) = hasher.finish();
        writer.commit(&digest, size).expect("commit layer");
        layers.push(Descriptor::new(MediaType::OciLayer, digest, size));
    }
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            diff_ids: layers.iter().map(|d| d.digest.clone()).collect(),
            ..RootFs::default()
        },
        ..ImageConfig::default()
    };
    let config_bytes = config.to_canonical_json();
    blobs.insert(&config_bytes).expect("config");
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config: Descriptor::of_bytes(MediaType::OciConfig, &config_bytes),
        layers,
        subject: None,
        annotations: Default::default(),
    };
    let manifest_bytes = manifest.to_canonical_json();
    blobs.insert(&manifest_bytes).expect("manifest");
    let total_bytes = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    // Make the directory a real OCI layout so skopeo can read it.
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    let mut descriptor = Descriptor::of_bytes(MediaType::OciManifest, &manifest_bytes);
    descriptor
        .annotations
        .insert("org.opencontainers.image.ref.name".into(), "bench".into());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [descriptor]});
    std::fs::write(root.join("index.json"), index.to_string()).expect("index.json");
    (manifest_bytes, total_bytes)
}

/// Runs this binary in `role`; returns (seconds, peak RSS in KiB) it reports.
fn run_child(role: &str, vars: &[(&str, &str)]) -> (f64, u64) {
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    command.env("RBUILD_BENCH_ROLE", role);
    for (k, v) in vars {
        command.env(format!("RBUILD_BENCH_{k}"), v);
    }
    let output = command.output().expect("run child");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("{role} failed: {}", String::from_utf8_lossy(&output.stderr)));
    let mut parts = line.split_whitespace().skip(1);
    let seconds = parts
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let rss = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (seconds, rss)
}

fn run_skopeo(home: &Path, from: &str, to: &str) -> (f64, u64) {
    let start = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args([
            "-f",
            "MAXRSS %M",
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ])
        .env("HOME", home)
        .output()
        .expect("run skopeo (and /usr/bin/time)");
    let seconds = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "skopeo copy {from} {to}: {stderr}");
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("MAXRSS "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (seconds, rss)
}

fn child(role: &str) {
    let var = |k: &str| std::env::var(format!("RBUILD_BENCH_{k}")).expect("bench variable");
    let reference = Reference::parse(&var("REF")).expect("reference");
    let dir = PathBuf::from(var("DIR"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = RegistryClient::new(RegistryOptions::default(), CredentialChain::empty());
    let blobs = DirBlobs::new(&dir);
    let start = Instant::now();
    runtime.block_on(async {
        match role {
            "push" => {
                let index: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
                        .expect("index json");
                let digest =
                    Digest::parse(index["manifests"][0]["digest"].as_str().expect("digest"))
                        .expect("digest");
                let manifest = std::fs::read(blobs.blob_path(&digest)).expect("manifest");
                client
                    .push_image(&manifest, &MediaType::OciManifest, &blobs, &[reference])
                    .await
                    .expect("push");
            }
            "pull" => {
                client
                    .pull_image(
                        &reference,
                        &Platform::parse("linux/amd64").expect("platform"),
                        &blobs,
                    )
                    .await
                    .expect("pull");
            }
            other => panic!("unknown role {other}"),
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!("RESULT {seconds} {rss_kb}");
}
