//! `RUN --mount` targets and the read-only `/etc` files, mounted while the host tree is still
//! attached. Their sources are found through [`Sources`]: the attached host tree, or the
//! staging directory that a privileged helper prepared (see `super::stage`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::rootfs::{bind, on_host};
use super::stubs::Stubs;
use super::SetupError;
use crate::{EtcFiles, Mount, MountKind};

fn io_ctx<T>(what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError(format!("{}: {e}", what())))
}

/// Where the init finds the host side of the step's mounts.
pub(crate) enum Sources {
    /// Through the host tree attached at this path (the helper entered the step's user
    /// namespace before anything was mounted; host paths are reachable as they are).
    HostTree {
        /// Where the host's `/` is attached.
        host_root: PathBuf,
        /// The caller's scratch dir (host path).
        scratch: PathBuf,
    },
    /// Prepared by the privileged helper in a staging directory that the init holds open
    /// (the step's root cannot walk the host's paths): `m/<i>` for `RUN --mount` number `i`,
    /// `e/<name>` for the `/etc` files.
    Staged(std::os::fd::OwnedFd),
}

impl Sources {
    fn staged(fd: &std::os::fd::OwnedFd, rel: &str) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}/{rel}", fd.as_raw_fd()))
    }

    /// The host side of `RUN --mount` number `index`, whose host path is `source`.
    fn mount_source(&self, index: usize, source: &Path) -> PathBuf {
        match self {
            Sources::HostTree { host_root, .. } => on_host(host_root, source),
            Sources::Staged(fd) => Self::staged(fd, &format!("m/{index}")),
        }
    }

    /// The host side of the `/etc` file `name` (`hosts`, `resolv.conf`, `hostname`).
    fn etc_source(&self, name: &str, source: &Path) -> PathBuf {
        match self {
            Sources::HostTree { host_root, .. } => on_host(host_root, source),
            Sources::Staged(fd) => Self::staged(fd, &format!("e/{name}")),
        }
    }

    /// A new directory name for the private tmpfs.
    fn private_dir(&self) -> PathBuf {
        let name = format!("private-{}", super::rootfs::unique_suffix());
        match self {
            Sources::HostTree { host_root, scratch } => on_host(host_root, &scratch.join(name)),
            Sources::Staged(fd) => Self::staged(fd, &name),
        }
    }
}

/// A tmpfs private to the step's mount namespace, holding secrets and the throwaway upper
/// dirs of `rw` binds: nothing there ever reaches the step's upper dir, a disk or the host,
/// and it is gone when the step's last process is (even after `kill -9` of the builder).
pub(crate) struct PrivateTmp {
    dir: PathBuf,
    next: usize,
}

impl PrivateTmp {
    /// Mounts it in a fresh directory of the scratch or staging dir.
    pub(crate) fn mount(sources: &Sources) -> Result<PrivateTmp, SetupError> {
        let dir = sources.private_dir();
        io_ctx(
            || format!("creating {dir:?}"),
            std::fs::create_dir_all(&dir),
        )?;
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=700"),
        )
        .map_err(|e| SetupError(format!("mounting the private tmpfs: {}", e.desc())))?;
        Ok(PrivateTmp { dir, next: 0 })
    }

    fn fresh(&mut self, what: &str) -> PathBuf {
        self.next += 1;
        self.dir.join(format!("{what}-{}", self.next))
    }

    /// A new 0600 file holding `content`.
    fn file(&mut self, what: &str, content: &[u8]) -> Result<PathBuf, SetupError> {
        let path = self.fresh(what);
        let mut f = io_ctx(
            || format!("creating the {what} file"),
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path),
        )?;
        io_ctx(|| format!("writing the {what} file"), f.write_all(content))?;
        Ok(path)
    }
}

/// The `/etc/resolv.conf` of a step on the user-mode network: its DNS forwarder.
const SANDBOX_RESOLV_CONF: &[u8] = b"nameserver 10.0.2.3\n";

/// Binds a `/etc/resolv.conf` naming the user-mode network's DNS forwarder (read-only).
pub(crate) fn bind_sandbox_resolv_conf(
    private: &mut PrivateTmp,
    stubs: &mut Stubs,
) -> Result<(), SetupError> {
    let file = private.file("resolv.conf", SANDBOX_RESOLV_CONF)?;
    io_ctx(
        || "chmod of resolv.conf".into(),
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)),
    )?;
    let target = Path::new("/etc/resolv.conf");
    io_ctx(
        || "creating the mount point \"/etc/resolv.conf\"".into(),
        stubs.file(target),
    )?;
    bind(&file, target, false, false)
}

/// Binds the given host files read-only over `/etc/hosts`, `/etc/resolv.conf`,
/// `/etc/hostname`.
pub(crate) fn bind_etc_files(
    sources: &Sources,
    etc: &EtcFiles,
    stubs: &mut Stubs,
) -> Result<(), SetupError> {
    for (name, source) in etc.named() {
        if let Some(source) = source {
            let target = PathBuf::from(format!("/etc/{name}"));
            let target = target.as_path();
            io_ctx(
                || format!("creating the mount point {target:?}"),
                stubs.file(target),
            )?;
            bind(&sources.etc_source(name, source), target, false, false)?;
        }
    }
    Ok(())
}

