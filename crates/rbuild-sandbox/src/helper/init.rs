//! The step's init (PID 1 of its PID namespace): builds the root, starts the step, reaps
//! every process, kills what is left when the step's main process ends, removes the mount
//! points it created, reports the exit code.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::mounts::{
    apply_mount, bind_etc_files, bind_sandbox_resolv_conf, unmount_all, PrivateTmp, Sources,
};
use super::rootfs;
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

/// What the init is asked to do.
pub(crate) struct InitRequest<'a> {
    /// The step.
    pub(crate) spec: &'a RunSpec,
    /// The mode.
    pub(crate) isolation: Isolation,
    /// The namespaces the helper entered.
    pub(crate) ns: Namespaces,
    /// Container uids that exist (None: all).
    pub(crate) mapped: &'a Option<Vec<(u32, u32)>>,
    /// The privileged helper staged the root and the mount sources in the working directory
    /// (`super::stage`).
    pub(crate) staged: bool,
}

/// Makes the step's root `/` and returns how its mounts' sources are found.
fn enter_step_root(
    ctl: &mut Ctl,
    req: &InitRequest<'_>,
) -> Result<Option<(Sources, PathBuf)>, SetupError> {
    let spec = req.spec;
    if req.staged {
        // Held across pivot_root: the staging dir is reached through it, never through the
        // host's paths.
        let staging = std::fs::File::open(".")
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| SetupError(format!("opening the staging dir: {e}")))?;
        rootfs::make_mounts_private()?;
        // The root that real root mounted is locked in this namespace, and the kernel will
        // not pivot to a locked mount: a bind of it onto itself is ours.
        nix::mount::mount(
            Some("root"),
            "root",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| SetupError(format!("binding the staged root: {}", e.desc())))?;
        let host_root = rootfs::enter_root(Path::new("root"))?;
        return Ok(Some((Sources::Staged(staging), host_root)));
    }
    if !req.ns.mount {
        let RootFs::Dir(dir) = &spec.root else {
            return Err(SetupError(
                "chroot mode needs a rootfs dir, not an overlay".into(),
            ));
        };
        if !spec.mounts.is_empty() {
            return Err(SetupError(
                "RUN --mount needs a mount namespace, which this host forbids".into(),
            ));
        }
        nix::unistd::chroot(dir.as_path())
            .map_err(|e| SetupError(format!("chroot {dir:?}: {}", e.desc())))?;
        std::env::set_current_dir("/").map_err(|e| SetupError(format!("chdir /: {e}")))?;
        ctl.send(&FromHelper::Warning(
            "no mount namespace: the step gets no /proc, /dev or /etc files of its own".into(),
        ));
        return Ok(None);
    }
    rootfs::make_mounts_private()?;
    let root = match (&spec.root, req.isolation) {
        (RootFs::Overlay { lowers, upper }, Isolation::Userns) => {
            rootfs::mount_overlay(&spec.scratch_dir, lowers, upper.as_path())?
        }
        (RootFs::Dir(dir), _) => rootfs::bind_rootfs(&spec.scratch_dir, dir.as_path())?,
        (RootFs::Overlay { .. }, Isolation::Chroot) => {
            return Err(SetupError(
                "chroot mode needs a rootfs dir, not an overlay".into(),
            ));
        }
    };
    let host_root = rootfs::enter_root(&root)?;
    Ok(Some((
        Sources::HostTree {
            host_root: host_root.clone(),
            scratch: spec.scratch_dir.clone(),
        },
        host_root,
    )))
}

fn prepare(ctl: &mut Ctl, req: &InitRequest<'_>) -> Result<Prepared, PrepareError> {
    let (spec, isolation, ns, mapped) = (req.spec, req.isolation, req.ns, req.mapped);
    let mut stubs = Stubs::default();
    let setgroups_allowed = !super::setgroups_denied();
    let entered = enter_step_root(ctl, req)?;
    if let Some((sources, host)) = &entered {
        rootfs::mount_dev(host, &mut stubs, uid_mapped(mapped, 5))?;
        // Only in a user namespace may the step see the host's /proc when a fresh one is
        // refused: as the host's root (chroot mode) /proc/1/root would be the host's `/`.
        let fresh = rootfs::mount_proc(Some(host), &mut stubs, isolation == Isolation::Userns)?;
        if !fresh {
            ctl.send(&FromHelper::Warning(if isolation == Isolation::Userns {
                "a fresh /proc was refused (masked /proc?): the step sees the host's /proc".into()
            } else {
                "a fresh /proc was refused (masked /proc?): the step gets no /proc".into()
            }));
        }
        rootfs::mount_sys(host, &mut stubs)?;
        bind_etc_files(sources, &spec.etc, &mut stubs)?;
        if !spec.mounts.is_empty() || spec.network == Network::Sandbox {
            let mut private = PrivateTmp::mount(sources)?;
            if spec.network == Network::Sandbox {
                bind_sandbox_resolv_conf(&mut private, &mut stubs)?;
            }
            for m in spec.mounts.iter().enumerate() {
                apply_mount(
                    sources,
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
    if spec.network != Network::Host {
        if !ns.net {
            return Err(SetupError(
                "a network of the step's own needs a network namespace, which this host forbids"
                    .into(),
            )
            .into());
        }
        sys::loopback_up().map_err(|e| SetupError(format!("bringing lo up: {e}")))?;
    }

    let user = resolve_user(
        &spec.user,
        &crate::user::read_account_file(Path::new("/etc/passwd"))
            .map_err(|e| PrepareError::User(format!("USER {:?}: the image's {e}", spec.user)))?,
        &crate::user::read_account_file(Path::new("/etc/group"))
            .map_err(|e| PrepareError::User(format!("USER {:?}: the image's {e}", spec.user)))?,
    )
    .map_err(|e| PrepareError::User(e.to_string()))?;
    for (what, id) in [("uid", user.uid), ("gid", user.gid)] {
        if !uid_mapped(mapped, id) {
            return Err(PrepareError::User(format!(
                "USER {:?}: {what} {id} does not exist in this user namespace (the step's ids are {}; a rootless builder needs a range in /etc/subuid and /etc/subgid)",
                spec.user,
                describe_ranges(mapped)
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
    if let Some((sources, host)) = entered {
        drop(sources);
        rootfs::detach_host(&host)?;
    }
    Ok(Prepared {
        user,
        stubs,
        setgroups_allowed,
    })
}

fn describe_ranges(mapped: &Option<Vec<(u32, u32)>>) -> String {
    match mapped {
        None => "all".into(),
        Some(r) => r
            .iter()
            .map(|(s, c)| format!("{s}-{}", u64::from(*s) + u64::from(*c) - 1))
            .collect::<Vec<_>>()
            .join(", "),
    }
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
pub(crate) fn run_init(ctl: &mut Ctl, req: InitRequest<'_>) -> ! {
    let (spec, isolation, ns) = (req.spec, req.isolation, req.ns);
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Not dumpable: the step (same uid) can neither ptrace its init nor read its memory.
    let _ = nix::sys::prctl::set_dumpable(false);
    let pid1 = std::process::id() == 1;
    if !pid1 {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    let prepared = match prepare(ctl, &req) {
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
            &step::StepExec {
                argv: &spec.argv,
                env: &spec.env,
                cwd: &spec.cwd,
                user: &prepared.user,
                setgroups_allowed: prepared.setgroups_allowed,
                caps: if isolation == Isolation::Chroot {
                    &sys::CHROOT_CAPS
                } else {
                    &sys::DEFAULT_CAPS
                },
                seccomp: spec.seccomp,
            },
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
