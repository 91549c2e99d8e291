//! The raw system calls that have no safe wrapper: `fork` and the loopback ioctl. This is the
//! only module of the workspace allowed `unsafe`.
#![allow(unsafe_code)]

use nix::unistd::ForkResult;

/// Forks the helper. Sound because the helper is single-threaded: it runs from the first line
/// of `main`, before any thread exists (see [`crate::run_helper_if_requested`]).
pub(crate) fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the calling process has exactly one thread (the helper starts before `main`
    // spawns anything and never spawns threads itself), so the child cannot inherit a lock held
    // by another thread; the child only makes system calls and allocates.
    unsafe { nix::unistd::fork() }
}

/// Ends the process at once, without running destructors or flushing stdio buffers that
/// belong to the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Brings the loopback interface up in the current network namespace (as `ip link set lo up`).
pub(crate) fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags field of the `ifreq` we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `ifru_flags` above; reading and updating that union field is
    // what SIOCSIFFLAGS expects.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the `ifreq` we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Restores the default action of the signals the Rust runtime ignores (`SIGPIPE`), since
/// ignored dispositions survive `execve` and would change how the step's pipelines behave.
pub(crate) fn reset_signal_dispositions() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_DFL runs no handler code; nothing in this process relies on
    // SIGPIPE being ignored after this point (it is about to exec).
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Moves the control socket off fd 0 (to a close-on-exec descriptor) and puts `/dev/null` on
/// fd 0, so the step reads nothing and never inherits the socket.
pub(crate) fn take_control_fd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on fd 0 only creates a new descriptor; checked below.
    let raw = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is the fresh descriptor just created and owned by nobody else.
    let ctl = unsafe { OwnedFd::from_raw_fd(raw) };
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto fd 0 atomically replaces stdin; `null` stays valid for the call.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ctl)
}

/// `pidfd_open(2)`: a descriptor that becomes readable when process `pid` exits.
pub(crate) fn pidfd_open(pid: nix::unistd::Pid) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the syscall takes two integers and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw as i32) })
}

/// Takes ownership of descriptor `fd`, inherited from the parent process for us alone;
/// fails if it is not open.
pub(crate) fn adopt_inherited_fd(fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails on a closed descriptor.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("fd {fd} is not an inherited descriptor"),
        ));
    }
    // SAFETY: the descriptor is open (checked above), was created by our parent for this
    // purpose only, and nothing else in this process owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Docker's (and BuildKit's) default capability set for a build step: CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT,
/// MKNOD, AUDIT_WRITE, SETFCAP.
pub(crate) const DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// Drops every capability outside `keep` from the bounding set, so that after `execve` even
/// root holds no more than `keep`.
pub(crate) fn limit_bounding_set(keep: &[u32]) -> std::io::Result<()> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in (0..=last).filter(|c| !keep.contains(c)) {
        // SAFETY: PR_CAPBSET_DROP takes an integer capability number and no pointers.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Capabilities kept in chroot mode: Docker's default set less `SYS_CHROOT` (a second chroot
/// is how a chroot is escaped) and `MKNOD` (a device node of the host's disk): without a user
/// namespace the step's root is the host's.
pub(crate) const CHROOT_CAPS: [u32; 12] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 29, 31];

/// Leaves the builder's session and controlling terminal: nothing the step does can reach the
/// terminal rbuild was started from (`TIOCSTI`, `/dev/tty`).
pub(crate) fn new_session() -> std::io::Result<()> {
    nix::unistd::setsid()
        .map(drop)
        .map_err(std::io::Error::from)
}

/// Joins a new anonymous session keyring, so that the step cannot reach the keys of the
/// builder's session (`KEYCTL_JOIN_SESSION_KEYRING` with no name).
pub(crate) fn join_new_session_keyring() -> std::io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, NULL) takes a null name pointer, which the kernel
    // reads as "a new anonymous keyring"; no memory of ours is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY`.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn c_path(path: &std::path::Path) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other(format!("{path:?} contains a NUL byte")))
}

/// `open_tree(OPEN_TREE_CLONE)`: a detached copy of the mount at `path` (just that mount, or
/// the whole tree below it with `recursive`), as a descriptor.
pub(crate) fn clone_tree(
    path: &std::path::Path,
    recursive: bool,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let c = c_path(path)?;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `c` is a NUL-terminated path that outlives the call; the syscall returns a new
    // descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is the fresh descriptor just returned, owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw as i32) })
}

fn setattr(
    dirfd: libc::c_int,
    path: &std::ffi::CStr,
    flags: libc::c_uint,
    attr: &MountAttr,
) -> std::io::Result<()> {
    // SAFETY: `path` is NUL-terminated and `attr` is a valid `mount_attr` of the size given;
    // both outlive the call and the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the detached mount `tree` an idmapped mount: ids on disk are shown (and written)
/// through the id map of the user namespace `userns`.
pub(crate) fn idmap_tree(
    tree: &std::os::fd::OwnedFd,
    userns: &std::os::fd::OwnedFd,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    setattr(
        tree.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
        &attr,
    )
}

/// Sets `attrs` (`MOUNT_ATTR_*`) on the mount at `path` and every mount below it: how `/sys`
/// becomes read-only all the way down (submounts included).
pub(crate) fn set_attrs_recursive(path: &std::path::Path, attrs: u64) -> std::io::Result<()> {
    let c = c_path(path)?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    setattr(libc::AT_FDCWD, &c, AT_RECURSIVE, &attr)
}

/// Attaches the detached mount `tree` on `target`.
pub(crate) fn attach_tree(
    tree: &std::os::fd::OwnedFd,
    target: &std::path::Path,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let c = c_path(target)?;
    // SAFETY: `c` is NUL-terminated and outlives the call; the empty source path is a static
    // C string; the kernel reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Installs a compiled seccomp filter on the calling thread (inherited by `execve` and
/// children). Unlike `seccompiler::apply_filter` it does not set `no_new_privs`, so setuid
/// programs inside the step keep working as under Docker's default profile; the caller holds
/// `CAP_SYS_ADMIN` in its user namespace, which the kernel requires instead.
pub(crate) fn install_seccomp(program: &[seccompiler::sock_filter]) -> std::io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const seccompiler::sock_filter,
    }
    let prog = SockFprog {
        len: libc::c_ushort::try_from(program.len())
            .map_err(|_| std::io::Error::other("seccomp program too long"))?,
        filter: program.as_ptr(),
    };
    // SAFETY: `prog` points at `program`, a valid array of `len` BPF instructions with the
    // kernel's `sock_filter` layout (seccompiler's type is `repr(C)` with the same fields);
    // both outlive the call, and the kernel copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const SockFprog,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `fd` the child's descriptor 3 when `cmd` is spawned (for a `--ready-fd=3` protocol),
/// without clearing close-on-exec on our copy, so that no other process spawned meanwhile by
/// another thread of the builder inherits it.
pub(crate) fn pass_as_fd3(cmd: &mut std::process::Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls dup2, which is
    // async-signal-safe; `fd` stays open in the parent until the child has been spawned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
