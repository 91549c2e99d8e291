//! Issue #12 items 4 and 6/7, through the CLI: the work area cannot be entered by another local
//! user while a build runs; what a `kill -9`ed build left is reclaimed by the next build; a
//! builder that is not root and has no subordinate id range still writes COPY layers whose
//! entries are root's (or `--chown`'s), not its own uid's.
//!
//! Needs root (to create users with `useradd` and run the CLI as them with `runuser`); skipped
//! with a notice otherwise unless `CI` is set. The first test also needs `docker-registry` and
//! `busybox-static`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{is_root, sh};
use rbuild_testkit::{BusyboxImage, ImageTree, RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// A local user with no business in the builder's files.
const PEEK_USER: &str = "rbuild-peek";
/// A builder without subordinate id ranges.
const NOSUB_USER: &str = "rbuild-nosub";

// A skipped check must say why to the person running it.
#[allow(clippy::print_stderr)]
fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "these tests create users: run them as root in CI"
    );
    eprintln!("skipping: not root (the test creates a user with useradd)");
    false
}

/// Creates `user` (no home, no subordinate ids) when absent; removes ranges it has.
fn ensure_user(user: &str) {
    let exists = Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        sh(
            "useradd",
            &[
                "--no-create-home",
                "--shell",
                "/bin/sh",
                "-K",
                "SUB_UID_COUNT=0",
                "-K",
                "SUB_GID_COUNT=0",
                user,
            ],
        );
    }
    for (file, flag) in [
        ("/etc/subuid", "--del-subuids"),
        ("/etc/subgid", "--del-subgids"),
    ] {
        let text = fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let mut fields = line.split(':');
            if fields.next() != Some(user) {
                continue;
            }
            let start: u64 = fields.next().unwrap().parse().unwrap();
            let count: u64 = fields.next().unwrap().parse().unwrap();
            sh(
                "usermod",
                &[flag, &format!("{start}-{}", start + count - 1), user],
            );
        }
        let text = fs::read_to_string(file).unwrap_or_default();
        assert!(
            !text.lines().any(|l| l.split(':').next() == Some(user)),
            "{user} must have no range in {file}"
        );
    }
}

/// Whether `user` can run `test -e path` successfully.
fn user_sees(user: &str, path: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", user, "--", "test", "-e"])
        .arg(path)
        .status()
        .unwrap()
        .success()
}

