//! `RUN --mount` (cache, bind, secret, tmpfs, ssh), `RUN --network` and proxy build args, end
//! to end through `Builder::build` and rbuild-sandbox. Like `run.rs`, the test binary is its own
//! sandbox helper, hence `harness = false`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use common::{find, layer_entries, put_busybox, write_files};
use rbuild::{
    BuildError, BuildEvent, BuildRequest, Builder, ContextSource, DockerfileSource, SandboxRunner,
    SecretSource, StepStatus,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn main() {
    rbuild::sandbox::run_helper_if_requested();
    let sandbox = match rbuild::sandbox::Sandbox::detect() {
        Ok(s) => s,
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("SKIPPED run mount tests: no sandbox here: {e}");
            return;
        }
        Err(e) => panic!("no sandbox on CI: {e}"),
    };
    println!("sandbox isolation: {}", sandbox.isolation());
    let runner = Arc::new(SandboxRunner::new(sandbox));
    let tests: [(&str, TestFn); 7] = [
        (
            "cache_mount_persists_outside_the_layers",
            cache_mount_persists_outside_the_layers,
        ),
        (
            "bind_mounts_from_context_and_stage",
            bind_mounts_from_context_and_stage,
        ),
        ("secret_mounts_leave_no_trace", secret_mounts_leave_no_trace),
        ("missing_secrets", missing_secrets),
        ("tmpfs_and_ssh_mounts", tmpfs_and_ssh_mounts),
        ("network_modes", network_modes),
        ("proxy_args_reach_run_only", proxy_args_reach_run_only),
    ];
    for (name, test) in tests {
        test(runner.clone());
        println!("test {name} ... ok");
    }
    // chroot isolation (real root only) diffs by metadata scan instead of an overlay upper
    // dir: the same mounts must leave the same layers.
    let chroot = rbuild::sandbox::Sandbox::builder()
        .isolation(rbuild::sandbox::Isolation::Chroot)
        .build();
    match chroot {
        Ok(sandbox) => {
            let runner = Arc::new(SandboxRunner::new(sandbox));
            for (name, test) in tests {
                test(runner.clone());
                println!("test {name} (chroot) ... ok");
            }
        }
        Err(e) => println!("SKIPPED chroot pass: {e}"),
    }
}

/// One test of this file.
type TestFn = fn(Arc<SandboxRunner>);

fn setup(runner: Arc<SandboxRunner>) -> (tempfile::TempDir, Builder) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("ctx")).unwrap();
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_runner(runner);
    put_busybox(builder.store(), "docker.io/library/busybox:latest");
    (dir, builder)
}

fn request(dir: &Path, dockerfile: &str) -> BuildRequest {
    BuildRequest {
        context: ContextSource::Dir(dir.join("ctx")),
        dockerfile: DockerfileSource::Text(dockerfile.into()),
        source_date_epoch: Some(1_700_000_000),
        ..BuildRequest::default()
    }
}

/// The paths of the image's `index`th layer.
fn paths(builder: &Builder, outcome: &rbuild::BuildOutcome, index: usize) -> Vec<String> {
    layer_entries(builder.store(), &outcome.manifest.layers[index].digest)
        .into_iter()
        .map(|e| e.path)
        .collect()
}

fn content(builder: &Builder, outcome: &rbuild::BuildOutcome, index: usize, path: &str) -> String {
    let entries = layer_entries(builder.store(), &outcome.manifest.layers[index].digest);
    String::from_utf8(find(&entries, path).content.clone()).unwrap()
}