/// Mounts `RUN --mount` number `index`. `userns` selects overlay's `userxattr` for `rw`
/// binds.
pub(crate) fn apply_mount(
    sources: &Sources,
    private: &mut PrivateTmp,
    (index, m): (usize, &Mount),
    stubs: &mut Stubs,
    userns: bool,
) -> Result<(), SetupError> {
    let target = Path::new(&m.target);
    let mkdir = |stubs: &mut Stubs| {
        io_ctx(
            || format!("creating the mount point {target:?}"),
            stubs.dir(target),
        )
    };
    let mkfile = |stubs: &mut Stubs| {
        io_ctx(
            || format!("creating the mount point {target:?}"),
            stubs.file(target),
        )
    };
    match &m.kind {
        MountKind::Tmpfs { size } => {
            mkdir(stubs)?;
            let opts = size.map(|s| format!("size={s}"));
            mount(
                Some("tmpfs"),
                target,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                opts.as_deref(),
            )
            .map_err(|e| SetupError(format!("mounting a tmpfs on {target:?}: {}", e.desc())))?;
        }
        MountKind::Cache {
            source,
            uid,
            gid,
            mode,
            ..
        } => {
            let src = sources.mount_source(index, source);
            nix::unistd::chown(&src, Some((*uid).into()), Some((*gid).into())).map_err(|e| {
                SetupError(format!(
                    "chown {uid}:{gid} of cache dir {source:?}: {}",
                    e.desc()
                ))
            })?;
            io_ctx(
                || format!("chmod {mode:o} of cache dir {source:?}"),
                std::fs::set_permissions(&src, std::fs::Permissions::from_mode(*mode)),
            )?;
            mkdir(stubs)?;
            bind(&src, target, true, false)?;
        }
        MountKind::Secret {
            content,
            uid,
            gid,
            mode,
        } => {
            let copy = private.file("secret", &content.0)?;
            nix::unistd::chown(&copy, Some((*uid).into()), Some((*gid).into())).map_err(|e| {
                SetupError(format!(
                    "chown {uid}:{gid} of secret for {target:?}: {}",
                    e.desc()
                ))
            })?;
            io_ctx(
                || "chmod of the secret copy".into(),
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(*mode)),
            )?;
            mkfile(stubs)?;
            bind(&copy, target, false, false)?;
        }
        MountKind::Bind { source, readwrite } => {
            let src = sources.mount_source(index, source);
            let is_dir = io_ctx(
                || format!("bind source {source:?}"),
                std::fs::metadata(&src),
            )?
            .is_dir();
            if is_dir {
                mkdir(stubs)?
            } else {
                mkfile(stubs)?
            }
            if !readwrite {
                return bind(&src, target, false, true);
            }
            if !is_dir {
                let copy = private.fresh("bind");
                io_ctx(
                    || format!("copying bind source {source:?}"),
                    std::fs::copy(&src, &copy),
                )?;
                return bind(&copy, target, true, false);
            }
            // Writes go to a throwaway upper dir in the private tmpfs.
            let base = private.fresh("bind");
            let (upper, work) = (base.join("upper"), base.join("work"));
            for d in [&upper, &work] {
                io_ctx(|| format!("creating {d:?}"), std::fs::create_dir_all(d))?;
            }
            let path_ok = |p: &Path| !p.to_string_lossy().contains([',', ':']);
            if !path_ok(&src) {
                return Err(SetupError(format!(
                    "bind source {source:?}: ',' or ':' in the path cannot go into an overlay"
                )));
            }
            let opts = format!(
                "lowerdir={},upperdir={},workdir={}{}",
                src.display(),
                upper.display(),
                work.display(),
                if userns { ",userxattr" } else { "" }
            );
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(opts.as_str()),
            )
            .map_err(|e| {
                SetupError(format!(
                    "mounting a writable copy of {source:?} on {target:?}: {}",
                    e.desc()
                ))
            })?;
        }
    }
    Ok(())
}

/// Unmounts everything below `/`: after the step, before its stub mount points are removed.
/// Each topmost mount is detached with its whole subtree, so that submounts the kernel locked
/// to their parent (the host's cgroup mounts under a bound `/sys`) go with it instead of
/// refusing to go alone.
pub(crate) fn unmount_all() -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|p| p != "/")
        .collect();
    let below =
        |p: &str, q: &str| p.len() > q.len() && p.starts_with(q) && p.as_bytes()[q.len()] == b'/';
    let mut failed = Vec::new();
    for p in points.iter().rev() {
        if points.iter().any(|q| below(p, q)) {
            continue;
        }
        // A mount point may carry several stacked mounts: detach until none is left.
        let mut gone = false;
        for _ in 0..16 {
            if nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
            gone = true;
        }
        if !gone {
            failed.push(p.clone());
        }
    }
    failed
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
