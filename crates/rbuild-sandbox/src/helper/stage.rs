//! What a real-root helper prepares before it gives up host root by entering the step's user
//! namespace: the step's ids are a shifted range (`crate::idmap`), so the layers, which keep
//! the container's ids on disk, are shown to the step through idmapped mounts, and every
//! host path the step's mounts come from is staged where the namespace's root can reach it
//! without walking the host's (possibly root-only) directories.
//!
//! Layout, in a fresh `run-*` directory of the scratch dir, which becomes the helper's working
//! directory (the init opens it before `pivot_root` and finds everything relative to it):
//! - `l/<i>`: lower layer `i`, idmapped; `root`: the overlay of them (or the idmapped rootfs
//!   dir), mounted here by real root, `nosuid`-free as the image's root must be;
//! - `m/<i>`: the source of `RUN --mount` number `i` (bind sources idmapped, cache dirs
//!   bound as they are after their root was given to the step's owner);
//! - `e/<name>`: the `/etc` files.
//!
//! The upper and work dirs, the cache dirs and every directory created here belong to the
//! step's range, never to host root.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::unistd::{chown, ForkResult, Gid, Uid};

use super::rootfs::{self, unique_suffix};
use super::{sys, SetupError};
use crate::idmap::{IdMapPlan, MapMethod};
use crate::{IdMap, MountKind, RootFs, RunSpec};

const NONE: Option<&str> = None;

fn io_ctx<T>(what: impl FnOnce() -> String, r: std::io::Result<T>) -> Result<T, SetupError> {
    r.map_err(|e| SetupError(format!("{}: {e}", what())))
}

/// The host ids of the step's root.
struct Owner {
    uid: Uid,
    gid: Gid,
}

impl Owner {
    fn of(map: &IdMap, uid: u32, gid: u32) -> Result<Owner, SetupError> {
        match (map.uid_to_host(uid), map.gid_to_host(gid)) {
            (Some(u), Some(g)) => Ok(Owner {
                uid: Uid::from_raw(u),
                gid: Gid::from_raw(g),
            }),
            _ => Err(SetupError(format!(
                "{uid}:{gid} is outside the step's id range"
            ))),
        }
    }

    fn give(&self, path: &Path) -> Result<(), SetupError> {
        chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| SetupError(format!("chown of {path:?}: {}", e.desc())))
    }

    fn mkdir(&self, path: &Path) -> Result<(), SetupError> {
        io_ctx(|| format!("creating {path:?}"), std::fs::create_dir(path))?;
        self.give(path)
    }
}

/// A user namespace with `map`, as a descriptor: the idmap of the mounts. A short-lived child
/// creates it; we (real root) write its maps, keep a handle and let the child go.
pub(crate) fn userns_with_map(map: &IdMap) -> Result<OwnedFd, SetupError> {
    use std::io::{Read, Write};
    let pipe = || -> Result<(std::fs::File, std::fs::File), SetupError> {
        let (r, w) = nix::unistd::pipe().map_err(|e| SetupError(format!("pipe: {}", e.desc())))?;
        Ok((r.into(), w.into()))
    };
    let (mut ready_r, ready_w) = pipe()?;
    let (release_r, release_w) = pipe()?;
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(ready_r);
            drop(release_w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = (&ready_w).write_all(if ok { b"1" } else { b"0" });
            let _ = (&release_r).read(&mut [0u8; 1]);
            sys::exit_now(0)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_w);
            drop(release_r);
            let result = (|| {
                let mut b = [0u8; 1];
                io_ctx(
                    || "waiting for the id-map holder".into(),
                    ready_r.read_exact(&mut b),
                )?;
                if b != *b"1" {
                    return Err(SetupError(
                        "unshare(CLONE_NEWUSER) for the idmapped mounts failed".into(),
                    ));
                }
                // Written as the builder writes a step's maps when it is root.
                IdMapPlan {
                    map: map.clone(),
                    method: MapMethod::Direct,
                    idmapped_layers: true,
                }
                .install(child.as_raw().unsigned_abs())
                .map_err(|e| SetupError(e.to_string()))?;
                let ns = format!("/proc/{child}/ns/user");
                io_ctx(|| format!("opening {ns}"), std::fs::File::open(&ns)).map(OwnedFd::from)
            })();
            drop(release_w);
            let _ = nix::sys::wait::waitpid(child, None);
            result
        }
        Err(e) => Err(SetupError(format!("fork: {}", e.desc()))),
    }
}

/// Attaches an idmapped copy of `source` (a directory or a file) on `target`, created with
/// the same type.
fn attach_idmapped(
    source: &Path,
    target: &Path,
    userns: &OwnedFd,
    owner: &Owner,
) -> Result<(), SetupError> {
    let is_dir = io_ctx(|| format!("{source:?}"), std::fs::metadata(source))?.is_dir();
    if is_dir {
        owner.mkdir(target)?;
    } else {
        io_ctx(
            || format!("creating {target:?}"),
            std::fs::File::create(target),
        )?;
    }
    let what = || format!("an idmapped mount of {source:?}");
    let tree = io_ctx(what, sys::clone_tree(source, false))?;
    io_ctx(
        || {
            format!(
                "{}: the kernel or the filesystem does not support idmapped mounts",
                what()
            )
        },
        sys::idmap_tree(&tree, userns),
    )?;
    io_ctx(what, sys::attach_tree(&tree, target))
}

