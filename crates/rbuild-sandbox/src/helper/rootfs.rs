//! Building the step's root: the overlay, entering it, `/proc`, `/dev`, `/sys` and the
//! read-only `/etc` files.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use super::stubs::Stubs;
use super::SetupError;

const NONE: Option<&str> = None;

fn ctx<T>(what: impl FnOnce() -> String, r: nix::Result<T>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError(format!("{}: {}", what(), e.desc())))
}

fn io_ctx<T>(what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError(format!("{}: {e}", what())))
}

/// Stops mount events from leaking to or from the host.
pub(crate) fn make_mounts_private() -> Result<(), SetupError> {
    ctx(
        || "making / a private mount".into(),
        mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_PRIVATE, NONE),
    )
}

/// A fresh directory for this run inside the caller's scratch dir, so that a scratch dir can
/// serve several steps.
fn run_dir(scratch: &Path) -> Result<PathBuf, SetupError> {
    let dir = scratch.join(format!("run-{}", unique_suffix()));
    io_ctx(|| format!("creating {dir:?}"), std::fs::create_dir(&dir))?;
    Ok(dir)
}

/// Process id and time: unique on this host, unpredictable enough for an image's content.
pub(crate) fn unique_suffix() -> String {
    format!(
        "{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// Mounts the overlay of `lowers` (bottom → top) and `upper` at `<scratch>/root` and returns
/// that path. The lower dirs are given to the kernel as short relative symlinks
/// (`l/0`, `l/1`, …) from inside the scratch dir, so a hundred layers fit in the one-page
/// option string whatever the store's path length.
pub(crate) fn mount_overlay(
    scratch: &Path,
    lowers: &[PathBuf],
    upper: &Path,
) -> Result<PathBuf, SetupError> {
    let scratch = &run_dir(scratch)?;
    let links = scratch.join("l");
    let work = scratch.join("ovl-work");
    let root = scratch.join("root");
    for d in [&links, &work, &root] {
        io_ctx(|| format!("creating {d:?}"), std::fs::create_dir_all(d))?;
    }
    let mut names = Vec::new();
    if lowers.is_empty() {
        // Overlay wants at least one lower dir: an empty one stands for `FROM scratch`.
        io_ctx(
            || "creating the empty lower dir".into(),
            std::fs::create_dir_all(links.join("empty")),
        )?;
        names.push("l/empty".to_owned());
    }
    for (i, lower) in lowers.iter().enumerate() {
        let link = links.join(i.to_string());
        io_ctx(
            || format!("linking lower dir {lower:?}"),
            symlink(lower, &link),
        )?;
        names.push(format!("l/{i}"));
    }
    names.reverse(); // the kernel lists the top layer first
    let options = format!(
        "lowerdir={},upperdir={},workdir=ovl-work,userxattr",
        names.join(":"),
        upper.display()
    );
    io_ctx(
        || format!("chdir {scratch:?}"),
        std::env::set_current_dir(scratch),
    )?;
    ctx(
        || {
            format!(
                "mounting the overlay of {} lower dirs (upper {upper:?})",
                lowers.len()
            )
        },
        mount(
            Some("overlay"),
            "root",
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        ),
    )?;
    Ok(root)
}

/// Binds a materialised rootfs dir at `<scratch>/root` so that it is a mount point.
pub(crate) fn bind_rootfs(scratch: &Path, dir: &Path) -> Result<PathBuf, SetupError> {
    let scratch = &run_dir(scratch)?;
    let root = scratch.join("root");
    io_ctx(
        || format!("creating {root:?}"),
        std::fs::create_dir_all(&root),
    )?;
    ctx(
        || format!("binding rootfs {dir:?}"),
        mount(
            Some(dir),
            &root,
            NONE,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            NONE,
        ),
    )?;
    Ok(root)
}

/// Makes `root` (a mount point) the root directory with `pivot_root`, in every mode: the
/// host's tree stays reachable under the returned directory (a random name, so an image
/// cannot plant a symlink there) until [`detach_host`] is called, after which there is no
/// way back to it (unlike `chroot`, which a second `chroot` escapes).
pub(crate) fn enter_root(root: &Path) -> Result<PathBuf, SetupError> {
    let name = format!(".rbuild-host-{}", unique_suffix());
    let inside = root.join(&name);
    io_ctx(
        || format!("creating {inside:?}"),
        std::fs::create_dir(&inside),
    )?;
    io_ctx(
        || format!("chdir {root:?}"),
        std::env::set_current_dir(root),
    )?;
    ctx(
        || "pivot_root".into(),
        nix::unistd::pivot_root(".", name.as_str()),
    )?;
    io_ctx(|| "chdir /".into(), std::env::set_current_dir("/"))?;
    Ok(PathBuf::from("/").join(name))
}

/// Unmounts the host tree and removes its mount point: from now on the step's root is all
/// there is.
pub(crate) fn detach_host(host: &Path) -> Result<(), SetupError> {
    ctx(
        || "detaching the host root".into(),
        umount2(host, MntFlags::MNT_DETACH),
    )?;
    io_ctx(|| format!("removing {host:?}"), std::fs::remove_dir(host))
}

/// `host` (an absolute host path) as seen under the attached host tree `host_root`.
pub(crate) fn on_host(host_root: &Path, host: &Path) -> PathBuf {
    host_root.join(host.strip_prefix("/").unwrap_or(host))
}

/// The flags a bind remount must keep (the kernel refuses to clear locked ones in a user
/// namespace).
fn kept_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

/// Sets `attrs` on the mount at `target` and every mount below it through `mount_setattr`, or
/// a bind remount where the kernel predates it (only the top mount then).
fn restrict(target: &Path, attrs: u64) -> Result<(), SetupError> {
    use super::sys;
    match sys::set_attrs_recursive(target, attrs) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() != Some(libc::ENOSYS) => {
            return Err(SetupError(format!(
                "restricting the mount on {target:?}: {e}"
            )))
        }
        Err(_) => {}
    }
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | kept_flags(target);
    for (a, f) in [
        (sys::MOUNT_ATTR_RDONLY, MsFlags::MS_RDONLY),
        (sys::MOUNT_ATTR_NOSUID, MsFlags::MS_NOSUID),
        (sys::MOUNT_ATTR_NODEV, MsFlags::MS_NODEV),
        (sys::MOUNT_ATTR_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if attrs & a != 0 {
            flags |= f;
        }
    }
    ctx(
        || format!("restricting the mount on {target:?}"),
        mount(NONE, target, NONE, flags, NONE),
    )
}

/// Binds `source` on `target`, read-only unless `writable`, always `nosuid,nodev`: nothing a
/// step finds or leaves in a bound directory can raise privileges or open a device.
pub(crate) fn bind(
    source: &Path,
    target: &Path,
    writable: bool,
    recursive: bool,
) -> Result<(), SetupError> {
    use super::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    let rec = if recursive {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    ctx(
        || format!("binding {source:?} on {target:?}"),
        mount(Some(source), target, NONE, MsFlags::MS_BIND | rec, NONE),
    )?;
    let ro = if writable { 0 } else { MOUNT_ATTR_RDONLY };
    restrict(target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | ro)
}

/// Binds one of the host's harmless device nodes (`/dev/null`…) on `target`: `nosuid,noexec`.
fn bind_device(source: &Path, target: &Path) -> Result<(), SetupError> {
    use super::sys::{MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID};
    ctx(
        || format!("binding {source:?} on {target:?}"),
        mount(Some(source), target, NONE, MsFlags::MS_BIND, NONE),
    )?;
    restrict(target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)
}

/// Files of `/proc` hidden behind `/dev/null`, and directories behind an empty read-only
/// tmpfs, as runc's default spec masks them (`libcontainer/specconv`: `maskedPaths`).
const PROC_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
];

/// Parts of `/proc` bound read-only on themselves (runc's `readonlyPaths`).
const PROC_READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Hides the directory `path` behind an empty, read-only tmpfs.
fn mask_dir(path: &Path) -> Result<(), SetupError> {
    ctx(
        || format!("masking {path:?}"),
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0,mode=555"),
        ),
    )
}

/// Hides or freezes what a container must not reach in a fresh `/proc`.
fn mask_proc() -> Result<(), SetupError> {
    for p in PROC_MASKED.iter().map(Path::new) {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            continue;
        };
        if md.is_dir() {
            mask_dir(p)?;
        } else {
            bind_device(Path::new("/dev/null"), p)?;
        }
    }
    for p in PROC_READ_ONLY.iter().map(Path::new) {
        if std::fs::symlink_metadata(p).is_ok() {
            bind(p, p, false, true)?;
        }
    }
    Ok(())
}

