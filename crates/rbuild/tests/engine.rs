//! End-to-end builds through `Builder::build` with real contexts, real layer tars and a busybox
//! base image made in the test.

mod common;

use common::{find, layer_entries, put_busybox, write_files};
use rbuild::{BuildError, BuildRequest, Builder, ContextSource, DockerfileSource};
use std::path::{Path, PathBuf};

struct Fixture {
    _dir: tempfile::TempDir,
    context: PathBuf,
    builder: Builder,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    let builder = Builder::new(dir.path().join("store")).unwrap();
    put_busybox(builder.store(), "docker.io/library/busybox:latest");
    Fixture {
        root: dir.path().to_path_buf(),
        _dir: dir,
        context,
        builder,
    }
}

fn request(context: &Path, dockerfile: &str) -> BuildRequest {
    BuildRequest {
        context: ContextSource::Dir(context.to_path_buf()),
        dockerfile: DockerfileSource::Text(dockerfile.to_string()),
        source_date_epoch: Some(1_700_000_000),
        ..BuildRequest::default()
    }
}

#[test]
fn scratch_copy_cases_produce_exact_layers() {
    let f = fixture();
    write_files(
        &f.context,
        &[
            ("a.txt", "A\n", 0o644),
            ("b.txt", "B\n", 0o600),
            ("dir/one", "1", 0o644),
            ("dir/sub/run.sh", "#!/bin/sh\n", 0o755),
            ("dir/sub/skip.log", "log", 0o644),
            ("notes.log", "log", 0o644),
        ],
    );
    std::os::unix::fs::symlink("a.txt", f.context.join("link")).unwrap();
    std::fs::write(f.context.join(".dockerignore"), "**/*.log\n").unwrap();
    let dockerfile = "FROM scratch\n\
        COPY a.txt /dest/\n\
        COPY dir /d2\n\
        COPY --chown=1000:1001 --chmod=640 a.txt /owned/x.txt\n\
        COPY *.txt /glob/\n\
        COPY <<EOF /here.txt\nhello\nEOF\n\
        WORKDIR /app\n\
        COPY a.txt rel\n\
        COPY --chmod=u+x,go-r b.txt link /sym/\n";
    let outcome = f.builder.build(request(&f.context, dockerfile)).unwrap();
    let store = f.builder.store();
    let layers: Vec<_> = outcome
        .manifest
        .layers
        .iter()
        .map(|l| layer_entries(store, &l.digest))
        .collect();
    assert_eq!(layers.len(), 8);

    let l = &layers[0];
    assert_eq!(
        l.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        vec!["dest/", "dest/a.txt"]
    );
    let d = find(l, "dest");
    assert_eq!((d.kind, d.mode, d.uid, d.gid), ('d', 0o755, 0, 0));
    let a = find(l, "dest/a.txt");
    assert_eq!(
        (a.kind, a.mode, a.uid, a.gid, a.content.as_slice()),
        ('f', 0o644, 0, 0, &b"A\n"[..])
    );

    // A directory's contents, not the directory; ignored files invisible.
    let l = &layers[1];
    let paths: Vec<_> = l.iter().map(|e| e.path.trim_end_matches('/')).collect();
    assert_eq!(paths, vec!["d2", "d2/one", "d2/sub", "d2/sub/run.sh"]);
    assert_eq!(find(l, "d2/sub/run.sh").mode, 0o755);

    // --chown owns created parents too; --chmod octal.
    let l = &layers[2];
    let owned = find(l, "owned");
    // BuildKit >= 0.21 gives the directory a `--chmod` COPY creates the same mode.
    assert_eq!((owned.uid, owned.gid, owned.mode), (1000, 1001, 0o640));
    let x = find(l, "owned/x.txt");
    assert_eq!((x.uid, x.gid, x.mode), (1000, 1001, 0o640));

    // Globs.
    let l = &layers[3];
    let paths: Vec<_> = l.iter().map(|e| e.path.trim_end_matches('/')).collect();
    assert_eq!(paths, vec!["glob", "glob/a.txt", "glob/b.txt"]);
    assert_eq!(find(l, "glob/b.txt").mode, 0o600);

    // Heredoc: 0644, its body.
    let h = find(&layers[4], "here.txt");
    assert_eq!((h.mode, h.content.as_slice()), (0o644, &b"hello\n"[..]));

    // WORKDIR makes a layer with the directory.
    assert_eq!(find(&layers[5], "app").kind, 'd');
    // A relative destination is relative to WORKDIR.
    assert_eq!(find(&layers[6], "app/rel").content, b"A\n");
    // Symbolic chmod; a named symlink source is followed (BuildKit's FollowSymlinks).
    let l = &layers[7];
    assert_eq!(find(l, "sym/b.txt").mode, 0o700);
    assert_eq!(find(l, "sym").mode, 0o711, "u+x,go-r applied to 0755");
    let link = find(l, "sym/link");
    assert_eq!(
        (link.kind, link.content.as_slice(), link.mode),
        ('f', &b"A\n"[..], 0o700)
    );
    // mtimes are clamped to SOURCE_DATE_EPOCH.
    assert!(layers.iter().flatten().all(|e| e.mtime <= 1_700_000_000));

    let history: Vec<_> = outcome
        .config
        .history
        .iter()
        .map(|h| (h.created_by.clone().unwrap(), h.empty_layer))
        .collect();
    assert_eq!(
        history,
        vec![
            ("COPY a.txt /dest/ # buildkit".to_string(), false),
            ("COPY dir /d2 # buildkit".into(), false),
            ("COPY a.txt /owned/x.txt # buildkit".into(), false),
            ("COPY *.txt /glob/ # buildkit".into(), false),
            ("COPY <<EOF /here.txt # buildkit".into(), false),
            ("WORKDIR /app".into(), false),
            ("COPY a.txt rel # buildkit".into(), false),
            ("COPY b.txt link /sym/ # buildkit".into(), false),
        ]
    );
    assert!(outcome
        .config
        .history
        .iter()
        .all(|h| h.created.as_deref() == Some("2023-11-14T22:13:20Z")));
    assert_eq!(
        outcome.config.created.as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    assert_eq!(outcome.config.config.working_dir, "/app");
    assert_eq!(outcome.config.rootfs.diff_ids.len(), 8);
}

#[test]
fn busybox_base_copy_metadata_and_exports() {
    let f = fixture();
    write_files(&f.context, &[("app.sh", "echo app\n", 0o755)]);
    let dockerfile = "FROM busybox\n\
        ARG VERSION=1.0\n\
        ENV APP_VERSION=$VERSION\n\
        COPY --chown=app:staff app.sh /opt/app/\n\
        COPY app.sh /bin/\n\
        USER app\n\
        EXPOSE 8080\n\
        LABEL org.example.version=$VERSION\n\
        ENTRYPOINT [\"/opt/app/app.sh\"]\n";
    let mut req = request(&f.context, dockerfile);
    req.labels.insert("from.request".into(), "yes".into());
    req.image_name = Some("example.com/app:v1".into());
    req.oci_layout_path = Some(f.root.join("layout"));
    req.docker_archive_path = Some(f.root.join("image.tar"));
    req.digest_file = Some(f.root.join("digest"));
    let outcome = f.builder.build(req).unwrap();

    let c = &outcome.config.config;
    assert_eq!(
        c.env,
        vec!["PATH=/bin".to_string(), "APP_VERSION=1.0".into()]
    );
    assert_eq!(c.user, "app");
    assert_eq!(c.entrypoint, Some(vec!["/opt/app/app.sh".to_string()]));
    assert_eq!(c.cmd, None, "ENTRYPOINT resets the inherited CMD");
    assert_eq!(
        c.labels.get("org.example.version").map(String::as_str),
        Some("1.0")
    );
    assert_eq!(
        c.labels.get("from.request").map(String::as_str),
        Some("yes")
    );
    assert!(c.exposed_ports.contains_key("8080/tcp"));
    assert_eq!(outcome.manifest.layers.len(), 3);
    let history: Vec<_> = outcome
        .config
        .history
        .iter()
        .map(|h| h.created_by.clone().unwrap())
        .collect();
    assert_eq!(
        history,
        vec![
            "busybox test layer",
            "ARG VERSION=1.0",
            "ENV APP_VERSION=1.0",
            "COPY app.sh /opt/app/ # buildkit",
            "COPY app.sh /bin/ # buildkit",
            "USER app",
            "EXPOSE map[8080/tcp:{}]",
            "LABEL org.example.version=1.0",
            "ENTRYPOINT [\"/opt/app/app.sh\"]",
        ]
    );

    let store = f.builder.store();
    let l = layer_entries(store, &outcome.manifest.layers[1].digest);
    let app = find(&l, "opt/app/app.sh");
    assert_eq!((app.uid, app.gid, app.mode), (1000, 50, 0o755));
    assert_eq!((find(&l, "opt").uid, find(&l, "opt/app").gid), (1000, 50));
    // COPY into an existing directory repeats it with its own metadata.
    let l = layer_entries(store, &outcome.manifest.layers[2].digest);
    let bin = find(&l, "bin");
    assert_eq!((bin.mode, bin.uid, bin.mtime), (0o755, 0, 1_000_000));
    assert_eq!(find(&l, "bin/app.sh").uid, 0);

    let digest = std::fs::read_to_string(f.root.join("digest")).unwrap();
    assert_eq!(digest, outcome.digest.to_string());

    // Independent readers of the outputs.
    let layout = f.root.join("layout");
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{}:v1", layout.display())])
        .output()
        .expect("skopeo (apt-get install skopeo)");
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert_eq!(inspect.stdout, outcome.manifest_bytes);
    let unpacked = f.root.join("bundle");
    let umoci = std::process::Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:v1", layout.display()),
        ])
        .arg(&unpacked)
        .output()
        .expect("umoci (apt-get install umoci)");
    assert!(
        umoci.status.success(),
        "{}",
        String::from_utf8_lossy(&umoci.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(unpacked.join("rootfs/opt/app/app.sh")).unwrap(),
        "echo app\n"
    );
    assert!(unpacked.join("rootfs/bin/busybox").is_file());
    let archive = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            &format!("docker-archive:{}", f.root.join("image.tar").display()),
        ])
        .output()
        .unwrap();
    assert!(
        archive.status.success(),
        "{}",
        String::from_utf8_lossy(&archive.stderr)
    );
    assert!(String::from_utf8_lossy(&archive.stdout).contains("APP_VERSION=1.0"));
}

