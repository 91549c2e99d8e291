//! The end-to-end build run by a freshly created non-root user with subordinate id ranges
//! (issues 5 and 8): `rbuild` re-enters its own user namespace, RUN steps chown to 100:101,
//! files are created as `USER app`, and the owners arrive in the pushed image as written.
//!
//! Needs root (to create the user); skipped with a notice otherwise unless `CI` is set. Also
//! needs `docker-registry`, `busybox-static`, `skopeo`, `passwd` (useradd, usermod) and
//! `uidmap` (newuidmap).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

mod common;

use common::{is_root, sh};
use rbuild_testkit::skopeo::{self, Access};
use rbuild_testkit::{BusyboxImage, ImageTree, RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// The user the test creates (kept afterwards: creating it is the slow, racy part).
const USER: &str = "rbuild-e2e";

fn has_range(file: &str, user: &str) -> bool {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(user))
}

/// Creates [`USER`] with subordinate uid and gid ranges when absent.
fn ensure_user() {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        sh("useradd", &["--create-home", "--shell", "/bin/sh", USER]);
    }
    if !has_range("/etc/subuid", USER) {
        sh("usermod", &["--add-subuids", "400000-465535", USER]);
    }
    if !has_range("/etc/subgid", USER) {
        sh("usermod", &["--add-subgids", "400000-465535", USER]);
    }
}

/// Gives the whole tree at `path` to [`USER`].
fn give_to_user(path: &Path) {
    sh(
        "chown",
        &["-R", &format!("{USER}:{USER}"), path.to_str().unwrap()],
    );
}

// A skipped check must say why to the person running it.
#[allow(clippy::print_stderr)]
#[test]
fn a_fresh_non_root_user_builds_and_pushes_with_run_chown() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the non-root end-to-end test must create a user: run the tests as root in CI"
        );
        eprintln!("skipping: not root (the test creates a user with useradd)");
        return;
    }
    if !(BusyboxImage::available_or_skip() && skopeo::available_or_skip()) {
        return;
    }
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    BusyboxImage::build()
        .unwrap()
        .push_to(&registry, "library/busybox:latest")
        .unwrap();
    ensure_user();

    let dir = tempfile::tempdir().unwrap();
    // The binary is copied next to the build, so the user can run it whatever the
    // permissions of the target directory.
    let binary = dir.path().join("rbuild");
    fs::copy(RBUILD, &binary).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    let context = dir.path().join("context");
    fs::create_dir(&context).unwrap();
    fs::write(context.join("hello.txt"), "from the context\n").unwrap();
    fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {}/library/busybox:latest\n\
             COPY hello.txt /srv/hello.txt\n\
             RUN mkdir /owned && echo owned > /owned/file && chown -R 100:101 /owned\n\
             RUN chown 100:101 /srv/hello.txt\n\
             USER app\n\
             RUN mkdir -p /tmp/made-by-app && echo by-app > /tmp/made-by-app/file\n",
            registry.host()
        ),
    )
    .unwrap();
    give_to_user(dir.path());
    // tempfile makes the directory 0700; the user owns it now, so that is enough.

    let destination = format!("{}/nonroot/app:v1", registry.host());
    let digest_file = dir.path().join("digest");
    let output = Command::new("runuser")
        .args(["-u", USER, "--"])
        .arg(&binary)
        .arg("--context")
        .arg(&context)
        .arg("--cache-dir")
        .arg(dir.path().join("store"))
        .arg("--destination")
        .arg(&destination)
        .arg("--digest-file")
        .arg(&digest_file)
        .env("HOME", dir.path())
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rbuild as {USER} exited with {:?}:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let digest = fs::read_to_string(&digest_file).unwrap();
    let access = Access::default();
    let inspected = skopeo::inspect(&destination, &access).unwrap();
    assert_eq!(inspected["Digest"], digest.trim());

    let pulled_dir = dir.path().join("pulled");
    skopeo::copy_to_oci_dir(&destination, &access, &pulled_dir).unwrap();
    let tree = ImageTree::from_oci_layout(&pulled_dir, Some("copied")).unwrap();
    let owner = |path: &str| {
        let entry = tree
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing:\n{}", tree.listing()));
        (entry.uid, entry.gid)
    };
    assert_eq!(owner("/owned"), (100, 101));
    assert_eq!(owner("/owned/file"), (100, 101));
    assert_eq!(owner("/srv/hello.txt"), (100, 101));
    assert_eq!(owner("/srv"), (0, 0));
    assert_eq!(
        owner("/tmp/made-by-app"),
        (1000, 1000),
        "created as USER app"
    );
    assert_eq!(owner("/tmp/made-by-app/file"), (1000, 1000));
    assert_eq!(tree.text_of("/owned/file").as_deref(), Some("owned\n"));
    assert_eq!(tree.config.config.user, "app");
    // Removing the temp dir needs root here (the store holds files the user's namespace
    // owns as other ids): the test runs as root, and TempDir's drop does it.
}