/// Mounts a fresh `/proc` (masked as runc does: [`PROC_MASKED`], [`PROC_READ_ONLY`]). When the
/// kernel refuses one (a masked `/proc` in a pod), the host's is bound instead if
/// `host_fallback` allows it (user namespace mode: the step cannot use what it sees there),
/// else there is no `/proc`. Returns whether the mount is fresh. Call after `/dev` exists.
pub(crate) fn mount_proc(
    host_root: Option<&Path>,
    stubs: &mut Stubs,
    host_fallback: bool,
) -> Result<bool, SetupError> {
    let target = Path::new("/proc");
    io_ctx(|| "creating /proc".into(), stubs.dir(target))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some("proc"), target, Some("proc"), flags, NONE) {
        Ok(()) => {
            mask_proc()?;
            Ok(true)
        }
        Err(fresh) => match host_root {
            Some(host_root) if host_fallback => {
                bind(&on_host(host_root, Path::new("/proc")), target, true, true)?;
                Ok(false)
            }
            Some(_) => Ok(false),
            None => Err(SetupError(format!("mounting /proc: {}", fresh.desc()))),
        },
    }
}

/// `/sys`, read-only all the way down: a fresh sysfs when the kernel allows it (own network
/// namespace; no cgroup or other submounts), else the host's bound recursively and made
/// read-only, submounts included (cgroupfs among them), with `/sys/firmware` masked.
pub(crate) fn mount_sys(host_root: &Path, stubs: &mut Stubs) -> Result<(), SetupError> {
    use super::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    let target = Path::new("/sys");
    io_ctx(|| "creating /sys".into(), stubs.dir(target))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
    if mount(Some("sysfs"), target, Some("sysfs"), flags, NONE).is_err() {
        ctx(
            || "binding the host's /sys".into(),
            mount(
                Some(&on_host(host_root, target)),
                target,
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            ),
        )?;
        restrict(
            target,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        )?;
    }
    let firmware = Path::new("/sys/firmware");
    if firmware.is_dir() {
        mask_dir(firmware)?;
    }
    Ok(())
}