fn cache_mount_persists_outside_the_layers(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    // /var does not exist in the base: the sandbox creates /var/cache/app as a mount point;
    // /tmp exists: the overlay copies it up for /tmp/c. Neither may reach the layer.
    let dockerfile = "FROM busybox\n\
        RUN --mount=type=cache,target=/var/cache/app \
            --mount=type=cache,target=/tmp/c,id=owned,uid=1000,gid=1001,mode=0700,sharing=locked \
            --mount=type=cache,target=/p,sharing=private \
            echo run >> /var/cache/app/log && busybox wc -l < /var/cache/app/log > /count \
            && busybox stat -c '%u %g %a' /tmp/c > /owner && echo p >> /p/x\n";
    let first = builder.build(request(dir.path(), dockerfile)).unwrap();
    assert_eq!(content(&builder, &first, 1, "count").trim(), "1");
    assert_eq!(content(&builder, &first, 1, "owner"), "1000 1001 700\n");
    assert_eq!(paths(&builder, &first, 1), vec!["count", "owner"]);
    let mut again = request(dir.path(), dockerfile);
    again.no_cache = true;
    let second = builder.build(again).unwrap();
    assert_eq!(
        content(&builder, &second, 1, "count").trim(),
        "2",
        "the cache dir outlives the build"
    );
    assert_eq!(paths(&builder, &second, 1), vec!["count", "owner"]);
    let caches = std::fs::read_dir(dir.path().join("store/cache-mounts"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(caches, 3, "one dir per cache id");

    // A new cache seeded from a stage starts as a copy of its source dir.
    let seeded = builder
        .build(request(
            dir.path(),
            "FROM busybox AS seed\n\
             RUN mkdir /c && echo seeded > /c/s && chown 1000 /c/s\n\
             FROM busybox\n\
             RUN --mount=type=cache,target=/cache,from=seed,source=/c \
                 cat /cache/s > /got && busybox stat -c %u /cache/s >> /got\n",
        ))
        .unwrap();
    assert_eq!(content(&builder, &seeded, 1, "got"), "seeded\n1000\n");
    assert_eq!(paths(&builder, &seeded, 1), vec!["got"]);
}

fn bind_mounts_from_context_and_stage(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let ctx = dir.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("a.txt", "from context\n", 0o644),
            ("sub/b.txt", "b\n", 0o644),
            ("hidden.key", "ignored\n", 0o600),
            (".dockerignore", "hidden.key\n", 0o644),
        ],
    );
    let dockerfile = "FROM busybox AS build\n\
        RUN echo built > /artifact\n\
        FROM busybox\n\
        WORKDIR /app\n\
        RUN --mount=type=bind,target=ctx cat ctx/a.txt > /a && ls ctx > /list \
            && (echo x > ctx/new 2>/dev/null; echo $? > /ro)\n\
        RUN --mount=type=bind,source=sub,target=/s,rw echo changed > /s/b.txt && cat /s/b.txt > /rw\n\
        RUN --mount=type=bind,from=build,source=/artifact,target=/in/artifact cat /in/artifact > /got\n\
        RUN --mount=type=bind,source=a.txt,target=/a.txt cat /a.txt > /again\n";
    let outcome = builder.build(request(dir.path(), dockerfile)).unwrap();
    assert_eq!(content(&builder, &outcome, 2, "a"), "from context\n");
    assert_eq!(
        content(&builder, &outcome, 2, "list"),
        "a.txt\nsub\n",
        ".dockerignore hides hidden.key from a bind of the context"
    );
    assert_ne!(
        content(&builder, &outcome, 2, "ro").trim(),
        "0",
        "read-only"
    );
    assert_eq!(paths(&builder, &outcome, 2), vec!["a", "list", "ro"]);
    assert_eq!(content(&builder, &outcome, 3, "rw"), "changed\n");
    assert_eq!(paths(&builder, &outcome, 3), vec!["rw"]);
    assert_eq!(
        std::fs::read_to_string(ctx.join("sub/b.txt")).unwrap(),
        "b\n",
        "rw writes are discarded"
    );
    assert_eq!(content(&builder, &outcome, 4, "got"), "built\n");
    assert_eq!(paths(&builder, &outcome, 4), vec!["got"]);
    assert_eq!(content(&builder, &outcome, 5, "again"), "from context\n");
    assert_eq!(paths(&builder, &outcome, 5), vec!["again"]);

    // The bound content is part of the step key: unchanged → cached, changed → rebuilt.
    let status = |o: &rbuild::BuildOutcome, line: usize| {
        o.steps.iter().find(|s| s.line == line).unwrap().status
    };
    let again = builder.build(request(dir.path(), dockerfile)).unwrap();
    assert_eq!(again.digest, outcome.digest);
    assert_eq!(status(&again, 5), StepStatus::Cached);
    std::fs::write(ctx.join("hidden.key"), "changed but ignored\n").unwrap();
    let ignored = builder.build(request(dir.path(), dockerfile)).unwrap();
    assert_eq!(status(&ignored, 5), StepStatus::Cached);
    assert_eq!(ignored.digest, outcome.digest);
    std::fs::write(ctx.join("sub/b.txt"), "b2\n").unwrap();
    let changed = builder.build(request(dir.path(), dockerfile)).unwrap();
    assert_eq!(status(&changed, 2), StepStatus::Cached, "no bind mount");
    assert_eq!(
        status(&changed, 5),
        StepStatus::Built,
        "binds the whole context"
    );
    assert_eq!(status(&changed, 6), StepStatus::Built);

    let err = builder
        .build(request(
            dir.path(),
            "FROM busybox\nRUN --mount=type=bind,source=hidden.key,target=/k cat /k\n",
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dockerfile:2: RUN failed: --mount=type=bind,source=hidden.key,target=/k: \
         source \"hidden.key\" not found in build context"
    );
}

const SECRET: &[u8] = b"s3cr3t-9f8e7d6c-value";

fn sha256_hex(data: &[u8]) -> String {
    rbuild::oci::Digest::sha256_of(data).encoded().to_string()
}

fn secret_mounts_leave_no_trace(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner.clone());
    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = events.clone();
    let builder = builder.with_progress(Arc::new(move |e: &BuildEvent| {
        seen.lock().unwrap().push(format!("{e:?}"));
    }));
    let secret_file = dir.path().join("token.txt");
    std::fs::write(&secret_file, SECRET).unwrap();
    let dockerfile = "FROM busybox\n\
        RUN --mount=type=secret,id=tok busybox sha256sum /run/secrets/tok | busybox cut -c1-64 > /sum \
            && busybox stat -c '%a %u %g' /run/secrets/tok > /perm\n\
        RUN --mount=type=secret,id=mem,env=TOKEN,required=true printf %s \"$TOKEN\" | busybox sha256sum \
            | busybox cut -c1-64 > /envsum && (test -e /run/secrets/mem; echo $? > /nofile)\n\
        RUN --mount=type=secret,id=tok,target=/etc/tok,uid=1000,mode=0440 \
            busybox stat -c '%a %u' /etc/tok > /perm2 && echo done\n";
    let mut req = request(dir.path(), dockerfile);
    req.secrets
        .insert("tok".into(), SecretSource::File(secret_file.clone()));
    req.secrets
        .insert("mem".into(), SecretSource::Bytes(SECRET.to_vec()));
    let outcome = builder.build(req).unwrap();
    let digest = sha256_hex(SECRET);
    assert_eq!(content(&builder, &outcome, 1, "sum").trim(), digest);
    assert_eq!(content(&builder, &outcome, 1, "perm"), "400 0 0\n");
    assert_eq!(paths(&builder, &outcome, 1), vec!["perm", "sum"]);
    assert_eq!(content(&builder, &outcome, 2, "envsum").trim(), digest);
    assert_eq!(content(&builder, &outcome, 2, "nofile"), "1\n", "env= only");
    assert_eq!(content(&builder, &outcome, 3, "perm2"), "440 1000\n");
    assert_eq!(
        paths(&builder, &outcome, 3),
        vec!["perm2"],
        "no /etc/tok mount point, no copied-up /etc"
    );

    // The secret's bytes are nowhere: not in any file of the store (blobs decompressed, cache
    // records, scratch), not in the progress events, the config or the history.
    let mut files = vec![dir.path().join("store")];
    let mut checked = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let mut plain = Vec::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .unwrap();
        }
        for data in [&bytes, &plain] {
            assert!(
                !data.windows(SECRET.len()).any(|w| w == SECRET),
                "secret found in {}",
                p.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked > 5,
        "the store holds blobs and records ({checked} files)"
    );
    let secret_text = std::str::from_utf8(SECRET).unwrap();
    let seen_events = std::mem::take(&mut *events.lock().unwrap());
    assert!(
        seen_events.iter().any(|e| e.contains("done")),
        "events were captured"
    );
    assert!(!seen_events.iter().any(|e| e.contains(secret_text)));
    let config = String::from_utf8(outcome.config.to_canonical_json()).unwrap();
    assert!(!config.contains(secret_text) && !config.contains("TOKEN="));
    assert!(!String::from_utf8_lossy(&outcome.manifest_bytes).contains(secret_text));

    // The secret's content is not part of the key: a new value keeps the cache (as BuildKit).
    std::fs::write(&secret_file, b"another value").unwrap();
    let mut req = request(dir.path(), dockerfile);
    req.secrets
        .insert("tok".into(), SecretSource::File(secret_file));
    req.secrets
        .insert("mem".into(), SecretSource::Bytes(SECRET.to_vec()));
    let again = builder.build(req).unwrap();
    assert_eq!(again.digest, outcome.digest);
}

