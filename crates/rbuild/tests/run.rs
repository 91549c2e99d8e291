//! RUN through rbuild-sandbox, end to end. The test binary is its own sandbox helper (the
//! sandbox re-executes `/proc/self/exe`), hence `harness = false` and a `main` that hands
//! control to the helper first.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{find, layer_entries, put_busybox};
use rbuild::{BuildError, BuildRequest, Builder, ContextSource, DockerfileSource, SandboxRunner};
use std::sync::Arc;

fn main() {
    rbuild::sandbox::run_helper_if_requested();
    let sandbox = match rbuild::sandbox::Sandbox::detect() {
        Ok(s) => s,
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("SKIPPED run tests: no sandbox here: {e}");
            return;
        }
        Err(e) => panic!("no sandbox on CI: {e}"),
    };
    println!("sandbox isolation: {}", sandbox.isolation());
    let runner = Arc::new(SandboxRunner::new(sandbox));
    run_steps_make_layers(runner.clone());
    println!("test run_steps_make_layers ... ok");
    failing_run_reports_its_exit_code(runner.clone());
    println!("test failing_run_reports_its_exit_code ... ok");
    network_none_has_only_loopback(runner.clone());
    println!("test network_none_has_only_loopback ... ok");
    the_build_network_is_the_default_of_run_steps(runner.clone());
    println!("test the_build_network_is_the_default_of_run_steps ... ok");
    insecure_run_needs_the_entitlement(runner.clone());
    println!("test insecure_run_needs_the_entitlement ... ok");
    cancelling_stops_a_running_step(runner.clone());
    println!("test cancelling_stops_a_running_step ... ok");
    a_merged_step_leaves_what_its_applied_layer_would(runner);
    println!("test a_merged_step_leaves_what_its_applied_layer_would ... ok");
    // chroot isolation (real root only) changes the stage's filesystem in place: the next
    // step must see what the layers give there too.
    match rbuild::sandbox::Sandbox::builder()
        .isolation(rbuild::sandbox::Isolation::Chroot)
        .build()
    {
        Ok(sandbox) => {
            a_merged_step_leaves_what_its_applied_layer_would(Arc::new(SandboxRunner::new(
                sandbox,
            )));
            println!("test a_merged_step_leaves_what_its_applied_layer_would (chroot) ... ok");
        }
        Err(e) if std::env::var_os("CI").is_none() => println!("SKIPPED chroot pass: {e}"),
        Err(e) => panic!("no chroot sandbox on CI (runs as root): {e}"),
    }
}

fn setup(runner: Arc<SandboxRunner>) -> (tempfile::TempDir, Builder) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ctx")).unwrap();
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_runner(runner);
    put_busybox(builder.store(), "docker.io/library/busybox:latest");
    (dir, builder)
}

fn request(dir: &std::path::Path, dockerfile: &str) -> BuildRequest {
    BuildRequest {
        context: ContextSource::Dir(dir.join("ctx")),
        dockerfile: DockerfileSource::Text(dockerfile.into()),
        source_date_epoch: Some(1_700_000_000),
        ..BuildRequest::default()
    }
}

