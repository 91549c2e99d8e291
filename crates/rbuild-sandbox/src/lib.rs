//! `rbuild-sandbox` runs one build step (`RUN`) isolated from the builder.
//!
//! Two modes, probed in this order (or forced, like `--isolation`):
//! - [`Isolation::Userns`]: user, mount, PID, UTS and IPC namespaces (plus a network namespace
//!   for `--network=none`), uid/gid maps from `/etc/subuid` ranges (see [`idmap`]), the root an
//!   overlay of read-only layer dirs with a fresh upper dir that afterwards holds exactly the
//!   step's changes (whiteouts are 0/0 character devices, opaque dirs carry the
//!   `user.overlay.opaque` xattr), `pivot_root`, a fresh `/proc`, a minimal `/dev`, and
//!   `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` bound read-only on top.
//! - [`Isolation::Chroot`]: for real root where user namespaces are forbidden: a mount (and
//!   PID…) namespace when allowed, `chroot` into a materialised rootfs that the step changes in
//!   place.
//!
//! The work happens in a helper process: our own binary re-executed with a hidden first
//! argument, never a `fork()` of the (multithreaded) builder. The binary must therefore call
//! [`run_helper_if_requested`] on the first line of `main`, before any thread starts (and
//! [`enter_rootless_userns`] right after it). The step's root holds Docker's default
//! capability set, its init is PID 1 of its PID namespace, and when the main process exits
//! every other process of the step is killed. If the builder dies or cancels
//! ([`CancelHandle`]), the step dies too.
//!
//! # What the caller gets back (the contract with the snapshot code)
//! - Mount points that the sandbox had to create (for `/proc`, `/dev`, `/sys`, the `/etc`
//!   files, `RUN --mount` targets) are removed after the step when still empty, and the
//!   existing directory they were created in gets its times back. Such a directory (typically
//!   `/etc` when the image has no `/etc/resolv.conf`) may remain in the upper dir as a
//!   copied-up twin of the lower one: same mode, owner and times, no entries, plus overlay's
//!   own `user.overlay.origin` xattr. The differ must skip directories whose metadata equals
//!   the lower layer's (as BuildKit's overlay differ does) and never copy `user.overlay.*`
//!   xattrs into a layer (`user.overlay.opaque=y` means an opaque directory).
//! - The working directory, when missing, is created root-owned 0755 and stays in the
//!   upper dir (BuildKit's runc executor does the same).
//! - After a failed, killed or cancelled step the upper dir must be discarded: mount points
//!   may be left in it.
//! - Owners in the upper dir are host ids: translate them with [`Sandbox::id_map`]
//!   (identity for real root; subordinate ids for a rootless builder).
//! - The scratch dir is the caller's to delete after the step (it holds the overlay work dir
//!   and mount points; everything in it belongs to the builder's uid).
//!
//! ```no_run
//! use rbuild_sandbox::{RootFs, RunSpec, Sandbox};
//!
//! fn main() -> Result<(), rbuild_sandbox::SandboxError> {
//!     rbuild_sandbox::run_helper_if_requested();
//!     // A rootless builder becomes root of its own user namespace (ids 1.. = its subuids),
//!     // so it can read and delete what steps chown to other users.
//!     rbuild_sandbox::enter_rootless_userns()?;
//!     let sandbox = Sandbox::detect()?;
//!     let spec = RunSpec::new(
//!         RootFs::Overlay { lowers: vec!["/store/l1".into()], upper: "/work/up".into() },
//!         "/work/scratch",
//!         vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
//!     );
//!     let status = sandbox.run(&spec, |line| {
//!         tracing::info!("{:?}: {}", line.stream, String::from_utf8_lossy(line.bytes))
//!     })?;
//!     assert!(status.success());
//!     Ok(())
//! }
//! ```

mod detect;
mod error;
mod helper;
pub mod idmap;
mod network;
mod output;
mod protocol;
mod rootless;
mod sandbox;
mod spec;
mod upper;
pub mod user;

pub use detect::{find_in_path, proc_is_masked, HostFacts};
pub use error::SandboxError;
pub use helper::run_helper_if_requested;
pub use idmap::{IdMap, IdMapEntry};
pub use output::{OutputLine, Stream, MAX_LINE};
pub use protocol::HELPER_MARKER;
pub use rootless::{enter_rootless_userns, RootlessUserns};
pub use sandbox::{CancelHandle, ProbeReport, Sandbox, SandboxBuilder, StepStatus};
pub use spec::{EtcFiles, Mount, MountKind, Network, RootFs, RunSpec, SecretBytes};
pub use upper::map_upper_owners_to_container;

/// How steps are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Isolation {
    /// User namespaces + overlay (rootless; the default).
    Userns,
    /// chroot into a materialised rootfs (real root only).
    Chroot,
}

impl std::str::FromStr for Isolation {
    type Err = SandboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "userns" => Ok(Isolation::Userns),
            "chroot" => Ok(Isolation::Chroot),
            other => Err(SandboxError::InvalidSpec(format!(
                "isolation {other:?}: expected \"userns\" or \"chroot\""
            ))),
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::Userns => "userns",
            Isolation::Chroot => "chroot",
        })
    }
}
