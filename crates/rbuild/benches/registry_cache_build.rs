//! The registry layer cache end to end, against the real `docker-registry`: a 6-step
//! Dockerfile over a busybox base built cold, rebuilt after a one-line source change, and
//! rebuilt fully cached — the two rebuilds each on an empty local store (a fresh CI pod, the
//! registry cache only). Prints a table (time, cached steps, registry requests, layer bytes
//! downloaded).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use rbuild::oci::Reference;
use rbuild::registry::{CredentialChain, RegistryOptions};
use rbuild::{
    BuildRequest, Builder, ContextSource, DockerfileSource, Remote, SandboxRunner, StepStatus,
};
use rbuild_testkit::{BusyboxImage, RegistryAuth, TestRegistry};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    rbuild::sandbox::run_helper_if_requested();
    let sandbox = match rbuild::sandbox::Sandbox::detect() {
        Ok(s) => s,
        Err(e) => {
            println!("SKIPPED: no sandbox here: {e}");
            return;
        }
    };
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let runner = Arc::new(SandboxRunner::new(sandbox));
    let host = registry.host();
    let busybox = BusyboxImage::build().unwrap();
    let base = Reference::parse(&format!("{host}/library/busybox:1")).unwrap();
    let (_, manifest, _) = busybox.store().get_image(busybox.store_name()).unwrap();
    remote()
        .push_from_store(
            busybox.store(),
            &manifest.to_canonical_json(),
            &rbuild::oci::MediaType::OciManifest,
            std::slice::from_ref(&base),
        )
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("ctx");
    let (dirs, files_per_dir, size) = (20, 50, 8 * 1024);
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
    std::fs::write(context.join("app.conf"), "line=1\n").unwrap();
    let dockerfile = format!(
        "FROM {base}\n\
         COPY src /app/src\n\
         RUN cat /app/src/*/* /app/src/*/* /app/src/*/* /app/src/*/* > /app/blob && sleep 1\n\
         COPY app.conf /app/\n\
         RUN wc -c /app/app.conf > /app/conf.size && sleep 1\n\
         ENV APP=/app\n\
         CMD [\"/app\"]\n"
    );
    let destination = Reference::parse(&format!("{host}/bench/app:latest")).unwrap();
    let mut pods = 0;
    let mut build = |label: &str| {
        pods += 1;
        let remote = remote();
        let builder = Builder::new(work.path().join(format!("store-{pods}")))
            .unwrap()
            .with_runner(runner.clone())
            .with_remote(&remote);
        let since = registry.requests().len();
        let started = Instant::now();
        let outcome = builder
            .build(BuildRequest {
                context: ContextSource::Dir(context.clone()),
                dockerfile: DockerfileSource::Text(dockerfile.clone()),
                source_date_epoch: Some(0),
                cache: true,
                cache_copy_layers: true,
                destinations: vec![destination.clone()],
                ..BuildRequest::default()
            })
            .unwrap();
        let elapsed = started.elapsed();
        let cached = outcome
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Cached)
            .count();
        let requests = &registry.requests()[since..];
        let downloaded: u64 = outcome
            .manifest
            .layers
            .iter()
            .filter(|l| {
                requests
                    .iter()
                    .any(|r| r.method == "GET" && r.path.contains(l.digest.as_str()))
            })
            .map(|l| l.size)
            .sum();
        println!(
            "| {label:<32} | {:>9.1} | {cached:>6} | {:>8} | {downloaded:>16} |",
            elapsed.as_secs_f64() * 1000.0,
            requests.len()
        );
    };
    println!(
        "context: {} files of {} KiB; 6 steps (2 COPY, 2 RUN, ENV, CMD) over busybox; each RUN sleeps 1 s",
        dirs * files_per_dir,
        size / 1024
    );
    println!(
        "| build (fresh local store each)   |   ms      | cached | requests | layer bytes got  |"
    );
    println!(
        "|----------------------------------|-----------|--------|----------|------------------|"
    );
    build("cold");
    std::fs::write(context.join("app.conf"), "line=2\n").unwrap();
    build("one-line source change");
    build("fully cached");
}

fn remote() -> Remote {
    Remote::new(RegistryOptions::default(), CredentialChain::empty()).unwrap()
}