fn run_steps_make_layers(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let dockerfile = "FROM busybox\n\
        ARG GREETING=hello\n\
        ENV TARGET=world\n\
        WORKDIR /work\n\
        RUN echo \"$GREETING $TARGET\" > greeting && mkdir -p /data && echo x > /data/x && chown 1000:1001 /data/x\n\
        RUN rm /data/x\n\
        USER app\n\
        RUN id -u > /tmp/uid\n";
    let outcome = builder.build(request(dir.path(), dockerfile)).unwrap();
    let store = builder.store();
    let layers = &outcome.manifest.layers;
    assert_eq!(layers.len(), 5, "busybox + WORKDIR + 3 RUN");
    let l = layer_entries(store, &layers[2].digest);
    assert_eq!(find(&l, "work/greeting").content, b"hello world\n");
    let x = find(&l, "data/x");
    assert_eq!((x.uid, x.gid), (1000, 1001));
    let l = layer_entries(store, &layers[3].digest);
    let paths: Vec<_> = l.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["data/", "data/.wh.x"],
        "only the step's own changes"
    );
    let l = layer_entries(store, &layers[4].digest);
    assert_eq!(find(&l, "tmp/uid").content, b"1000\n");
    let history: Vec<_> = outcome
        .config
        .history
        .iter()
        .map(|h| h.created_by.clone().unwrap())
        .collect();
    assert_eq!(
        history[4],
        "RUN |1 GREETING=hello /bin/sh -c echo \"$GREETING $TARGET\" > greeting && mkdir -p /data && echo x > /data/x && chown 1000:1001 /data/x # buildkit"
    );
}

fn failing_run_reports_its_exit_code(runner: Arc<SandboxRunner>) {
    let (dir, _) = setup(runner);
    // The default builder probes the sandbox itself at the first RUN.
    let builder = Builder::new(dir.path().join("store")).unwrap();
    let err = builder
        .build(request(dir.path(), "FROM busybox\nRUN exit 3\n"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::RunFailed {
                code: 3,
                line: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Dockerfile:2: RUN exit 3 exited with code 3"
    );
}

fn network_none_has_only_loopback(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let dockerfile = "FROM busybox\nRUN --network=none ls /sys/class/net > /ifaces\n";
    let outcome = builder.build(request(dir.path(), dockerfile)).unwrap();
    let l = layer_entries(builder.store(), &outcome.manifest.layers[1].digest);
    assert_eq!(find(&l, "ifaces").content, b"lo\n");
}

fn the_build_network_is_the_default_of_run_steps(runner: Arc<SandboxRunner>) {
    if rbuild::sandbox::find_in_path("slirp4netns").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "slirp4netns is missing on CI"
        );
        println!("SKIPPED the_build_network_is_the_default_of_run_steps: no slirp4netns");
        return;
    }
    let (dir, builder) = setup(runner);
    let dockerfile = "FROM busybox\n\
        RUN ls /sys/class/net | tr '\\n' ' ' > /sandboxed && cat /etc/resolv.conf >> /sandboxed\n\
        RUN --network=none ls /sys/class/net > /none\n";
    let mut req = request(dir.path(), dockerfile);
    req.network = rbuild::sandbox::Network::Sandbox;
    let outcome = builder.build(req).unwrap();
    let l = layer_entries(builder.store(), &outcome.manifest.layers[1].digest);
    assert_eq!(
        String::from_utf8_lossy(&find(&l, "sandboxed").content),
        "lo tap0 nameserver 10.0.2.3\n"
    );
    let l = layer_entries(builder.store(), &outcome.manifest.layers[2].digest);
    assert_eq!(find(&l, "none").content, b"lo\n", "RUN --network=none wins");
}

fn insecure_run_needs_the_entitlement(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    // unshare is refused by the seccomp filter unless the step may run insecure.
    let dockerfile =
        "FROM busybox\nRUN --security=insecure unshare -U true && echo unshared > /u\n";
    let err = builder
        .build(request(dir.path(), dockerfile))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("needs the security.insecure entitlement: pass --allow security.insecure"),
        "{err}"
    );
    let secure = "FROM busybox\nRUN unshare -U true 2>/dev/null || echo refused > /u\n";
    let outcome = builder.build(request(dir.path(), secure)).unwrap();
    let l = layer_entries(builder.store(), &outcome.manifest.layers[1].digest);
    assert_eq!(
        find(&l, "u").content,
        b"refused\n",
        "the filter is on by default"
    );
    let mut req = request(dir.path(), dockerfile);
    req.allow_security_insecure = true;
    let outcome = builder.build(req).unwrap();
    let l = layer_entries(builder.store(), &outcome.manifest.layers[1].digest);
    assert_eq!(find(&l, "u").content, b"unshared\n");
}