#[test]
fn multi_stage_copy_from_and_reproducible_digest() {
    let f = fixture();
    write_files(&f.context, &[("src/main.txt", "main\n", 0o644)]);
    let dockerfile = "FROM busybox AS build\n\
        COPY src /work/\n\
        FROM scratch\n\
        COPY --from=build /work/main.txt /bin/busybox /out/\n\
        CMD [\"/out/busybox\"]\n";
    let first = f.builder.build(request(&f.context, dockerfile)).unwrap();
    let l = layer_entries(f.builder.store(), &first.manifest.layers[0].digest);
    assert_eq!(find(&l, "out/main.txt").content, b"main\n");
    let bb = find(&l, "out/busybox");
    assert_eq!(
        (bb.mode, bb.content.len() as u64),
        (0o755, std::fs::metadata("/bin/busybox").unwrap().len())
    );
    let second = f.builder.build(request(&f.context, dockerfile)).unwrap();
    assert_eq!(
        first.digest, second.digest,
        "same inputs and SOURCE_DATE_EPOCH, same image"
    );
    let mut later = request(&f.context, dockerfile);
    later.source_date_epoch = Some(1_800_000_000);
    assert_ne!(f.builder.build(later).unwrap().digest, first.digest);
}

#[test]
fn add_extracts_local_tars_and_rejects_git() {
    use std::io::Write;
    let f = fixture();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o640);
    h.set_uid(7);
    h.set_gid(8);
    h.set_mtime(1234);
    tar.append_data(&mut h, "pkg/file", &b"data\n"[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&tar).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&tar).unwrap();
    let variants = [
        ("pkg.tar", tar.clone()),
        ("pkg.tar.gz", gz.finish().unwrap()),
        ("pkg.tar.bz2", bz.finish().unwrap()),
        ("pkg.tar.xz", xz.finish().unwrap()),
        ("pkg.tar.zst", zstd::encode_all(&tar[..], 3).unwrap()),
    ];
    for (name, bytes) in variants {
        std::fs::write(f.context.join(name), bytes).unwrap();
        let outcome = f
            .builder
            .build(request(
                &f.context,
                &format!("FROM scratch\nADD {name} /x/\n"),
            ))
            .unwrap();
        let l = layer_entries(f.builder.store(), &outcome.manifest.layers[0].digest);
        let e = find(&l, "x/pkg/file");
        assert_eq!(
            (e.content.as_slice(), e.mode, e.uid, e.gid, e.mtime),
            (&b"data\n"[..], 0o640, 7, 8, 1234),
            "{name}"
        );
    }
    // COPY never extracts.
    let outcome = f
        .builder
        .build(request(&f.context, "FROM scratch\nCOPY pkg.tar.gz /x/\n"))
        .unwrap();
    let l = layer_entries(f.builder.store(), &outcome.manifest.layers[0].digest);
    assert_eq!(find(&l, "x/pkg.tar.gz").kind, 'f');

    let err = f
        .builder
        .build(request(
            &f.context,
            "FROM scratch\nADD https://github.com/moby/buildkit.git /src\n",
        ))
        .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[test]
