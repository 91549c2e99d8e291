//! The helper side: our binary re-executed with [`HELPER_MARKER`] as first argument.
//!
//! Process tree: the helper (H1) enters a new user namespace, has the parent write its id
//! maps, unshares the other namespaces and forks the init (PID 1 of the new PID namespace,
//! [`init`]), which prepares the root and forks the step ([`step`]).

mod init;
mod mounts;
mod rootfs;
mod seccomp;
mod stage;
mod step;
mod stubs;
mod sys;

use std::ffi::OsStr;
use std::fs::File;
use std::io::BufReader;

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use serde::Serialize;

use crate::protocol::{self, FailKind, FromHelper, Request, ToHelper, HELPER_MARKER};
use crate::{Isolation, Network};

pub(crate) use sys::{adopt_inherited_fd, pass_as_fd3};

/// A setup failure, already phrased for the user.
#[derive(Debug)]
pub(crate) struct SetupError(pub(crate) String);

/// The helper's end of the control socket.
pub(crate) struct Ctl {
    file: File,
}

impl Ctl {
    /// Sends a message; a dead parent is not our problem to report.
    pub(crate) fn send<T: Serialize>(&mut self, msg: &T) {
        let _ = protocol::send(&mut self.file, msg);
    }

    pub(crate) fn send_failure(&mut self, kind: FailKind, message: String) {
        self.send(&FromHelper::Failed { kind, message });
    }
}

/// The namespaces the helper managed to enter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Namespaces {
    mount: bool,
    uts: bool,
    net: bool,
}

/// Call first thing in `main`, before any thread is started: when this process was started
/// as the sandbox helper (first argument [`HELPER_MARKER`]) it does the helper's work and
/// exits; otherwise it returns at once.
pub fn run_helper_if_requested() {
    if std::env::args_os().nth(1).as_deref() != Some(OsStr::new(HELPER_MARKER)) {
        return;
    }
    std::process::exit(helper_main())
}

fn helper_main() -> i32 {
    let Ok(fd) = sys::take_control_fd() else {
        return 3;
    };
    let mut ctl = Ctl {
        file: File::from(fd),
    };
    let Ok(read_half) = ctl.file.try_clone() else {
        return 3;
    };
    let mut reader = BufReader::new(read_half);
    let request = match protocol::recv::<ToHelper>(&mut reader) {
        Ok(Some(ToHelper::Request(r))) => *r,
        other => {
            ctl.send_failure(
                FailKind::Setup,
                format!("expected a request, got {other:?}"),
            );
            return 2;
        }
    };
    // Out of the builder's session: no controlling terminal the step could type into.
    if let Err(e) = sys::new_session() {
        ctl.send_failure(FailKind::Setup, format!("setsid: {e}"));
        return 0;
    }
    let (isolation, network, layer_map) = match &request {
        Request::Run {
            isolation,
            spec,
            layer_map,
            ..
        } => (*isolation, spec.network, layer_map.as_ref()),
        Request::Probe {
            isolation,
            layer_map,
        } => (*isolation, Network::Host, layer_map.as_ref()),
    };
    // Real root stages the step's filesystem while it still is host root (see `stage`).
    let staged = match (isolation, layer_map, &request) {
        (Isolation::Userns, Some(map), Request::Run { spec, .. }) => stage::stage(spec, map),
        (Isolation::Userns, Some(map), Request::Probe { .. }) => stage::probe(map),
        _ => Ok(()),
    };
    if let Err(e) = staged {
        ctl.send_failure(FailKind::Setup, e.0);
        return 0;
    }
    let staged = isolation == Isolation::Userns && layer_map.is_some();
    let ns = match enter_namespaces(&mut ctl, &mut reader, isolation, network) {
        Ok(ns) => ns,
        Err(e) => {
            ctl.send_failure(FailKind::Setup, e.0);
            return 0;
        }
    };
    let init = match sys::fork() {
        Ok(ForkResult::Child) => match &request {
            Request::Run {
                spec, mapped_uids, ..
            } => init::run_init(
                &mut ctl,
                init::InitRequest {
                    spec,
                    isolation,
                    ns,
                    mapped: mapped_uids,
                    staged,
                },
            ),
            Request::Probe { .. } => init::run_probe(&mut ctl, isolation, ns),
        },
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            ctl.send_failure(FailKind::Setup, format!("fork: {}", e.desc()));
            return 0;
        }
    };
    watch_parent(&ctl, init);
    loop {
        match waitpid(init, None) {
            Ok(WaitStatus::Exited(..)) => return 0,
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                ctl.send_failure(
                    FailKind::Setup,
                    format!("the step's init was killed by {sig}"),
                );
                return 0;
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                ctl.send_failure(
                    FailKind::Setup,
                    format!("waiting for the init: {}", e.desc()),
                );
                return 0;
            }
        }
    }
}

