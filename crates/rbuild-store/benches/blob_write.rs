//! Throughput of landing a blob in the store (hash + write + fsync + rename), beside
//! `sha256sum` and `cp` + `sync` of the same bytes, printed as a table.
//!
//! `cargo bench -p rbuild-store --bench blob_write` (size in MiB via `BLOB_MIB`, default 256; directory via `BENCH_DIR`, default the temp dir).

#![allow(clippy::print_stdout)]

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use rbuild_store::Store;

fn main() {
    let mib: usize = std::env::var("BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .expect("temp dir");
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let source = dir.path().join("source");
    {
        let mut f = std::fs::File::create(&source).unwrap();
        for i in 0..mib {
            let mut c = chunk.clone();
            c[0] = i as u8;
            f.write_all(&c).unwrap();
        }
        f.sync_all().unwrap();
    }
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut rows = Vec::new();

    let t = Instant::now();
    let mut w = store.blob_writer().unwrap();
    for i in 0..mib {
        let mut c = chunk.clone();
        c[0] = i as u8;
        w.write_all(&c).unwrap();
    }
    let (digest, _) = w.commit(None, None).unwrap();
    rows.push(("BlobWriter (sha256 + fsync + rename)", t.elapsed()));

    let t = Instant::now();
    let out = Command::new("sha256sum").arg(&source).output().unwrap();
    rows.push(("sha256sum (read from page cache)", t.elapsed()));
    let hex = String::from_utf8_lossy(&out.stdout);
    assert!(hex.starts_with(digest.encoded()), "same bytes, same digest");

    let t = Instant::now();
    let copy = dir.path().join("copy");
    Command::new("cp").arg(&source).arg(&copy).status().unwrap();
    Command::new("sync").arg(&copy).status().unwrap();
    rows.push(("cp + sync", t.elapsed()));

    println!("{mib} MiB blob");
    println!("{:<40} {:>10} {:>10}", "method", "seconds", "MiB/s");
    for (name, elapsed) in rows {
        let s = elapsed.as_secs_f64();
        println!("{name:<40} {s:>10.3} {:>10.1}", mib as f64 / s);
    }
}