fn add_url_uses_last_modified_mode_0600_and_checksum() {
    use std::io::{Read, Write};
    let f = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // A redirect, the file, then the file again for the bad checksum.
        for _ in 0..3 {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "request cut short");
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8_lossy(&request).into_owned();
            if request.starts_with("GET /start ") {
                conn.write_all(
                    b"HTTP/1.1 302 Found\r\nLocation: /files/data.txt\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                continue;
            }
            let body = b"remote body\n";
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            conn.write_all(body).unwrap();
        }
    });
    let sum = rbuild::oci::Digest::sha256_of(b"remote body\n");
    let dockerfile =
        format!("FROM scratch\nADD --checksum={sum} http://127.0.0.1:{port}/start /dl/\n");
    let outcome = f.builder.build(request(&f.context, &dockerfile)).unwrap();
    let l = layer_entries(f.builder.store(), &outcome.manifest.layers[0].digest);
    let e = find(&l, "dl/data.txt");
    assert_eq!(
        (e.content.as_slice(), e.mode, e.mtime),
        (&b"remote body\n"[..], 0o600, 784_111_777)
    );

    let bad = format!(
        "FROM scratch\nADD --checksum=sha256:{} http://127.0.0.1:{port}/x /x\n",
        "0".repeat(64)
    );
    let err = f.builder.build(request(&f.context, &bad)).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    server.join().unwrap();
}

