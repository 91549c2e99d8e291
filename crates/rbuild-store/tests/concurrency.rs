//! Writers sharing one store, as threads and as separate processes, never corrupt it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use rbuild_oci::Digest;
use rbuild_store::Store;

const ROUNDS: usize = 12;
const DIR_ENV: &str = "RBUILD_STORE_TEST_DIR";
const ID_ENV: &str = "RBUILD_STORE_TEST_WORKER";

/// 1 MiB of content that depends only on `i`, so every worker writes the same blobs.
fn shared_blob(i: usize) -> Vec<u8> {
    (0..1 << 20)
        .map(|n| ((n * 31 + i * 7) % 251) as u8)
        .collect()
}

/// One worker: writes the shared blobs in small chunks, and stores images under its own names
/// and under one name all workers fight over.
fn work(dir: &Path, worker: &str) {
    let store = Store::open(dir).unwrap();
    for i in 0..ROUNDS {
        let data = shared_blob(i);
        let mut w = store.blob_writer().unwrap();
        for chunk in data.chunks(64 * 1024) {
            w.write_all(chunk).unwrap();
        }
        w.commit(Some(&Digest::sha256_of(&data)), Some(data.len() as u64))
            .unwrap();
        common::put_test_image(&store, &format!("{worker}-img{i}"), "same text everywhere");
        common::put_test_image(&store, "contested:latest", &format!("round {i}"));
    }
}

/// Run by `two_processes_and_threads_share_a_store` in child processes; does nothing when run
/// directly.
#[test]
#[ignore = "child process of two_processes_and_threads_share_a_store"]
fn child_worker() {
    if let (Ok(dir), Ok(id)) = (std::env::var(DIR_ENV), std::env::var(ID_ENV)) {
        work(Path::new(&dir), &id);
    }
}

fn check_store(dir: &Path, workers: &[String]) {
    let store = Store::open(dir).unwrap();
    let images = store.list_images().unwrap();
    for w in workers {
        for i in 0..ROUNDS {
            let name = format!("{w}-img{i}");
            assert!(
                images.iter().any(|(n, _)| *n == name),
                "{name} lost from index.json"
            );
            let (_, manifest, config) = store.get_image(&name).unwrap();
            assert_eq!(config.rootfs.diff_ids.len(), manifest.layers.len());
        }
    }
    assert_eq!(
        images
            .iter()
            .filter(|(n, _)| n == "contested:latest")
            .count(),
        1,
        "one entry per name"
    );
    assert_eq!(images.len(), workers.len() * ROUNDS + 1);
    store.get_image("contested:latest").unwrap();
    for i in 0..ROUNDS {
        let data = shared_blob(i);
        assert_eq!(store.read_blob(&Digest::sha256_of(&data)).unwrap(), data);
    }
    // Every blob's name is its content's digest, and no temp file is left over.
    for e in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let digest = Digest::parse(&format!("sha256:{}", e.file_name().to_str().unwrap())).unwrap();
        store.read_blob(&digest).unwrap();
    }
    assert_eq!(
        std::fs::read_dir(dir.join(".rbuild-ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn threads_share_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let workers: Vec<String> = (0..4).map(|i| format!("thread{i}")).collect();
    std::thread::scope(|s| {
        for w in &workers {
            s.spawn(|| work(dir.path(), w));
        }
    });
    check_store(dir.path(), &workers);
}

#[test]
fn two_processes_and_threads_share_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["proc0", "proc1"]
        .iter()
        .map(|id| {
            Command::new(&exe)
                .args(["--exact", "child_worker", "--ignored", "--test-threads=1"])
                .env(DIR_ENV, dir.path())
                .env(ID_ENV, id)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    work(dir.path(), "parent");
    for mut child in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "child worker failed: {status}");
    }
    let workers = ["proc0", "proc1", "parent"].map(String::from);
    check_store(dir.path(), &workers);
    // The children really ran (their images exist), checked in check_store.
}

#[test]
fn gc_running_alongside_writers_removes_nothing_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Garbage from the past: an unreferenced blob, aged by a zero grace period below.
    let garbage = store
        .put_blob(b"garbage", rbuild_oci::MediaType::OciLayer)
        .unwrap();
    let workers: Vec<String> = (0..2).map(|i| format!("writer{i}")).collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut gc_runs = 0;
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter()
            .map(|w| s.spawn(|| work(dir.path(), w)))
            .collect();
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            store.gc(std::time::Duration::from_secs(600)).unwrap();
            gc_runs += 1;
            // Leave the lock to the writers for a while; two cores are shared.
            std::thread::sleep(std::time::Duration::from_millis(20));
            if handles.iter().all(|h| h.is_finished()) {
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        for h in handles {
            h.join().unwrap();
        }
    });
    assert!(gc_runs > 1);
    check_store(dir.path(), &workers);
    assert!(store.has_blob(&garbage.digest), "young garbage is kept");
    let report = store.gc(std::time::Duration::ZERO).unwrap();
    assert!(report.removed_blobs.contains(&garbage.digest));
    // The loose shared blobs went too; every named image is intact.
    for (name, _) in store.list_images().unwrap() {
        let (_, manifest, _) = store.get_image(&name).unwrap();
        for layer in &manifest.layers {
            store.open_blob(&layer.digest).unwrap();
        }
    }
}

#[test]
fn blob_collected_before_it_is_named_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, manifest) = common::put_test_image(&store, "x", "x");
    store.remove_image("x").unwrap();
    store.gc(std::time::Duration::ZERO).unwrap();
    let err = store
        .put_image(
            "x",
            &manifest.to_canonical_json(),
            rbuild_oci::MediaType::OciManifest,
        )
        .unwrap_err();
    assert!(
        matches!(err, rbuild_store::StoreError::BlobNotFound(_)),
        "{err}"
    );
    assert!(store.list_images().unwrap().is_empty());
}
