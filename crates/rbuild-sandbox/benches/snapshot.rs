//! Snapshot cost after a RUN (issue 5's benchmark): on a base of 100,000 files, a RUN that
//! touches one file and a RUN that creates 100,000 files. The snapshot is what the engine does
//! after the step exits: the overlay's upper dir → change set → owners mapped back to the
//! step's ids → gzip layer → verified blob in the store. Printed as a table beside `tar -c upper | gzip -6 | sha256sum` on the same upper
//! dir. Needs root (userns mode over overlayfs); `RBUILD_BENCH_FILES` shrinks the base.
//!
//! `cargo bench -p rbuild-sandbox --bench snapshot`
#![allow(clippy::print_stdout)]

use rbuild_layer::{changes_from_overlay_upper, LayerOptions, LayerWriter};
use rbuild_oci::Compression;
use rbuild_sandbox::{Isolation, RootFs, RunSpec, Sandbox};
use rbuild_store::Store;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn base_rootfs(dir: &Path, files: usize) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/usr/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "touch", "mkdir", "seq", "xargs"] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    let per_dir = 1000;
    for d in 0..files.div_ceil(per_dir) {
        let sub = dir.join(format!("data/d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..per_dir.min(files - d * per_dir) {
            std::fs::write(sub.join(format!("f{f}")), format!("file {d}/{f}\n")).unwrap();
        }
    }
}

/// Runs `script` over the base, then snapshots the upper dir into the store.
fn run_and_snapshot(
    sandbox: &Sandbox,
    tmp: &Path,
    name: &str,
    script: &str,
    store: &Store,
) -> (Duration, Duration, u64, u64) {
    let run = tmp.join(name);
    let (upper, scratch) = (run.join("upper"), run.join("scratch"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let root = RootFs::Overlay {
        lowers: vec![tmp.join("base")],
        upper: upper.clone(),
    };
    let spec = RunSpec::new(
        root,
        &scratch,
        vec!["sh".into(), "-c".into(), script.into()],
    );
    let started = Instant::now();
    let status = sandbox.run(&spec, |_| {}).expect("the step runs");
    assert!(status.success(), "{script} failed");
    let step = started.elapsed();

    let snapshot_start = Instant::now();
    let changes = changes_from_overlay_upper(&upper).expect("upper dir reads");
    // As the engine does: the step's host ids (a shifted range for root) back to its own.
    rbuild_sandbox::map_upper_owners_to_container(&upper, sandbox.id_map())
        .expect("upper owners mapped");
    let mut blob = store.blob_writer().expect("blob writer");
    let info = LayerWriter::new(LayerOptions {
        compression: Compression::Gzip,
        ..LayerOptions::default()
    })
    .write(&upper, &changes, &mut blob)
    .expect("layer writes");
    blob.commit(Some(&info.digest), Some(info.size))
        .expect("blob lands");
    let snapshot = snapshot_start.elapsed();
    (step, snapshot, info.uncompressed_size, info.entries)
}

fn pipeline(upper: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -C \"$1\" -cf - . | gzip -6 | sha256sum > /dev/null")
        .arg("sh")
        .arg(upper)
        .status()
        .expect("sh runs");
    assert!(status.success());
    started.elapsed()
}

fn main() {
    rbuild_sandbox::run_helper_if_requested();
    if !nix::unistd::geteuid().is_root() {
        println!("snapshot bench skipped: needs root");
        return;
    }
    let files: usize = std::env::var("RBUILD_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir().unwrap();
    let made = Instant::now();
    base_rootfs(&tmp.path().join("base"), files);
    println!(
        "base of {files} files made in {:.1}s",
        made.elapsed().as_secs_f64()
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    let sandbox = Sandbox::builder()
        .isolation(Isolation::Userns)
        .build()
        .expect("userns sandbox");

    let create = format!(
        "mkdir /new && cd /new && for d in $(seq 0 {}); do mkdir $d && (cd $d && seq 1 1000 | xargs touch); done",
        files.div_ceil(1000) - 1
    );
    println!();
    println!(
        "| step | step time | snapshot (upper → layer in store) | entries | uncompressed | tar+gzip+sha256 pipeline |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, script) in [
        ("touch-one", "touch /data/d0/f0".to_string()),
        ("create-many", create),
    ] {
        let (step, snapshot, bytes, entries) =
            run_and_snapshot(&sandbox, tmp.path(), name, &script, &store);
        let reference = pipeline(&tmp.path().join(name).join("upper"));
        println!(
            "| {name} | {:.0} ms | {:.1} ms | {entries} | {} KiB | {:.1} ms |",
            step.as_secs_f64() * 1e3,
            snapshot.as_secs_f64() * 1e3,
            bytes / 1024,
            reference.as_secs_f64() * 1e3
        );
    }
}