#[test]
fn bad_input_gives_typed_one_line_errors() {
    let f = fixture();
    let missing = BuildRequest {
        context: ContextSource::Dir(f.root.join("nope")),
        ..BuildRequest::default()
    };
    let err = f.builder.build(missing).unwrap_err();
    assert!(matches!(err, BuildError::Context { .. }), "{err:?}");

    let no_dockerfile = BuildRequest {
        context: ContextSource::Dir(f.context.clone()),
        ..BuildRequest::default()
    };
    let err = f.builder.build(no_dockerfile).unwrap_err();
    assert!(matches!(err, BuildError::Dockerfile { .. }), "{err:?}");
    assert_eq!(err.to_string(), "Dockerfile Dockerfile: not found");

    let err = f
        .builder
        .build(request(&f.context, "FROM scratch\n\nCOPY x /x\n"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dockerfile:3: COPY failed: file not found in build context: x"
    );

    std::fs::write(f.context.join("secret.key"), "k").unwrap();
    std::fs::write(f.context.join(".dockerignore"), "*.key\n").unwrap();
    let err = f
        .builder
        .build(request(&f.context, "FROM scratch\nCOPY secret.key /\n"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dockerfile:2: COPY failed: file not found in build context: secret.key"
    );

    std::fs::write(f.context.join("a"), "a").unwrap();
    let err = f
        .builder
        .build(request(&f.context, "FROM scratch\nCOPY a a /x\n"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the destination must be a directory and end with a /"),
        "{err}"
    );

    let no_run = Builder::new(f.root.join("store"))
        .unwrap()
        .with_runner(std::sync::Arc::new(rbuild::NoRunner));
    let err = no_run
        .build(request(&f.context, "FROM busybox\nRUN echo hi\n"))
        .unwrap_err();
    assert!(
        matches!(err, BuildError::RunUnavailable { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Dockerfile:2: RUN needs a sandbox: this builder runs no RUN steps"
    );
    assert_eq!(err.exit_code(), None);

    let err = f
        .builder
        .build(request(&f.context, "FROM nosuchimage\n"))
        .unwrap_err();
    assert!(err.to_string().starts_with("Dockerfile:1"), "{err}");
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn tar_context_and_sub_path() {
    let f = fixture();
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("sub/Dockerfile", &b"FROM scratch\nCOPY f /f\n"[..]),
        ("sub/f", &b"sub"[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, data).unwrap();
    }
    let tar_path = f.root.join("ctx.tar");
    std::fs::write(&tar_path, tar.into_inner().unwrap()).unwrap();
    let req = BuildRequest {
        context: ContextSource::parse(&format!("tar://{}", tar_path.display())),
        context_sub_path: Some("sub".into()),
        source_date_epoch: Some(0),
        ..BuildRequest::default()
    };
    let outcome = f.builder.build(req).unwrap();
    let l = layer_entries(f.builder.store(), &outcome.manifest.layers[0].digest);
    assert_eq!(find(&l, "f").content, b"sub");
}

#[test]
fn cancellation_stops_before_the_next_step() {
    let f = fixture();
    let req = request(&f.context, "FROM scratch\nENV A=1\n");
    req.cancel.cancel();
    assert!(matches!(f.builder.build(req), Err(BuildError::Cancelled)));
}

#[test]
fn step_cache_hits_on_unchanged_content_and_misses_from_a_changed_copy_on() {
    use rbuild::StepStatus::{Built, Cached, Metadata};
    let f = fixture();
    write_files(&f.context, &[("one", "1", 0o644), ("two", "2", 0o644)]);
    let dockerfile = "FROM busybox\nCOPY one /one\nENV X=1\nCOPY two /two\nWORKDIR /w\n";
    let statuses = |o: &rbuild::BuildOutcome| o.steps.iter().map(|s| s.status).collect::<Vec<_>>();
    let first = f.builder.build(request(&f.context, dockerfile)).unwrap();
    assert_eq!(statuses(&first), vec![Built, Metadata, Built, Built]);
    assert!(first.steps.iter().all(|s| s.cache_key.is_some()));

    // mtime alone does not count.
    let t = filetime_now_plus(&f.context.join("one"));
    let second = f.builder.build(request(&f.context, dockerfile)).unwrap();
    assert_eq!(
        statuses(&second),
        vec![Cached, Metadata, Cached, Cached],
        "touched {t}"
    );
    assert_eq!(second.digest, first.digest);

    // A changed source rebuilds its step and every one after it.
    std::fs::write(f.context.join("two"), "changed").unwrap();
    let third = f.builder.build(request(&f.context, dockerfile)).unwrap();
    assert_eq!(statuses(&third), vec![Cached, Metadata, Built, Built]);
    assert_ne!(third.digest, first.digest);

    let mut no_cache = request(&f.context, dockerfile);
    no_cache.no_cache = true;
    let fourth = f.builder.build(no_cache).unwrap();
    assert_eq!(statuses(&fourth), vec![Built, Metadata, Built, Built]);
    assert_eq!(fourth.digest, third.digest);
}

/// Sets `path`'s mtime one hour later than now; returns the new mtime.
fn filetime_now_plus(path: &Path) -> u64 {
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(later).unwrap();
    later
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn copy_parents_exclude_link_and_from_image() {
    let f = fixture();
    write_files(
        &f.context,
        &[
            ("src/a/x.go", "x", 0o644),
            ("src/a/x_test.go", "t", 0o644),
            ("src/b/y.go", "y", 0o644),
            ("keep/deep/z.txt", "z", 0o644),
        ],
    );
    let dockerfile = "FROM busybox\n\
        COPY --parents src/a/x.go src/b/y.go /p/\n\
        COPY --parents keep/./deep/z.txt /pivot/\n\
        COPY --exclude=*_test.go src/a /ex/\n\
        COPY --link src/b/y.go /bin/y.go\n\
        COPY --from=busybox /etc/passwd /from-image/\n";
    let outcome = f.builder.build(request(&f.context, dockerfile)).unwrap();
    let store = f.builder.store();
    let layer = |i: usize| layer_entries(store, &outcome.manifest.layers[i].digest);
    let paths = |i: usize| {
        layer(i)
            .iter()
            .map(|e| e.path.trim_end_matches('/').to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paths(1),
        vec![
            "p",
            "p/src",
            "p/src/a",
            "p/src/a/x.go",
            "p/src/b",
            "p/src/b/y.go"
        ]
    );
    assert_eq!(paths(2), vec!["pivot", "pivot/deep", "pivot/deep/z.txt"]);
    assert_eq!(paths(3), vec!["ex", "ex/x.go"]);
    // --link does not look at the stage: /bin is a new directory of the layer, not busybox's.
    let l = layer(4);
    let bin = find(&l, "bin");
    assert_eq!((bin.mode, bin.mtime), (0o755, 1_700_000_000));
    assert_eq!(find(&l, "bin/y.go").content, b"y");
    let l = layer(5);
    let passwd = find(&l, "from-image/passwd");
    assert!(String::from_utf8_lossy(&passwd.content).contains("app:x:1000"));
}

#[test]
fn progress_events_and_docker_format_with_zstd() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    write_files(&context, &[("f", "f", 0o644)]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_progress(Arc::new(move |e: &rbuild::BuildEvent| {
            sink.lock().unwrap().push(e.clone())
        }));
    let mut req = request(&context, "FROM scratch\nCOPY f /f\nUSER 1000\n");
    req.format = rbuild::ImageFormat::Docker;
    req.compression = rbuild::Compression::Zstd;
    req.docker_archive_path = Some(dir.path().join("img.tar"));
    let outcome = builder.build(req).unwrap();
    assert_eq!(
        outcome.manifest.media_type,
        Some(rbuild::oci::MediaType::DockerManifest)
    );
    assert_eq!(
        outcome.manifest.config.media_type,
        rbuild::oci::MediaType::DockerConfig
    );
    let layer = &outcome.manifest.layers[0];
    // Docker has no zstd layer type: BuildKit (and rbuild-layer) use OCI's.
    assert_eq!(layer.media_type, rbuild::oci::MediaType::OciLayerZstd);
    let blob = builder.store().read_blob(&layer.digest).unwrap();
    assert!(blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "zstd magic");

    let events = events.lock().unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            rbuild::BuildEvent::StageStarted { .. } => "stage".to_string(),
            rbuild::BuildEvent::StepStarted { keyword, .. } => format!("start {keyword}"),
            rbuild::BuildEvent::StepFinished(r) => format!("end {} {:?}", r.keyword, r.status),
            rbuild::BuildEvent::StepProfile { line, .. } => format!("profile {line}"),
            rbuild::BuildEvent::ImageCommitted { .. } => "committed".into(),
            rbuild::BuildEvent::Output { .. } => "output".into(),
            rbuild::BuildEvent::Isolation { .. } => "isolation".into(),
            rbuild::BuildEvent::CacheMiss { .. } => "miss".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "stage",
            "start COPY",
            "profile 2",
            "end COPY Built",
            "start USER",
            "end USER Metadata",
            "committed"
        ]
    );
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("docker-archive:{}", dir.path().join("img.tar").display()),
        ])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
}

#[test]
fn single_snapshot_squashes_the_stage_layers_over_the_base() {
    let f = fixture();
    write_files(&f.context, &[("a", "a", 0o644), ("b", "b", 0o644)]);
    let mut req = request(
        &f.context,
        "FROM busybox\nCOPY a /a\nWORKDIR /w\nCOPY b /w/b\nCOPY a /w/b\n",
    );
    req.single_snapshot = true;
    let outcome = f.builder.build(req).unwrap();
    assert_eq!(outcome.manifest.layers.len(), 2, "busybox + one snapshot");
    assert_eq!(outcome.config.rootfs.diff_ids.len(), 2);
    let non_empty = outcome
        .config
        .history
        .iter()
        .filter(|h| !h.empty_layer)
        .count();
    assert_eq!(non_empty, 2);
    let l = layer_entries(f.builder.store(), &outcome.manifest.layers[1].digest);
    let paths: Vec<_> = l.iter().map(|e| e.path.trim_end_matches('/')).collect();
    assert_eq!(paths, vec!["a", "w", "w/b"]);
    assert_eq!(find(&l, "w/b").content, b"a", "the last write wins");
}

#[test]
fn onbuild_triggers_of_the_base_run_first_and_existing_workdir_is_an_empty_layer() {
    let f = fixture();
    write_files(&f.context, &[("app.txt", "app", 0o644)]);
    // A base image with an ONBUILD trigger, built and named in the store.
    let mut base = request(
        &f.context,
        "FROM busybox\nONBUILD COPY app.txt /from-trigger/\n",
    );
    base.image_name = Some("example.com/onbuild-base:1".into());
    let base = f.builder.build(base).unwrap();
    assert_eq!(
        base.config.config.on_build,
        vec!["COPY app.txt /from-trigger/"]
    );

    let outcome = f
        .builder
        .build(request(
            &f.context,
            "FROM example.com/onbuild-base:1\nWORKDIR /tmp\n",
        ))
        .unwrap();
    assert!(
        outcome.config.config.on_build.is_empty(),
        "triggers are consumed"
    );
    let store = f.builder.store();
    let trigger_layer = layer_entries(store, &outcome.manifest.layers[1].digest);
    assert_eq!(find(&trigger_layer, "from-trigger/app.txt").content, b"app");
    let workdir_layer = layer_entries(store, &outcome.manifest.layers[2].digest);
    assert!(workdir_layer.is_empty(), "{workdir_layer:?}");
    let history: Vec<_> = outcome
        .config
        .history
        .iter()
        .map(|h| h.created_by.clone().unwrap())
        .collect();
    assert_eq!(
        &history[1..],
        &["COPY app.txt /from-trigger/ # buildkit", "WORKDIR /tmp"]
    );
}

#[test]
fn independent_stages_build_and_feed_the_final_stage() {
    let f = fixture();
    write_files(&f.context, &[("a", "A", 0o644), ("b", "B", 0o644)]);
    let dockerfile = "FROM busybox AS one\nCOPY a /a\n\
        FROM scratch AS two\nCOPY b /b\n\
        FROM scratch AS unused\nCOPY missing /x\n\
        FROM two\nCOPY --from=one /a /from-one/\nCOPY --from=one /bin/busybox /bin/\n";
    let outcome = f.builder.build(request(&f.context, dockerfile)).unwrap();
    assert_eq!(
        outcome
            .steps
            .iter()
            .map(|s| (s.stage, s.line))
            .collect::<Vec<_>>(),
        vec![(0, 2), (1, 4), (3, 8), (3, 9)],
        "reports in plan order; the unused stage is never built"
    );
    let store = f.builder.store();
    assert_eq!(outcome.manifest.layers.len(), 3);
    let l = layer_entries(store, &outcome.manifest.layers[0].digest);
    assert_eq!(find(&l, "b").content, b"B");
    let l = layer_entries(store, &outcome.manifest.layers[1].digest);
    assert_eq!(find(&l, "from-one/a").content, b"A");
    let again = f.builder.build(request(&f.context, dockerfile)).unwrap();
    assert_eq!(again.digest, outcome.digest);
}

#[test]
fn reader_context_dockerfile_specific_ignore_and_stage_errors() {
    let f = fixture();
    // A gzip tar stream as the context (what `tar://stdin` gives).
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, data) in [
        ("app.Dockerfile", &b"FROM scratch\nCOPY . /ctx/\n"[..]),
        ("app.Dockerfile.dockerignore", &b"*.secret\napp.*\n"[..]),
        (".dockerignore", &b"keep.txt\n"[..]),
        ("keep.txt", &b"k"[..]),
        ("x.secret", &b"s"[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, data).unwrap();
    }
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    let req = BuildRequest {
        context: ContextSource::Reader(Box::new(std::io::Cursor::new(bytes))),
        dockerfile: DockerfileSource::Path("app.Dockerfile".into()),
        source_date_epoch: Some(0),
        ..BuildRequest::default()
    };
    let outcome = f.builder.build(req).unwrap();
    let l = layer_entries(f.builder.store(), &outcome.manifest.layers[0].digest);
    let paths: Vec<_> = l.iter().map(|e| e.path.trim_end_matches('/')).collect();
    // `<Dockerfile>.dockerignore` wins over `.dockerignore`.
    assert_eq!(paths, vec!["ctx", "ctx/.dockerignore", "ctx/keep.txt"]);

    let err = f
        .builder
        .build(request(
            &f.context,
            "FROM scratch AS base\nFROM scratch\nCOPY --from=base /nope /x\n",
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Dockerfile:3: COPY failed: file not found in stage base: /nope"
    );
}

#[test]
fn docker_format_lists_base_layers_with_docker_media_types() {
    let f = fixture();
    write_files(&f.context, &[("f", "f", 0o644)]);
    let mut req = request(&f.context, "FROM busybox\nCOPY f /f\n");
    req.format = rbuild::ImageFormat::Docker;
    let outcome = f.builder.build(req).unwrap();
    let types: Vec<_> = outcome
        .manifest
        .layers
        .iter()
        .map(|l| l.media_type.as_str().to_string())
        .collect();
    assert_eq!(
        types,
        vec![
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ]
    );
}

/// A build's scratch trees go to the work area's trash (private), never elsewhere, and
/// `empty_trash` (`rbuild prune`) leaves it empty; the build dir itself is gone when the
/// build returns.
#[test]
fn scratch_trees_go_to_the_private_trash_and_prune_empties_it() {
    let f = fixture();
    write_files(
        &f.context,
        &[("a.txt", "a\n", 0o644), ("b/c.txt", "c\n", 0o644)],
    );
    f.builder
        .build(request(
            &f.context,
            "FROM busybox\nCOPY a.txt /a.txt\nCOPY b /b\nWORKDIR /w\n",
        ))
        .unwrap();
    let work = f.root.join("store/.rbuild-work");
    let left: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| n == "trash"),
        "only the trash may outlive a build: {left:?}"
    );
    let trash = work.join("trash");
    if trash.exists() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&trash).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the trash is private");
    }
    // The build's own background thread may still be deleting beside it: both converge.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        f.builder.empty_trash();
        if std::fs::read_dir(&trash).map_or(true, |mut d| d.next().is_none()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "prune does not empty the trash"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