/// A minimal `/dev`: a tmpfs with the host's null, zero, full, random and urandom bound in, a
/// private `devpts` instance, a `shm` tmpfs and the usual symlinks. No `/dev/tty`: the step
/// has no terminal (its session is its own), and never the host's.
pub(crate) fn mount_dev(
    host_root: &Path,
    stubs: &mut Stubs,
    gid5_mapped: bool,
) -> Result<(), SetupError> {
    let dev = Path::new("/dev");
    io_ctx(|| "creating /dev".into(), stubs.dir(dev))?;
    ctx(
        || "mounting the /dev tmpfs".into(),
        mount(
            Some("tmpfs"),
            dev,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        ),
    )?;
    for node in ["null", "zero", "full", "random", "urandom"] {
        let target = dev.join(node);
        io_ctx(
            || format!("creating {target:?}"),
            std::fs::File::create(&target),
        )?;
        bind_device(&on_host(host_root, &target), &target)?;
    }
    let pts = dev.join("pts");
    io_ctx(|| "creating /dev/pts".into(), std::fs::create_dir(&pts))?;
    let mut opts = String::from("newinstance,ptmxmode=0666,mode=0620");
    if gid5_mapped {
        opts.push_str(",gid=5");
    }
    ctx(
        || "mounting /dev/pts".into(),
        mount(
            Some("devpts"),
            &pts,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some(opts.as_str()),
        ),
    )?;
    let shm = dev.join("shm");
    io_ctx(|| "creating /dev/shm".into(), std::fs::create_dir(&shm))?;
    ctx(
        || "mounting /dev/shm".into(),
        mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        ),
    )?;
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        io_ctx(
            || format!("linking /dev/{link}"),
            symlink(to, dev.join(link)),
        )?;
    }
    Ok(())
}
