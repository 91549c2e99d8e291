//! Issue #12: a stage whose `/etc/passwd` or `/etc/group` is hostile (a symlink to the host's
//! `/dev/zero`, a huge file, a directory) must give `COPY --chown=NAME` and WORKDIR under
//! `USER NAME` a one-line error at once, never a read of a host file or an unbounded read.
//! Before the fix, `--chown=app` followed `etc/passwd -> /dev/zero` on the host and read until
//! memory ran out (24 GB in the report): this test would hang, not fail.

use rbuild::copy::owner::MAX_ACCOUNT_FILE_BYTES;
use rbuild::{BuildRequest, Builder, ContextSource, DockerfileSource};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

fn request(context: &Path, dockerfile: &str) -> BuildRequest {
    BuildRequest {
        context: ContextSource::Dir(context.to_path_buf()),
        dockerfile: DockerfileSource::Text(dockerfile.to_string()),
        source_date_epoch: Some(1_700_000_000),
        ..BuildRequest::default()
    }
}

/// Builds `dockerfile` over a context with `etc/` made by `make_etc`; returns the error text
/// and how long the build took.
fn build_error(make_etc: impl Fn(&Path), dockerfile: &str) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(context.join("etc")).unwrap();
    std::fs::write(context.join("f.txt"), "f").unwrap();
    make_etc(&context.join("etc"));
    let builder = Builder::new(dir.path().join("store")).unwrap();
    let started = Instant::now();
    let err = builder
        .build(request(&context, dockerfile))
        .expect_err("the hostile passwd must stop the build");
    (err.to_string(), started.elapsed())
}

#[test]
fn passwd_symlink_to_host_dev_zero_is_never_read() {
    for dockerfile in [
        "FROM scratch\nCOPY etc /etc\nCOPY --chown=app f.txt /f.txt\n",
        "FROM scratch\nCOPY etc /etc\nUSER app\nWORKDIR /home/app\n",
        "FROM scratch\nCOPY etc /etc\nCOPY --chown=0:staff f.txt /f.txt\n",
    ] {
        let (err, took) = build_error(
            |etc| {
                symlink("/dev/zero", etc.join("passwd")).unwrap();
                symlink("/dev/zero", etc.join("group")).unwrap();
            },
            dockerfile,
        );
        // The link is resolved inside the stage, which has no /dev/zero: nothing to read.
        assert!(
            err.contains("no matching entries in /etc/passwd of the stage")
                || err.contains("no matching entries in /etc/group of the stage"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        assert!(took < Duration::from_secs(60), "took {took:?}");
    }
}

#[test]
fn oversized_or_special_passwd_is_a_clear_error() {
    let (err, _) = build_error(
        |etc| {
            let big = std::fs::File::create(etc.join("big")).unwrap();
            big.set_len(MAX_ACCOUNT_FILE_BYTES + 1).unwrap();
            symlink("big", etc.join("passwd")).unwrap();
        },
        "FROM scratch\nCOPY etc /etc\nCOPY --chown=app f.txt /f.txt\n",
    );
    assert_eq!(
        err,
        format!(
            "Dockerfile:3: COPY failed: /etc/passwd of the stage is larger than {MAX_ACCOUNT_FILE_BYTES} bytes (MAX_ACCOUNT_FILE_BYTES): refusing to read it; use numeric ids or fix the base image"
        )
    );

    let (err, _) = build_error(
        |etc| std::fs::create_dir(etc.join("passwd")).unwrap(),
        "FROM scratch\nCOPY etc /etc\nUSER app\nWORKDIR /w\n",
    );
    assert_eq!(
        err,
        "Dockerfile:4: WORKDIR failed: /etc/passwd of the stage is a directory, not a regular file: it cannot name users (fix the base image)"
    );
}