/// Moves every entry below `dir` (not following symlinks, not crossing into other
/// filesystems) from the container's ids to the step's host ids; ids outside the range
/// become the range's root.
fn shift_tree(dir: &Path, map: &IdMap) -> Result<(), SetupError> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = io_ctx(|| format!("reading {d:?}"), std::fs::read_dir(&d))?;
        for entry in entries {
            let path = io_ctx(|| format!("reading {d:?}"), entry)?.path();
            let md = io_ctx(|| format!("{path:?}"), std::fs::symlink_metadata(&path))?;
            let uid = map.uid_to_host(md.uid()).or(map.uid_to_host(0));
            let gid = map.gid_to_host(md.gid()).or(map.gid_to_host(0));
            io_ctx(
                || format!("chown of {path:?}"),
                std::os::unix::fs::lchown(&path, uid, gid),
            )?;
            if md.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Binds `source` on `target` as it is (the init restricts the binds it makes of it).
fn plain_bind(source: &Path, target: &Path) -> Result<(), SetupError> {
    mount(Some(source), target, NONE, MsFlags::MS_BIND, NONE)
        .map_err(|e| SetupError(format!("binding {source:?}: {}", e.desc())))
}

/// Prepares the staging directory for `spec` (see the module doc) in a new private mount
/// namespace, and makes it the working directory.
pub(crate) fn stage(spec: &RunSpec, map: &IdMap) -> Result<(), SetupError> {
    let owner = Owner::of(map, 0, 0)?;
    let userns = userns_with_map(map)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| SetupError(format!("unshare(CLONE_NEWNS): {}", e.desc())))?;
    rootfs::make_mounts_private()?;
    let run = spec.scratch_dir.join(format!("run-{}", unique_suffix()));
    owner.mkdir(&run)?;
    io_ctx(|| format!("chdir {run:?}"), std::env::set_current_dir(&run))?;
    for d in ["l", "m", "e", "root"] {
        owner.mkdir(Path::new(d))?;
    }
    match &spec.root {
        RootFs::Overlay { lowers, upper } => {
            let mut names = Vec::new();
            if lowers.is_empty() {
                owner.mkdir(Path::new("l/empty"))?;
                names.push("l/empty".to_owned());
            }
            for (i, lower) in lowers.iter().enumerate() {
                let name = format!("l/{i}");
                attach_idmapped(lower, Path::new(&name), &userns, &owner)?;
                names.push(name);
            }
            names.reverse();
            owner.mkdir(Path::new("ovl-work"))?;
            owner.give(upper.as_path())?;
            let options = format!(
                "lowerdir={},upperdir={},workdir=ovl-work,userxattr",
                names.join(":"),
                upper.display()
            );
            mount(
                Some("overlay"),
                "root",
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .map_err(|e| {
                SetupError(format!(
                    "mounting the overlay of {} idmapped lower dirs (upper {upper:?}): {}",
                    lowers.len(),
                    e.desc()
                ))
            })?;
        }
        RootFs::Dir(dir) => {
            std::fs::remove_dir("root").ok();
            attach_idmapped(dir.as_path(), Path::new("root"), &userns, &owner)?;
        }
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        let target = PathBuf::from(format!("m/{i}"));
        match &m.kind {
            MountKind::Bind { source, .. } => {
                attach_idmapped(source.as_path(), &target, &userns, &owner)?;
            }
            MountKind::Cache {
                source,
                uid,
                gid,
                fresh,
                ..
            } => {
                // The step owns its cache through the range; a setuid file it leaves there
                // belongs to an unprivileged id on the host.
                // A cache created before its steps ran in a shifted range (or just seeded with
                // the container's ids) is moved into it once.
                let in_range = {
                    use std::os::unix::fs::MetadataExt;
                    std::fs::metadata(source)
                        .is_ok_and(|md| map.uid_to_container(md.uid()).is_some())
                };
                if *fresh || !in_range {
                    shift_tree(source, map)?;
                }
                Owner::of(map, *uid, *gid)?.give(source.as_path())?;
                owner.mkdir(&target)?;
                plain_bind(source, &target)?;
            }
            MountKind::Tmpfs { .. } | MountKind::Secret { .. } => {}
        }
    }
    for (name, source) in spec.etc.named() {
        if let Some(source) = source {
            let target = Path::new("e").join(name);
            io_ctx(
                || format!("creating {target:?}"),
                std::fs::File::create(&target),
            )?;
            plain_bind(source, &target)?;
        }
    }
    Ok(())
}

/// Checks, as real root, that idmapped mounts and an overlay over them work here, in a
/// private mount namespace on a scratch tmpfs.
pub(crate) fn probe(map: &IdMap) -> Result<(), SetupError> {
    let userns = userns_with_map(map)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| SetupError(format!("unshare(CLONE_NEWNS): {}", e.desc())))?;
    rootfs::make_mounts_private()?;
    let tmp = Path::new("/tmp");
    mount(Some("tmpfs"), tmp, Some("tmpfs"), MsFlags::empty(), NONE)
        .map_err(|e| SetupError(format!("mounting a tmpfs: {}", e.desc())))?;
    let owner = Owner::of(map, 0, 0)?;
    for d in ["l", "u", "w", "m"] {
        owner.mkdir(&tmp.join(d))?;
    }
    attach_idmapped(&tmp.join("l"), &tmp.join("li"), &userns, &owner)?;
    mount(
        Some("overlay"),
        &tmp.join("m"),
        Some("overlay"),
        MsFlags::empty(),
        Some("lowerdir=/tmp/li,upperdir=/tmp/u,workdir=/tmp/w,userxattr"),
    )
    .map_err(|e| {
        SetupError(format!(
            "an overlay over an idmapped layer is refused ({}): rbuild needs Linux 5.19 or later to run steps as root without host root",
            e.desc()
        ))
    })
}
