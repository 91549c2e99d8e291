//! Start-up overhead of a `RUN true`: median of 20 runs per isolation mode, printed as a
//! table. Needs root (chroot mode); run with `cargo bench -p rbuild-sandbox --bench startup`.
#![allow(clippy::print_stdout)]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use rbuild_sandbox::{Isolation, RootFs, RunSpec, Sandbox};

const RUNS: usize = 20;

fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/usr/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "true"] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

fn stats(mut d: Vec<Duration>) -> (Duration, Duration, Duration) {
    d.sort();
    (d[0], d[d.len() / 2], d[d.len() * 9 / 10])
}

fn measure(sandbox: &Sandbox, tmp: &Path, lowers: usize) -> Vec<Duration> {
    let base = tmp.join("base");
    let mut times = Vec::with_capacity(RUNS);
    for i in 0..RUNS + 2 {
        let run = tmp.join(format!("{}-{lowers}-{i}", sandbox.isolation()));
        let (upper, scratch) = (run.join("upper"), run.join("scratch"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
        let root = match sandbox.isolation() {
            Isolation::Userns => {
                let mut l = vec![base.clone()];
                l.extend((1..lowers).map(|n| tmp.join(format!("layer-{n}"))));
                RootFs::Overlay { lowers: l, upper }
            }
            Isolation::Chroot => RootFs::Dir(base.clone()),
        };
        let spec = RunSpec::new(root, &scratch, vec!["true".into()]);
        let start = Instant::now();
        let status = sandbox.run(&spec, |_| {}).unwrap();
        let took = start.elapsed();
        assert!(status.success());
        if i >= 2 {
            times.push(took); // the first two warm caches
        }
    }
    times
}

fn main() {
    rbuild_sandbox::run_helper_if_requested();
    if !nix::unistd::geteuid().is_root() {
        println!("startup bench skipped: needs root for chroot mode");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    busybox_rootfs(&tmp.path().join("base"));
    for n in 1..100 {
        std::fs::create_dir_all(tmp.path().join(format!("layer-{n}/l{n}"))).unwrap();
    }
    println!("RUN true, {RUNS} runs each (wall time of Sandbox::run)");
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "mode", "min", "median", "p90"
    );
    for (label, isolation, lowers) in [
        ("userns, 1 lower", Isolation::Userns, 1),
        ("userns, 100 lowers", Isolation::Userns, 100),
        ("chroot (mount+pid ns)", Isolation::Chroot, 1),
    ] {
        let sandbox = Sandbox::builder().isolation(isolation).build().unwrap();
        let (min, med, p90) = stats(measure(&sandbox, tmp.path(), lowers));
        println!("{label:<28} {min:>10.2?} {med:>10.2?} {p90:>10.2?}");
    }
}
