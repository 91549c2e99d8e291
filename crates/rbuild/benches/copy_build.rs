//! End-to-end engine timings on a generated context: a cold build (COPY of many files into
//! layers), a rebuild with one file changed, and a fully cached rebuild. Prints a table.
#![allow(clippy::print_stdout)]

use rbuild::{BuildRequest, Builder, ContextSource, DockerfileSource, StepStatus};
use std::time::Instant;

fn main() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    let (dirs, files_per_dir, size) = (40, 50, 8 * 1024);
    for d in 0..dirs {
        let dir = context.join(format!("src/d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files_per_dir {
            let body: Vec<u8> = (0..size)
                .map(|i| ((i * 31 + d * 7 + f) % 251) as u8)
                .collect();
            std::fs::write(dir.join(format!("f{f}.bin")), body).unwrap();
        }
    }
    std::fs::write(context.join("small.txt"), "v1\n").unwrap();
    let dockerfile = "FROM scratch\nCOPY src /app/src\nCOPY small.txt /app/\nENV A=1\nWORKDIR /app\nCMD [\"/app\"]\n";
    let builder = Builder::new(work.path().join("store")).unwrap();
    let build = |label: &str| {
        let started = Instant::now();
        let outcome = builder
            .build(BuildRequest {
                context: ContextSource::Dir(context.clone()),
                dockerfile: DockerfileSource::Text(dockerfile.into()),
                source_date_epoch: Some(0),
                ..BuildRequest::default()
            })
            .unwrap();
        let cached = outcome
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Cached)
            .count();
        let bytes: u64 = outcome.manifest.layers.iter().map(|l| l.size).sum();
        println!(
            "| {label:<28} | {:>9.1} | {cached:>6} | {bytes:>11} |",
            started.elapsed().as_secs_f64() * 1000.0
        );
    };
    println!(
        "context: {} files of {} KiB; Dockerfile: 6 steps (2 COPY, WORKDIR)",
        dirs * files_per_dir,
        size / 1024
    );
    println!("| build                        |   ms      | cached | layer bytes |");
    println!("|------------------------------|-----------|--------|-------------|");
    build("cold");
    std::fs::write(context.join("small.txt"), "v2\n").unwrap();
    build("one small file changed");
    build("fully cached");
}
