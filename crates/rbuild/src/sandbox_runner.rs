//! [`StepRunner`] over `rbuild-sandbox`: rootless user namespaces over an overlay of the stage's
//! filesystem (the upper dir is the step's change set), or chroot into the materialised
//! filesystem diffed by a before/after metadata scan.
//!
//! The sandbox re-executes the current binary as its helper: a program using this runner must
//! call [`rbuild_sandbox::run_helper_if_requested`] on the first line of `main`.

use crate::runner::{AfterRun, Isolation, RunChanges, RunError, RunRequest, StepRunner};
use crate::unchanged_dirs::{drop_unchanged_overlay_dirs, drop_unchanged_scanned_dirs};
use rbuild_sandbox::{RootFs, RunSpec, Sandbox};

/// Runs RUN steps in an `rbuild-sandbox` [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxRunner {
    sandbox: Sandbox,
}

impl SandboxRunner {
    /// A runner over a configured sandbox.
    pub fn new(sandbox: Sandbox) -> SandboxRunner {
        SandboxRunner { sandbox }
    }

    /// The sandbox in use.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Whether a step's upper dir, once its owners are mapped back, holds the owners that
    /// applying its layer would give: yes for root (the files get the container's ids) and
    /// for a builder with one id (the files are its own, as an apply by it makes them); not
    /// for a builder with a subordinate range, whose files keep ids of that range.
    fn upper_owners_as_applied(&self) -> bool {
        let one = |entries: &[rbuild_sandbox::IdMapEntry]| matches!(entries, [e] if e.count == 1);
        let map = self.sandbox.id_map();
        rustix::process::geteuid().is_root() || (one(&map.uids) && one(&map.gids))
    }
}

/// One line on how a sandbox isolates steps.
fn describe(sandbox: &Sandbox) -> String {
    let map = sandbox.id_map();
    match sandbox.isolation() {
        rbuild_sandbox::Isolation::Chroot => {
            "chroot: RUN steps run as the builder's root, NOT isolated from it (Kaniko's level)"
                .into()
        }
        rbuild_sandbox::Isolation::Userns => {
            let ids = match (map.uid_to_host(0), map.uids.as_slice()) {
                (Some(first), [only]) if only.count > 1 => {
                    format!(
                        "host ids {first}-{}",
                        u64::from(first) + u64::from(only.count) - 1
                    )
                }
                (Some(first), _) => format!("host uid {first} as root"),
                (None, _) => "no host id".into(),
            };
            format!("userns: RUN steps run in user, mount, PID, UTS and IPC namespaces as {ids}")
        }
    }
}

impl StepRunner for SandboxRunner {
    fn ready(&self) -> Result<Option<String>, RunError> {
        Ok(Some(describe(&self.sandbox)))
    }

    fn run(
        &self,
        request: &RunRequest<'_>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<RunChanges, RunError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| RunError::Failed(format!("{what}: {e}"));
        let work = request.scratch.join("work");
        std::fs::create_dir_all(&work).map_err(|e| failed("scratch dir", &e))?;
        let overlay = self.sandbox.supports_overlay();
        let upper = request.scratch.join("upper");
        let root = if overlay {
            std::fs::create_dir_all(&upper).map_err(|e| failed("upper dir", &e))?;
            RootFs::Overlay {
                lowers: vec![request.rootfs.to_path_buf()],
                upper: upper.clone(),
            }
        } else {
            RootFs::Dir(request.rootfs.to_path_buf())
        };
        let before = if overlay {
            None
        } else {
            Some(rbuild_layer::TreeScan::scan(request.rootfs).map_err(|e| failed("scan", &e))?)
        };
        let mut spec = RunSpec::new(root, &work, request.argv.clone());
        spec.env = request.env.clone();
        spec.cwd = request.workdir.clone();
        spec.user = request.user.clone();
        spec.mounts = request.mounts.clone();
        spec.seccomp = request.seccomp;
        spec.network = request.network;
        let status = self
            .sandbox
            .run_cancellable(&spec, request.cancel.sandbox_handle(), |line| {
                on_line(&String::from_utf8_lossy(line.bytes))
            })
            .map_err(|e| match e {
                rbuild_sandbox::SandboxError::Cancelled => RunError::Cancelled,
                e => RunError::Failed(e.to_string()),
            })?;
        let snapshot_start = std::time::Instant::now();
        let after = match overlay {
            true if self.upper_owners_as_applied() => AfterRun::MergeUpper,
            true => AfterRun::ApplyLayer,
            false => AfterRun::InPlace,
        };
        let (root, changes, owners) = if overlay {
            let changes = rbuild_layer::changes_from_overlay_upper(&upper)
                .map_err(|e| failed("changes", &e))?;
            // The upper dir holds the step's host ids (a shifted range for real root), the
            // lower the container's: map first, then compare.
            let owners =
                rbuild_sandbox::map_upper_owners_to_container(&upper, self.sandbox.id_map())
                    .map_err(|e| failed("owners of the upper dir", &e))?;
            let changes = drop_unchanged_overlay_dirs(&changes, &upper, request.rootfs, &owners)
                .map_err(|e| failed("changes", &e))?;
            (upper, changes, owners)
        } else {
            let after =
                rbuild_layer::TreeScan::scan(request.rootfs).map_err(|e| failed("scan", &e))?;
            let before = before.as_ref().expect("scanned before");
            let changes = rbuild_layer::diff(before, &after);
            let changes = drop_unchanged_scanned_dirs(&changes, before, &after)
                .map_err(|e| failed("changes", &e))?;
            (request.rootfs.to_path_buf(), changes, Default::default())
        };
        Ok(RunChanges {
            exit_code: status.code,
            root,
            changes,
            owners,
            snapshot: snapshot_start.elapsed(),
            after,
        })
    }
}

/// The builder's default runner: a [`SandboxRunner`] made at the first RUN, with the
/// requested isolation; if no sandbox works here, every RUN says why.
#[derive(Debug)]
pub struct LazySandboxRunner {
    isolation: Isolation,
    runner: std::sync::OnceLock<Result<SandboxRunner, String>>,
}

impl LazySandboxRunner {
    /// A runner that probes the sandbox at its first step.
    pub fn new(isolation: Isolation) -> LazySandboxRunner {
        LazySandboxRunner {
            isolation,
            runner: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> Result<&SandboxRunner, RunError> {
        let made = self.runner.get_or_init(|| {
            let builder = Sandbox::builder();
            let builder = match self.isolation {
                Isolation::Auto => builder,
                Isolation::Userns => builder.isolation(rbuild_sandbox::Isolation::Userns),
                Isolation::Chroot => builder.isolation(rbuild_sandbox::Isolation::Chroot),
            };
            let sandbox = builder.build().map_err(|e| e.to_string())?;
            tracing::debug!(isolation = %sandbox.isolation(), "RUN sandbox ready");
            Ok(SandboxRunner::new(sandbox))
        });
        made.as_ref().map_err(|e| RunError::Unavailable(e.clone()))
    }
}

impl StepRunner for LazySandboxRunner {
    fn run(
        &self,
        request: &RunRequest<'_>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<RunChanges, RunError> {
        self.get()?.run(request, on_line)
    }

    fn ready(&self) -> Result<Option<String>, RunError> {
        self.get()?.ready()
    }
}
