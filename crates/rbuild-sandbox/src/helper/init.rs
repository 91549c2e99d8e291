//! The step's init (PID 1 of its PID namespace): builds the root, starts the step, reaps
//! every process, kills what is left when the step's main process ends, removes the mount
//! points it created, reports the exit code.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::mounts::{apply_mount, bind_etc_files, unmount_all, PrivateTmp};
use super::rootfs::{self, EnterRoot};
use super::stubs::Stubs;
use super::{step, sys, Ctl, Namespaces, SetupError};
use crate::protocol::{FailKind, FromHelper};
use crate::user::{resolve_user, ResolvedUser};
use crate::{Isolation, Network, RootFs, RunSpec};

/// What the init learned while preparing, needed to start the step.
struct Prepared {
    user: ResolvedUser,
    stubs: Stubs,
    setgroups_allowed: bool,
}

enum PrepareError {
    Setup(SetupError),
    User(String),
}

impl From<SetupError> for PrepareError {
    fn from(e: SetupError) -> Self {
        PrepareError::Setup(e)
    }
}

fn uid_mapped(mapped: &Option<Vec<(u32, u32)>>, id: u32) -> bool {
    match mapped {
        None => true,
        Some(ranges) => ranges
            .iter()
            .any(|(start, count)| id >= *start && id - start < *count),
    }
}

fn read_or_empty(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn prepare(
    ctl: &mut Ctl,
    spec: &RunSpec,
    isolation: Isolation,
    ns: Namespaces,
    mapped: &Option<Vec<(u32, u32)>>,
) -> Result<Prepared, PrepareError> {
    let mut stubs = Stubs::default();
    let setgroups_allowed = !read_or_empty("/proc/self/setgroups").starts_with("deny");
    let host_root = if ns.mount {
        rootfs::make_mounts_private()?;
        let root = match (&spec.root, isolation) {
            (RootFs::Overlay { lowers, upper }, Isolation::Userns) => {
                rootfs::mount_overlay(&spec.scratch_dir, lowers, upper)?
            }
            (RootFs::Dir(dir), Isolation::Userns) => rootfs::bind_rootfs(&spec.scratch_dir, dir)?,
            (RootFs::Dir(dir), Isolation::Chroot) => dir.clone(),
            (RootFs::Overlay { .. }, Isolation::Chroot) => {
                return Err(
                    SetupError("chroot mode needs a rootfs dir, not an overlay".into()).into(),
                );
            }
        };
        let how = if isolation == Isolation::Userns {
            EnterRoot::Pivot
        } else {
            EnterRoot::Chroot
        };
        Some(rootfs::enter_root(&root, how)?)
    } else {
        let RootFs::Dir(dir) = &spec.root else {
            return Err(SetupError("chroot mode needs a rootfs dir, not an overlay".into()).into());
        };
        if !spec.mounts.is_empty() {
            return Err(SetupError(
                "RUN --mount needs a mount namespace, which this host forbids".into(),
            )
            .into());
        }
        nix::unistd::chroot(dir.as_path())
            .map_err(|e| SetupError(format!("chroot {dir:?}: {}", e.desc())))?;
        std::env::set_current_dir("/").map_err(|e| SetupError(format!("chdir /: {e}")))?;
        ctl.send(&FromHelper::Warning(
            "no mount namespace: the step gets no /proc, /dev or /etc files of its own".into(),
        ));
        None
    };

    if let Some(host) = &host_root {
        let fresh = rootfs::mount_proc(Some(host), &mut stubs)?;
        if !fresh {
            ctl.send(&FromHelper::Warning(
                "a fresh /proc was refused (masked /proc?): the step sees the host's /proc".into(),
            ));
        }
        rootfs::mount_dev(host, &mut stubs, uid_mapped(mapped, 5))?;
        rootfs::mount_sys(host, &mut stubs)?;
        bind_etc_files(host, &spec.etc, &mut stubs)?;
        if !spec.mounts.is_empty() {
            let mut private = PrivateTmp::mount(host, &spec.scratch_dir)?;
            for m in &spec.mounts {
                apply_mount(
                    host,
                    &mut private,
                    m,
                    &mut stubs,
                    isolation == Isolation::Userns,
                )?;
            }
        }
    }
    if ns.uts {
        nix::unistd::sethostname(&spec.hostname)
            .map_err(|e| SetupError(format!("sethostname {:?}: {}", spec.hostname, e.desc())))?;
    }
    if spec.network == Network::None {
        if !ns.net {
            return Err(SetupError(
                "--network=none needs a network namespace, which this host forbids".into(),
            )
            .into());
        }
        sys::loopback_up().map_err(|e| SetupError(format!("bringing lo up: {e}")))?;
    }

    let user = resolve_user(
        &spec.user,
        &read_or_empty("/etc/passwd"),
        &read_or_empty("/etc/group"),
    )
    .map_err(|e| PrepareError::User(e.to_string()))?;
    for (what, id) in [("uid", user.uid), ("gid", user.gid)] {
        if !uid_mapped(mapped, id) {
            return Err(PrepareError::User(format!(
                "USER {:?}: {what} {id} does not exist in this user namespace (single-id mode: give the builder's user a range in /etc/subuid and /etc/subgid)",
                spec.user
            )));
        }
    }
    let cwd = Path::new(&spec.cwd);
    if std::fs::symlink_metadata(cwd).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(cwd)
            .map_err(|e| SetupError(format!("creating the working directory {cwd:?}: {e}")))?;
    }
    if let Some(host) = &host_root {
        rootfs::detach_host(host)?;
    }
    Ok(Prepared {
        user,
        stubs,
        setgroups_allowed,
    })
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Kills every process left in the step: all of the PID namespace when we are its init,
/// else every descendant (we are their subreaper), until none is left.
fn kill_the_rest(pid1: bool) {
    loop {
        if pid1 {
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        } else {
            for child in children_of(std::process::id()) {
                let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            }
        }
        match waitpid(None::<Pid>, None) {
            Err(nix::errno::Errno::ECHILD) => return,
            _ => continue,
        }
    }
}

fn children_of(parent: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|s| {
                    // The field after the parenthesised command name: state, then ppid.
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                        == Some(parent)
                })
        })
        .collect()
}

