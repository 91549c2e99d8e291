//! RUN goes through [`StepRunner`], a narrow trait, so the engine does not depend on how a
//! command is isolated.

use rbuild_layer::ChangeSet;
use std::path::{Path, PathBuf};

/// What a RUN step should execute. Its `Debug` form lists the environment's names only: secrets
/// exposed with `--mount=type=secret,env=` are among its values.
#[derive(Clone)]
pub struct RunRequest<'a> {
    /// The stage's filesystem as it is before the step (read-only for the runner).
    pub rootfs: &'a Path,
    /// A directory the runner may use (upper dir, work dir...); removed after the step.
    pub scratch: &'a Path,
    /// The command line (shell prepended for the shell form).
    pub argv: Vec<String>,
    /// `NAME=value` environment: the image's ENV and the build args in scope.
    pub env: Vec<String>,
    /// The working directory.
    pub workdir: String,
    /// `USER`, empty for root.
    pub user: String,
    /// The step's network: `RUN --network=none` or `host`, else the build's default
    /// ([`crate::BuildRequest::network`]).
    pub network: rbuild_sandbox::Network,
    /// `RUN --mount`s, ready for the sandbox (host paths resolved, cache locks held by the
    /// engine while the step runs), in the Dockerfile's order.
    pub mounts: Vec<rbuild_sandbox::Mount>,
    /// The build's cancellation: a runner stops the step when it fires.
    pub cancel: crate::CancelToken,
    /// Apply the sandbox's seccomp filter (off only for an allowed `RUN --security=insecure`).
    pub seccomp: bool,
}

impl std::fmt::Debug for RunRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<&str> = self
            .env
            .iter()
            .map(|e| e.split('=').next().unwrap_or(""))
            .collect();
        f.debug_struct("RunRequest")
            .field("rootfs", &self.rootfs)
            .field("scratch", &self.scratch)
            .field("argv", &self.argv)
            .field("env_names", &env_names)
            .field("workdir", &self.workdir)
            .field("user", &self.user)
            .field("network", &self.network)
            .field("mounts", &self.mounts)
            .field("seccomp", &self.seccomp)
            .finish_non_exhaustive()
    }
}

/// What a RUN step changed.
#[derive(Debug)]
pub struct RunChanges {
    /// The exit code.
    pub exit_code: i32,
    /// The tree the changed files are read from (an overlay upper dir, or the rootfs).
    pub root: PathBuf,
    /// The changes.
    pub changes: ChangeSet,
    /// Owners the layer records instead of the files' own (paths relative to `root`): the
    /// ones a builder that is not root could not write.
    pub owners: rbuild_layer::OwnerMap,
    /// How long finding the changes took (after the process ended).
    pub snapshot: std::time::Duration,
    /// How the stage's filesystem comes to hold the step's result.
    pub after: AfterRun,
}

/// How the stage's filesystem ([`RunRequest::rootfs`]) comes to hold what a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRun {
    /// The engine applies the step's layer to it (always right, the slowest).
    ApplyLayer,
    /// The runner changed it in place: it holds the step's result already.
    InPlace,
    /// [`RunChanges::root`] is an overlayfs upper dir over it, whose files hold the owners
    /// applying the layer would give them: the engine moves them into it
    /// ([`rbuild_layer::merge_overlay_upper`]) instead of writing them again.
    MergeUpper,
}

/// Runs RUN steps.
pub trait StepRunner: Send + Sync {
    /// Runs one step; output lines go to `on_line`.
    fn run(
        &self,
        request: &RunRequest<'_>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<RunChanges, RunError>;

    /// Gets ready before a build's first step (a sandbox probes its mode here, so that a host
    /// where RUN cannot be isolated fails before anything is built) and says in one line how
    /// steps are isolated, or `None` when there is nothing to say.
    fn ready(&self) -> Result<Option<String>, RunError> {
        Ok(None)
    }
}

/// Why a runner could not run a step.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No sandbox is available here (the reason says why).
    #[error("RUN needs a sandbox: {0}")]
    Unavailable(String),
    /// The build was cancelled while the step ran.
    #[error("cancelled")]
    Cancelled,
    /// The sandbox failed (not the command).
    #[error("{0}")]
    Failed(String),
}

/// A runner for builds that must not run anything: every RUN fails with
/// [`RunError::Unavailable`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRunner;

impl StepRunner for NoRunner {
    fn run(
        &self,
        _request: &RunRequest<'_>,
        _on_line: &mut dyn FnMut(&str),
    ) -> Result<RunChanges, RunError> {
        Err(RunError::Unavailable(
            "this builder runs no RUN steps".into(),
        ))
    }
}

/// How RUN steps are isolated (`--isolation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// User namespaces with an overlay where the host allows them, else chroot (real root).
    #[default]
    Auto,
    /// Rootless user namespaces over an overlay.
    Userns,
    /// chroot into the materialised filesystem (real root only).
    Chroot,
}
