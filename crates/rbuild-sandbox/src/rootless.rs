//! Running the whole builder as root of its own user namespace (as `buildah unshare` and
//! rootlesskit do), so that a non-root builder can read, diff and delete upper dirs whose
//! files belong to subordinate ids, and sees the ids the steps used.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Command;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sched::{unshare, CloneFlags};

use crate::idmap::{HostIds, IdMapPlan, MapMethod};
use crate::SandboxError;

/// Set in the re-executed child: the number of its end of the handshake socket.
const CHILD_FD_VAR: &str = "RBUILD_SANDBOX_USERNS_FD";
/// Set in the re-executed child: the pid of the process that waits for it.
const PARENT_PID_VAR: &str = "RBUILD_SANDBOX_USERNS_PARENT";

/// How the current process stands after [`enter_rootless_userns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootlessUserns {
    /// Nothing to do: already root, or no subordinate ranges (the single-id sandbox applies).
    NotNeeded,
    /// This process is the re-executed child, root of a user namespace with the builder's uid
    /// as 0 and the subordinate range as 1…
    Entered,
}

fn err(what: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::IdMap(format!("entering the rootless user namespace: {what}: {e}"))
}

/// Call at the start of `main`, after [`crate::run_helper_if_requested`] and before any thread
/// starts. For a non-root user with `/etc/subuid` and `/etc/subgid` ranges and
/// `newuidmap`/`newgidmap`, re-executes the program (same arguments, environment and stdio)
/// inside a new user namespace where it is root with the whole range mapped, waits for it and
/// exits with its exit code; in that child, or when not needed, it returns.
pub fn enter_rootless_userns() -> Result<RootlessUserns, SandboxError> {
    if let Some(fd) = std::env::var_os(CHILD_FD_VAR) {
        std::env::remove_var(CHILD_FD_VAR);
        // The build dies with the process that was started (kill -9 of rbuild included), and
        // its steps with it.
        let parent = std::env::var_os(PARENT_PID_VAR).and_then(|p| p.to_str()?.parse::<i32>().ok());
        std::env::remove_var(PARENT_PID_VAR);
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| err("prctl(PR_SET_PDEATHSIG)", e.desc()))?;
        if parent != Some(nix::unistd::getppid().as_raw()) {
            return Err(err("the starting process", "is gone"));
        }
        let fd: i32 = fd
            .to_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("bad fd", CHILD_FD_VAR))?;
        // The parent passed this descriptor to us alone; we take ownership of it.
        let sock = UnixStream::from(
            crate::helper::adopt_inherited_fd(fd).map_err(|e| err("inherited fd", e))?,
        );
        return become_mapped_child(sock).map(|()| RootlessUserns::Entered);
    }
    let plan = IdMapPlan::for_host(&HostIds::read(), false);
    if plan.method != MapMethod::NewIdMap {
        return Ok(RootlessUserns::NotNeeded);
    }
    let code = run_mapped_child(&plan)?;
    std::process::exit(code)
}

fn become_mapped_child(mut sock: UnixStream) -> Result<(), SandboxError> {
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| err("unshare(CLONE_NEWUSER)", e.desc()))?;
    sock.write_all(b"M")
        .map_err(|e| err("asking for id maps", e))?;
    let mut answer = [0u8; 1];
    sock.read_exact(&mut answer)
        .map_err(|e| err("waiting for id maps", e))?;
    if answer != *b"K" {
        return Err(err(
            "the parent could not write the id maps",
            "see its message",
        ));
    }
    Ok(())
}

fn run_mapped_child(plan: &IdMapPlan) -> Result<i32, SandboxError> {
    let (mut ours, theirs) = UnixStream::pair().map_err(|e| err("socketpair", e))?;
    // We are still single-threaded: clearing close-on-exec cannot leak the descriptor into a
    // process spawned concurrently.
    fcntl(&theirs, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| err("fcntl", e))?;
    let mut child = Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env(CHILD_FD_VAR, theirs.as_raw_fd().to_string())
        .env(PARENT_PID_VAR, std::process::id().to_string())
        .spawn()
        .map_err(|e| err("re-executing ourselves", e))?;
    drop(theirs);
    let mut request = [0u8; 1];
    let mapped = match ours.read_exact(&mut request) {
        Ok(()) => plan.install(child.id()),
        Err(e) => Err(err("child vanished", e)),
    };
    let _ = ours.write_all(if mapped.is_ok() { b"K" } else { b"F" });
    let status = child.wait().map_err(|e| err("waiting for the child", e))?;
    mapped?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
