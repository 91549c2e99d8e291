//! Digest throughput (issue 7's micro bench): `Sha256Hasher` and `DigestWriter` over 256 MiB,
//! beside `sha256sum` on the same bytes from a file. Prints a table.
//!
//! `cargo bench -p rbuild-oci --bench digest`
#![allow(clippy::print_stdout, missing_docs)]

use rbuild_oci::{DigestWriter, Sha256Hasher};
use std::io::Write;
use std::process::Command;
use std::time::Instant;

const SIZE: usize = 256 << 20;

fn main() {
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let mib = SIZE as f64 / (1 << 20) as f64;
    println!("| digest | seconds | MiB/s |");
    println!("|---|---:|---:|");

    let started = Instant::now();
    let mut hasher = Sha256Hasher::new();
    for chunk in data.chunks(256 << 10) {
        hasher.update(chunk);
    }
    let (digest, _) = hasher.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| Sha256Hasher (256 KiB updates) | {secs:.3} | {:.0} |",
        mib / secs
    );

    let started = Instant::now();
    let mut writer = DigestWriter::new(std::io::sink());
    for chunk in data.chunks(256 << 10) {
        writer.write_all(chunk).unwrap();
    }
    let (_, same, _) = writer.finish();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(same, digest);
    println!(
        "| DigestWriter into io::sink | {secs:.3} | {:.0} |",
        mib / secs
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &data).unwrap();
    let started = Instant::now();
    let out = Command::new("sha256sum").arg(file.path()).output().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(digest.encoded()));
    println!(
        "| sha256sum (file in page cache) | {secs:.3} | {:.0} |",
        mib / secs
    );
}
