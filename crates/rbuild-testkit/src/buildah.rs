//! Buildah as the oracle: `buildah bud --isolation chroot --format docker --layers=false` (Debian's
//! buildah 1.28) with a private storage root (`vfs` driver, so no overlay mount is needed), then
//! `buildah push IMAGE docker-archive:FILE` so [`crate::ImageTree`] can read the result.
//!
//! `--format docker` because Buildah drops HEALTHCHECK, ONBUILD and SHELL from OCI configs;
//! and a docker-archive rather than an OCI layout because pushing to `oci:` converts the
//! config to OCI and drops them again.
//! Bases are pulled over plain HTTP from a [`crate::TestRegistry`] (`--tls-verify=false`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestkitError;

/// The buildah binary.
pub const BUILDAH_BINARY: &str = "buildah";

/// One build for Buildah.
#[derive(Clone, Debug, Default)]
pub struct BuildahRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (anywhere; `.dockerignore` is read from the context).
    pub dockerfile: PathBuf,
    /// `--build-arg NAME=value`, in order.
    pub build_args: Vec<(String, String)>,
    /// `--target STAGE`.
    pub target: Option<String>,
    /// `--label NAME=value`, in order.
    pub labels: Vec<(String, String)>,
}

/// A Buildah whose builds each get their own storage (root, runroot, temp dir) under a
/// temporary directory removed on drop: builds may run in parallel without sharing layers
/// (two builds in one vfs root race on the base's layers: "layer not known").
#[derive(Debug)]
pub struct Buildah {
    dir: tempfile::TempDir,
    builds: std::sync::atomic::AtomicU32,
}

impl Buildah {
    /// Whether `buildah` runs.
    pub fn available() -> bool {
        Command::new(BUILDAH_BINARY)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Whether to run the oracle: `true` when buildah is installed; otherwise prints a notice
    /// and returns `false`, or panics when `CI` is set (CI must run every check).
    // The notice is the point: a skipped test must say why to the person running it.
    #[allow(clippy::print_stderr)]
    pub fn available_or_skip() -> bool {
        if Self::available() {
            return true;
        }
        if std::env::var_os("CI").is_some() {
            panic!("buildah not found and CI is set: apt-get install buildah");
        }
        eprintln!("skipping buildah oracle: buildah not found (apt-get install buildah)");
        false
    }

    /// A Buildah with fresh, private storage.
    pub fn new() -> Result<Buildah, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-buildah-")
            .tempdir()
            .map_err(|e| TestkitError::io("create buildah temp dir", e))?;
        Ok(Buildah {
            dir,
            builds: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn command(storage: &Path) -> Command {
        let mut command = Command::new(BUILDAH_BINARY);
        command
            .env("TMPDIR", storage.join("tmp"))
            .arg("--root")
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("runroot"))
            .arg("--storage-driver")
            .arg("vfs");
        command
    }

    /// Builds `request` and writes the image as a docker-archive file `output`; the image is
    /// then removed from Buildah's storage.
    pub fn build(&self, request: &BuildahRequest, output: &Path) -> Result<(), TestkitError> {
        let n = self
            .builds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("localhost/rbuild-oracle:build{n}");
        let storage = self.dir.path().join(format!("build{n}"));
        for sub in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(storage.join(sub))
                .map_err(|e| TestkitError::io(format!("create buildah {sub} dir"), e))?;
        }
        let result = Self::build_in(&storage, &tag, request, output);
        // Only frees space early: the whole temporary directory goes on drop anyway.
        let _ = std::fs::remove_dir_all(&storage);
        result
    }

    fn build_in(
        storage: &Path,
        tag: &str,
        request: &BuildahRequest,
        output: &Path,
    ) -> Result<(), TestkitError> {
        let mut bud = Self::command(storage);
        bud.args([
            "bud",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--layers=false",
            "--tls-verify=false",
            "--quiet",
        ]);
        bud.arg("-f").arg(&request.dockerfile);
        for (name, value) in &request.build_args {
            bud.arg("--build-arg").arg(format!("{name}={value}"));
        }
        for (name, value) in &request.labels {
            bud.arg("--label").arg(format!("{name}={value}"));
        }
        if let Some(target) = &request.target {
            bud.arg("--target").arg(target);
        }
        bud.arg("-t").arg(tag).arg(&request.context);
        run(bud, "buildah bud", &request.dockerfile)?;

        let mut push = Self::command(storage);
        push.args(["push", "--quiet", tag])
            .arg(format!("docker-archive:{}:{tag}", output.display()));
        run(push, "buildah push", &request.dockerfile).map(|_| ())
    }
}

fn run(mut command: Command, what: &str, dockerfile: &Path) -> Result<String, TestkitError> {
    tracing::debug!(?command, "running buildah");
    let output = command
        .output()
        .map_err(|e| TestkitError::io(format!("run {what} (apt-get install buildah)"), e))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let tail: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
        return Err(TestkitError::Image(format!(
            "{what} {} failed ({}): {}",
            dockerfile.display(),
            output.status,
            tail[tail.len().saturating_sub(8)..].join(" | ")
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