fn missing_secrets(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let err = builder
        .build(request(
            dir.path(),
            "FROM busybox\nRUN --mount=type=secret,id=npm,required=true true\n",
        ))
        .unwrap_err();
    assert!(matches!(err, BuildError::Step { line: 2, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Dockerfile:2: RUN failed: --mount=type=secret,id=npm,required=true: \
         secret \"npm\" is required but was not given (--secret id=npm,src=PATH)"
    );
    // Not required (the default): skipped, the step runs without it.
    let outcome = builder
        .build(request(
            dir.path(),
            "FROM busybox\nRUN --mount=type=secret,id=npm (test -e /run/secrets/npm; echo $? > /absent)\n",
        ))
        .unwrap();
    assert_eq!(content(&builder, &outcome, 1, "absent"), "1\n");
    // A secret whose file cannot be read names the file, not the content.
    let mut req = request(
        dir.path(),
        "FROM busybox\nRUN --mount=type=secret,id=gone cat /run/secrets/gone\n",
    );
    req.secrets.insert(
        "gone".into(),
        SecretSource::File(dir.path().join("missing.txt")),
    );
    let err = builder.build(req).unwrap_err().to_string();
    assert!(
        err.starts_with("Dockerfile:2: RUN failed: --mount=type=secret,id=gone: secret \"gone\": cannot read the file "),
        "{err}"
    );
}

fn tmpfs_and_ssh_mounts(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let dockerfile = "FROM busybox\n\
        RUN --mount=type=tmpfs,target=/scratch,size=1048576 echo x > /scratch/f \
            && busybox stat -f -c %T /scratch > /fstype && busybox df -k /scratch | busybox tail -1 \
            | busybox awk '{print $2}' > /size\n";
    let outcome = builder.build(request(dir.path(), dockerfile)).unwrap();
    assert_eq!(content(&builder, &outcome, 1, "fstype"), "tmpfs\n");
    assert_eq!(content(&builder, &outcome, 1, "size"), "1024\n");
    assert_eq!(paths(&builder, &outcome, 1), vec!["fstype", "size"]);
    let err = builder
        .build(request(
            dir.path(),
            "FROM busybox\nRUN --mount=type=ssh git clone git@example.com:x/y\n",
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dockerfile:2: RUN failed: --mount=type=ssh: type=ssh is not supported (rbuild forwards no SSH agent)"
    );
}

fn network_modes(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let dockerfile = "FROM busybox\n\
        RUN --network=none ls /sys/class/net > /none\n\
        RUN --network=host ls /sys/class/net > /host\n\
        RUN --network=default ls /sys/class/net > /default\n";
    let outcome = builder.build(request(dir.path(), dockerfile)).unwrap();
    assert_eq!(content(&builder, &outcome, 1, "none"), "lo\n");
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for (index, name) in [(2, "host"), (3, "default")] {
        let seen = content(&builder, &outcome, index, name);
        let mut seen: Vec<&str> = seen.lines().collect();
        let mut host: Vec<&str> = host.iter().map(String::as_str).collect();
        seen.sort();
        host.sort();
        assert_eq!(seen, host, "--network={name} is the host's network");
    }
}

fn proxy_args_reach_run_only(runner: Arc<SandboxRunner>) {
    let (dir, builder) = setup(runner);
    let dockerfile =
        "FROM busybox\nARG VERSION=1\nRUN echo \"$HTTP_PROXY|$http_proxy|$no_proxy|$NO_PROXY|$VERSION\" > /proxy\n";
    let proxied = |url: &str| {
        let mut req = request(dir.path(), dockerfile);
        req.build_args = BTreeMap::from([
            ("HTTP_PROXY".to_string(), url.to_string()),
            ("no_proxy".to_string(), "localhost".to_string()),
        ]);
        req
    };
    let outcome = builder.build(proxied("http://proxy.invalid:3128")).unwrap();
    assert_eq!(
        content(&builder, &outcome, 1, "proxy"),
        "http://proxy.invalid:3128|http://proxy.invalid:3128|localhost|localhost|1\n"
    );
    let config = String::from_utf8(outcome.config.to_canonical_json()).unwrap();
    assert!(!config.contains("proxy.invalid"), "{config}");
    assert!(!config.contains("localhost"), "{config}");
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    let run = outcome.steps.iter().find(|s| s.line == 3).unwrap();
    assert_eq!(run.status, StepStatus::Built);
    // Another proxy: same key, so the step is cached with the first layer.
    let again = builder.build(proxied("http://other.invalid:8080")).unwrap();
    let run_again = again.steps.iter().find(|s| s.line == 3).unwrap();
    assert_eq!(run_again.cache_key, run.cache_key);
    assert_eq!(run_again.status, StepStatus::Cached);
    assert_eq!(again.digest, outcome.digest);
}
