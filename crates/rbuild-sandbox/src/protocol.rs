//! The typed messages between the builder (parent) and the re-executed helper, one JSON
//! document per line over the socket that is the helper's fd 0.
//!
//! ```text
//! parent                      helper (H1)              init (pid 1)        step
//!   ── Request ─────────────►
//!                             unshare(USER)
//!   ◄──────────── NeedIdMap ─
//!   write maps (newuidmap…)
//!   ── IdMapWritten ────────►
//!                             unshare(NS|PID|…), fork ─►
//!                                                      overlay, pivot_root,
//!                                                      /proc /dev mounts, fork ─► exec
//!   ◄─────────────────────────────────── Warning* ─
//!                                                      reap; kill the rest;
//!   ◄───────────────────────────────── Exited{code} ─  unmount, drop stubs
//! ```

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::{IdMap, Isolation, RunSpec};

/// The hidden first argument that turns our binary into the helper.
pub const HELPER_MARKER: &str = "__rbuild-sandbox-helper";

/// What the parent asks the helper to do.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Run one step.
    Run {
        /// The step.
        spec: Box<RunSpec>,
        /// The mode chosen by the parent.
        isolation: Isolation,
        /// Container uids that exist in the namespace (None: all).
        mapped_uids: Option<Vec<(u32, u32)>>,
        /// Set for real root: the step's id map, through which the helper shows the layers
        /// and bind sources to the step (idmapped mounts prepared before it enters the user
        /// namespace).
        layer_map: Option<IdMap>,
    },
    /// Check that the mode works here (namespaces, mounts, overlay).
    Probe {
        /// The mode to check.
        isolation: Isolation,
        /// As in [`Request::Run`]: also check idmapped mounts.
        layer_map: Option<IdMap>,
    },
}

/// Parent → helper.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToHelper {
    /// The request (first message).
    Request(Box<Request>),
    /// The id maps are in place.
    IdMapWritten,
    /// The parent could not write the maps; the helper gives up.
    IdMapFailed(String),
    /// The network namespace is connected.
    NetworkReady,
    /// It could not be connected; the helper gives up.
    NetworkFailed(String),
}

/// Why the helper failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FailKind {
    /// Namespaces, mounts, rootfs.
    Setup,
    /// USER could not be resolved.
    User,
    /// The executable could not be started.
    Exec,
}

/// Helper → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromHelper {
    /// Please write the id maps of my (the helper's) user namespace.
    NeedIdMap,
    /// Please connect my (the helper's) new network namespace to the outside
    /// ([`crate::Network::Sandbox`]).
    NeedNetwork,
    /// Something the builder should log.
    Warning(String),
    /// The request failed before the step could run.
    Failed {
        /// Category.
        kind: FailKind,
        /// One-line description.
        message: String,
    },
    /// The step's main process ended: its exit code (128+n for signal n).
    Exited {
        /// Exit code.
        code: i32,
    },
    /// A probe succeeded.
    ProbeOk {
        /// A fresh `/proc` could be mounted (else the host's is bound).
        fresh_proc: bool,
        /// An overlay with `userxattr` could be mounted.
        overlay: bool,
    },
}

/// Writes one message as one line with a single `write` (so that two processes sharing the
/// socket never interleave inside a message).
pub(crate) fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Reads one message; `Ok(None)` at end of stream.
pub(crate) fn recv<T: for<'de> Deserialize<'de>>(
    r: &mut impl BufRead,
) -> std::io::Result<Option<T>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line).map(Some).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad message {line:?}: {e}"),
        )
    })
}