/// The init's whole life; never returns.
pub(crate) fn run_init(
    ctl: &mut Ctl,
    spec: &RunSpec,
    isolation: Isolation,
    ns: Namespaces,
    mapped: &Option<Vec<(u32, u32)>>,
) -> ! {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Not dumpable: the step (same uid) can neither ptrace its init nor read its memory.
    let _ = nix::sys::prctl::set_dumpable(false);
    let pid1 = std::process::id() == 1;
    if !pid1 {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    let prepared = match prepare(ctl, spec, isolation, ns, mapped) {
        Ok(p) => p,
        Err(PrepareError::Setup(e)) => {
            ctl.send_failure(FailKind::Setup, e.0);
            sys::exit_now(1)
        }
        Err(PrepareError::User(e)) => {
            ctl.send_failure(FailKind::User, e);
            sys::exit_now(1)
        }
    };
    let main = match sys::fork() {
        Ok(ForkResult::Child) => step::exec_step(
            ctl,
            &spec.argv,
            &spec.env,
            &spec.cwd,
            &prepared.user,
            prepared.setgroups_allowed,
        ),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            ctl.send_failure(FailKind::Setup, format!("fork: {}", e.desc()));
            sys::exit_now(1)
        }
    };
    let code = loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == Some(main) => {
                if let Some(code) = exit_code(status) {
                    break code;
                }
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                ctl.send_failure(
                    FailKind::Setup,
                    format!("waiting for the step: {}", e.desc()),
                );
                sys::exit_now(1)
            }
        }
    };
    kill_the_rest(pid1);
    if isolation == Isolation::Userns || ns.mount {
        let busy = unmount_all();
        if !busy.is_empty() {
            ctl.send(&FromHelper::Warning(format!(
                "could not unmount {busy:?} after the step"
            )));
        }
    }
    for (path, e) in prepared.stubs.remove_unused() {
        ctl.send(&FromHelper::Warning(format!(
            "removing mount point {path:?}: {e}"
        )));
    }
    ctl.send(&FromHelper::Exited { code });
    sys::exit_now(0)
}

/// Probe: can this process set up what a step needs? Reports and exits.
pub(crate) fn run_probe(ctl: &mut Ctl, isolation: Isolation, ns: Namespaces) -> ! {
    let result = probe(isolation, ns);
    match result {
        Ok((fresh_proc, overlay)) => ctl.send(&FromHelper::ProbeOk {
            fresh_proc,
            overlay,
        }),
        Err(e) => ctl.send_failure(FailKind::Setup, e.0),
    }
    sys::exit_now(0)
}

fn probe(isolation: Isolation, ns: Namespaces) -> Result<(bool, bool), SetupError> {
    use nix::mount::{mount, MsFlags};
    let none: Option<&str> = None;
    if !ns.mount {
        nix::unistd::chroot("/").map_err(|e| SetupError(format!("chroot: {}", e.desc())))?;
        return Ok((false, false));
    }
    rootfs::make_mounts_private()?;
    let tmp = PathBuf::from("/tmp");
    mount(Some("tmpfs"), &tmp, Some("tmpfs"), MsFlags::empty(), none)
        .map_err(|e| SetupError(format!("mounting a tmpfs: {}", e.desc())))?;
    let fresh_proc = mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    )
    .is_ok();
    if isolation == Isolation::Chroot {
        nix::unistd::chroot("/").map_err(|e| SetupError(format!("chroot: {}", e.desc())))?;
        return Ok((fresh_proc, false));
    }
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir(tmp.join(d)).map_err(|e| SetupError(format!("probe dir: {e}")))?;
    }
    let overlay = mount(
        Some("overlay"),
        &tmp.join("m"),
        Some("overlay"),
        MsFlags::empty(),
        Some("lowerdir=/tmp/l,upperdir=/tmp/u,workdir=/tmp/w,userxattr"),
    )
    .is_ok();
    Ok((fresh_proc, overlay))
}