/// Waits until the init exits; if the builder goes away first (its end of the control socket
/// closes: crash, kill, cancellation; the parent sends nothing more after the id maps, so the
/// socket becoming readable means exactly that), kills the init, which takes the whole step
/// with it.
fn watch_parent(ctl: &Ctl, init: nix::unistd::Pid) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let Ok(pidfd) = sys::pidfd_open(init) else {
        return;
    };
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(ctl.file.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        let gone = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        if gone(&fds[0]) {
            return;
        }
        if gone(&fds[1]) {
            let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
            return;
        }
    }
}

fn errno_text(call: &str, e: nix::errno::Errno) -> SetupError {
    let hint = match e {
        nix::errno::Errno::ENOSPC => " (user.max_user_namespaces reached or 0)",
        nix::errno::Errno::EPERM => " (forbidden: seccomp/AppArmor profile or missing capability)",
        _ => "",
    };
    SetupError(format!("{call}: {}{hint}", e.desc()))
}

/// Takes the credentials of the new namespace's root. Unsharing a user namespace keeps the
/// host ids, which a shifted map (real root's) does not contain: until this call the helper
/// would create files as the overflow id.
fn become_namespace_root() -> Result<(), SetupError> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    if !setgroups_denied() {
        setgroups(&[]).map_err(|e| errno_text("setgroups([])", e))?;
    }
    let (u, g) = (Uid::from_raw(0), Gid::from_raw(0));
    setresgid(g, g, g).map_err(|e| errno_text("setresgid(0)", e))?;
    setresuid(u, u, u).map_err(|e| errno_text("setresuid(0)", e))
}

/// Whether `setgroups` is denied in our user namespace (`/proc/self/setgroups` says `deny`).
pub(crate) fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.starts_with("deny"))
}

/// For [`Network::Sandbox`]: asks the builder to attach the user-mode network stack to our
/// new network namespace, and waits until it is up.
fn connect_network(
    ctl: &mut Ctl,
    reader: &mut BufReader<File>,
    network: Network,
) -> Result<(), SetupError> {
    if network != Network::Sandbox {
        return Ok(());
    }
    ctl.send(&FromHelper::NeedNetwork);
    match protocol::recv::<ToHelper>(reader) {
        Ok(Some(ToHelper::NetworkReady)) => Ok(()),
        Ok(Some(ToHelper::NetworkFailed(m))) => Err(SetupError(m)),
        other => Err(SetupError(format!("waiting for the network: {other:?}"))),
    }
}

fn enter_namespaces(
    ctl: &mut Ctl,
    reader: &mut BufReader<File>,
    isolation: Isolation,
    network: Network,
) -> Result<Namespaces, SetupError> {
    let net = if network == Network::Host {
        CloneFlags::empty()
    } else {
        CloneFlags::CLONE_NEWNET
    };
    let rest = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | net;
    match isolation {
        Isolation::Userns => {
            unshare(CloneFlags::CLONE_NEWUSER)
                .map_err(|e| errno_text("unshare(CLONE_NEWUSER)", e))?;
            ctl.send(&FromHelper::NeedIdMap);
            match protocol::recv::<ToHelper>(reader) {
                Ok(Some(ToHelper::IdMapWritten)) => {}
                Ok(Some(ToHelper::IdMapFailed(m))) => return Err(SetupError(m)),
                other => return Err(SetupError(format!("waiting for the id maps: {other:?}"))),
            }
            become_namespace_root()?;
            unshare(rest).map_err(|e| errno_text("unshare(mount, pid, uts, ipc namespaces)", e))?;
            connect_network(ctl, reader, network)?;
            Ok(Namespaces {
                mount: true,
                uts: true,
                net: !net.is_empty(),
            })
        }
        Isolation::Chroot => {
            if unshare(rest).is_ok() {
                connect_network(ctl, reader, network)?;
                return Ok(Namespaces {
                    mount: true,
                    uts: true,
                    net: !net.is_empty(),
                });
            }
            let mount = unshare(CloneFlags::CLONE_NEWNS).is_ok();
            ctl.send(&FromHelper::Warning(format!(
                "chroot mode without PID/UTS/IPC namespaces{}",
                if mount {
                    ""
                } else {
                    " and without a mount namespace"
                }
            )));
            Ok(Namespaces {
                mount,
                uts: false,
                net: false,
            })
        }
    }
}
