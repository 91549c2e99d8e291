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