fn build_dirs(work: &Path) -> Vec<PathBuf> {
    fs::read_dir(work)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("build-")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The unpacked busybox of a running build, once there (anywhere two levels below `work`).
fn wait_for_rootfs(work: &Path, child: &mut std::process::Child) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(120);
    let children = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    loop {
        for level1 in children(work) {
            let mut candidates = vec![level1.join("bin/busybox")];
            candidates.extend(children(&level1).iter().map(|p| p.join("bin/busybox")));
            if let Some(found) = candidates.into_iter().find(|c| c.exists()) {
                return found;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the build ended before its RUN step started: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "no rootfs appeared in {}",
            work.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn another_user_cannot_enter_the_work_area_and_killed_builds_are_reclaimed() {
    if !root_or_skip() || !BusyboxImage::available_or_skip() {
        return;
    }
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    BusyboxImage::build()
        .unwrap()
        .push_to(&registry, "library/busybox:latest")
        .unwrap();
    ensure_user(PEEK_USER);
    let dir = tempfile::tempdir().unwrap();
    // Everything up to the store is open to other users: the work area must be the barrier.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let context = dir.path().join("context");
    fs::create_dir(&context).unwrap();
    fs::write(context.join("f"), "f\n").unwrap();
    let store = dir.path().join("store");
    let work = store.join(".rbuild-work");
    let slow = context.join("Dockerfile.slow");
    fs::write(
        &slow,
        format!(
            "FROM {}/library/busybox:latest\nRUN sleep 20\n",
            registry.host()
        ),
    )
    .unwrap();

    let mut child = Command::new(RBUILD)
        .arg("--context")
        .arg(&context)
        .arg("--dockerfile")
        .arg(&slow)
        .arg("--cache-dir")
        .arg(&store)
        .arg("--no-push")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let busybox = wait_for_rootfs(&work, &mut child);
    assert!(
        user_sees(PEEK_USER, &store),
        "the store itself is reachable"
    );
    assert!(
        !user_sees(PEEK_USER, &busybox),
        "another user reached the unpacked image at {}",
        busybox.display()
    );
    let meta = fs::metadata(&work).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_eq!(meta.uid(), 0);
    for build in build_dirs(&work) {
        assert_eq!(fs::metadata(&build).unwrap().mode() & 0o777, 0o700);
    }

    child.kill().unwrap(); // SIGKILL: no clean-up runs
    child.wait().unwrap();
    let leftovers = build_dirs(&work);
    assert_eq!(leftovers.len(), 1, "the killed build left its directory");

    let quick = context.join("Dockerfile.quick");
    fs::write(&quick, "FROM scratch\nCOPY f /f\n").unwrap();
    let output = Command::new(RBUILD)
        .arg("--context")
        .arg(&context)
        .arg("--dockerfile")
        .arg(&quick)
        .arg("--cache-dir")
        .arg(&store)
        .arg("--no-push")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !leftovers[0].exists(),
        "the next build reclaims the killed build's directory"
    );
    assert!(build_dirs(&work).is_empty(), "and removes its own");
}

#[test]
fn a_non_root_builder_without_subuid_writes_root_owned_copy_layers() {
    if !root_or_skip() {
        return;
    }
    ensure_user(NOSUB_USER);
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("rbuild");
    fs::copy(RBUILD, &binary).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    let context = dir.path().join("context");
    fs::create_dir_all(context.join("tree/sub")).unwrap();
    fs::write(context.join("hello.txt"), "hello\n").unwrap();
    fs::write(context.join("tree/sub/x"), "x\n").unwrap();
    fs::create_dir_all(context.join("bin")).unwrap();
    fs::copy("/usr/bin/busybox", context.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "mkdir"] {
        std::os::unix::fs::symlink("busybox", context.join("bin").join(applet)).unwrap();
    }
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch AS src\n\
         COPY --chown=5:6 tree /t\n\
         FROM scratch\n\
         COPY hello.txt /srv/hello.txt\n\
         COPY --chown=7:8 hello.txt /srv/owned.txt\n\
         COPY tree /opt/tree\n\
         COPY --from=src /t /fromstage\n\
         COPY bin /bin\n\
         RUN echo made > /made && mkdir /rundir\n\
         WORKDIR /wd\n",
    )
    .unwrap();
    sh(
        "chown",
        &[
            "-R",
            &format!("{NOSUB_USER}:{NOSUB_USER}"),
            dir.path().to_str().unwrap(),
        ],
    );
    let layout = dir.path().join("layout");
    let output = Command::new("runuser")
        .args(["-u", NOSUB_USER, "--"])
        .arg(&binary)
        .arg("--context")
        .arg(&context)
        .arg("--cache-dir")
        .arg(dir.path().join("store"))
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(&layout)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rbuild as {NOSUB_USER}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = ImageTree::from_path(&layout).unwrap();
    let owner = |path: &str| {
        let entry = tree
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing:\n{}", tree.listing()));
        (entry.uid, entry.gid)
    };
    for path in [
        "/srv",
        "/srv/hello.txt",
        "/opt",
        "/opt/tree",
        "/opt/tree/sub",
        "/opt/tree/sub/x",
        // A RUN step's files: the builder cannot chown them, the layer records root.
        "/made",
        "/rundir",
        "/wd",
    ] {
        assert_eq!(owner(path), (0, 0), "{path}");
    }
    assert_eq!(owner("/srv/owned.txt"), (7, 8));
    // COPY --from keeps the owners the stage's layers record, not the builder's uid.
    assert_eq!(owner("/fromstage/sub"), (5, 6));
    assert_eq!(owner("/fromstage/sub/x"), (5, 6));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("not privileged"),
        "no warning needed: {stderr}"
    );
}