fn cancelling_stops_a_running_step(runner: Arc<SandboxRunner>) {
    let (dir, _) = setup(runner.clone());
    let cancel = rbuild::CancelToken::default();
    let on_event = cancel.clone();
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_runner(runner)
        .with_progress(Arc::new(move |event: &rbuild::BuildEvent| {
            if let rbuild::BuildEvent::Output { text, .. } = event {
                if text == "started" {
                    on_event.cancel();
                }
            }
        }));
    let mut req = request(
        dir.path(),
        "FROM busybox\nRUN echo started; sleep 600; echo finished\n",
    );
    req.cancel = cancel;
    let err = builder.build(req).unwrap_err();
    assert!(matches!(err, BuildError::Cancelled), "{err:?}");
}

/// The stage's filesystem after a step whose upper dir was moved into it (a cold build) and
/// after the same steps' layers were applied to it (cache hits, a rebuild) must look alike to
/// the next step: same paths, types, modes, owners, link counts and sizes, no overlayfs
/// whiteout or attribute left behind.
fn a_merged_step_leaves_what_its_applied_layer_would(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let dockerfile = "FROM busybox\n\
        RUN mkdir -p /d/sub /d/old && echo a > /d/sub/a && ln /d/sub/a /d/b && echo o > /d/old/o && \
            chown 1000:1001 /d/sub/a && chmod 750 /d && echo m > /etc/motd && mkdir /keep && \
            echo k > /keep/k && ln -s /etc /d/etc && mkfifo /d/fifo\n\
        RUN rm -r /d/old /etc/motd /keep/k && rm -r /d/sub && mkdir /d/sub && echo c > /d/sub/c && \
            chmod 700 /keep && rm /bin/cat\n\
        ARG BUST\n\
        RUN echo $BUST > /dev/null; find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /listing.txt \\) -prune -o -print | \
            sort | while read -r f; do stat -c '%n %f %u %g %h %s' \"$f\"; done > /listing.txt\n";
    let listing = |bust: &str| {
        let mut req = request(dir.path(), dockerfile);
        req.build_args.insert("BUST".into(), bust.into());
        let outcome = builder.build(req).unwrap();
        let last = outcome.manifest.layers.last().unwrap();
        let entries = layer_entries(builder.store(), &last.digest);
        let text = String::from_utf8(find(&entries, "listing.txt").content.clone()).unwrap();
        let statuses: Vec<_> = outcome.steps.iter().map(|s| s.status).collect();
        (text, statuses)
    };
    let (merged, cold) = listing("1");
    let (applied, warm) = listing("2");
    assert!(
        cold.iter().all(|s| *s != rbuild::StepStatus::Cached),
        "{cold:?}"
    );
    assert_eq!(
        warm.iter()
            .filter(|s| **s == rbuild::StepStatus::Cached)
            .count(),
        2,
        "the rebuild applies the first two RUN layers: {warm:?}"
    );
    for gone in ["/d/old", "/etc/motd", "/keep/k ", "/bin/cat "] {
        assert!(!merged.contains(gone), "{gone} left behind:\n{merged}");
    }
    for kept in ["/d/sub/c ", "/d/b ", "/d/etc ", "/d/fifo ", "/keep "] {
        assert!(merged.contains(kept), "{kept} missing:\n{merged}");
    }
    // No whiteout (a character device, mode 0x2000) in the tree the last step saw.
    assert!(
        !merged.lines().any(|l| l
            .split(' ')
            .nth(1)
            .is_some_and(|m| m.starts_with("2") && m.len() == 4)),
        "{merged}"
    );
    let diff: Vec<_> = merged
        .lines()
        .zip(applied.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert!(
        diff.is_empty() && merged.lines().count() == applied.lines().count(),
        "merged and applied trees differ: {diff:?}"
    );
}
