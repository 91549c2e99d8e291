//! Dogfooding (issue 8 item 7): rbuild builds its own CI image from `deploy/Dockerfile`, and
//! the result works: unpacked by `umoci`, its rbuild, newuidmap and (debug) busybox shell run in
//! a chroot of the image's filesystem. The binary under test is this build's (dynamically
//! linked: `make-context.sh` copies its libraries into the image; `deploy/build.sh` uses a
//! static one).
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn skip_unless_root() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tools = ["umoci", "chroot", "newuidmap"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if root && tools {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "deploy image test needs root, umoci, chroot and newuidmap (CI is set)"
    );
    eprintln!("SKIPPED: deploy image test needs root, umoci, chroot and newuidmap");
    true
}

/// Builds `target` of deploy/Dockerfile into an OCI layout and unpacks it; returns the rootfs.
fn build_and_unpack(work: &Path, context: &Path, target: &str) -> PathBuf {
    let layout = work.join(format!("{target}-layout"));
    ok(
        Command::new(RBUILD)
            .arg("--context")
            .arg(context)
            .arg("--dockerfile")
            .arg(repo().join("deploy/Dockerfile"))
            .args(["--target", target, "--no-push", "--reproducible"])
            .arg("--oci-layout-path")
            .arg(&layout)
            .arg("--cache-dir")
            .arg(work.join("store"))
            .output()
            .unwrap(),
        &format!("rbuild --target {target}"),
    );
    let bundle = work.join(format!("{target}-bundle"));
    ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle)
            .output()
            .unwrap(),
        "umoci unpack",
    );
    bundle.join("rootfs")
}

fn chroot(rootfs: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(rootfs)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn rbuild_builds_its_own_ci_image_and_it_runs() {
    if skip_unless_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    ok(
        Command::new("bash")
            .arg(repo().join("deploy/make-context.sh"))
            .arg(RBUILD)
            .arg(&context)
            .output()
            .unwrap(),
        "make-context.sh",
    );

    let plain = build_and_unpack(work.path(), &context, "rbuild");
    let version = ok(
        chroot(&plain, &["/usr/local/bin/rbuild", "version"]),
        "rbuild version",
    );
    // The image's rbuild is this build's: same version, commit and build date.
    let here = ok(
        Command::new(RBUILD).arg("version").output().unwrap(),
        "rbuild version here",
    );
    assert_eq!(version.trim(), here.trim());
    assert!(
        version.starts_with(&format!("rbuild {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // newuidmap is there, setuid root, and its libraries load (it prints its usage, exit 1).
    let usage = chroot(&plain, &["/usr/bin/newuidmap"]);
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("usage: newuidmap"),
        "{usage:?}"
    );
    let meta = std::fs::metadata(plain.join("usr/bin/newuidmap")).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        (meta.permissions().mode() & 0o7777, meta.uid()),
        (0o4755, 0)
    );
    assert_eq!(
        std::fs::metadata(plain.join("workspace")).unwrap().uid(),
        1000
    );
    assert_eq!(std::fs::metadata(plain.join("home")).unwrap().uid(), 0);
    assert!(plain.join("etc/ssl/certs/ca-certificates.crt").is_file());
    assert!(
        !plain.join("busybox").exists(),
        "the plain image has no shell"
    );
    let config = std::fs::read_to_string(plain.join("../config.json")).unwrap();
    assert!(config.contains("/usr/local/bin/rbuild"), "{config}");

    let debug = build_and_unpack(work.path(), &context, "debug");
    let shell = ok(
        chroot(
            &debug,
            &["/busybox/sh", "-c", "id -u rbuild && rbuild version"],
        ),
        "debug shell",
    );
    assert_eq!(
        shell.lines().collect::<Vec<_>>(),
        vec!["1000".to_string(), here.trim().to_string()]
    );
}
