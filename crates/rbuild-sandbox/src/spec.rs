//! The step description handed to the sandbox: plain serde data, nothing resolved yet that
//! needs the image's filesystem (USER is resolved inside the sandbox, against the rootfs).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One `RUN` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The filesystem the step sees as `/`.
    pub root: RootFs,
    /// An empty directory owned by the caller, on the same filesystem as the upper dir. The
    /// sandbox keeps the overlay work dir, its mount point and scratch state there; the caller
    /// removes it after the step.
    pub scratch_dir: PathBuf,
    /// The program and its arguments (`["/bin/sh", "-c", "..."]` for the shell form). A first
    /// word without `/` is looked up in the step's `PATH` inside the image.
    pub argv: Vec<String>,
    /// `KEY=VALUE` pairs, exactly what the step sees. `PATH` and `HOME` get Docker's defaults
    /// when absent.
    pub env: Vec<String>,
    /// The working directory inside the image (absolute). Created root-owned 0755 when missing,
    /// as BuildKit does; that directory is part of the step's changes.
    pub cwd: String,
    /// The Dockerfile `USER` value: `name`, `uid`, `name:group`, `uid:gid`; empty means root.
    pub user: String,
    /// The hostname inside the step (own UTS namespace).
    pub hostname: String,
    /// Extra mounts (`RUN --mount`), applied in order.
    pub mounts: Vec<Mount>,
    /// `RUN --network`.
    pub network: Network,
    /// Host files bound read-only over `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`.
    pub etc: EtcFiles,
    /// Apply the seccomp filter (Docker's default profile's refusals: keyrings, modules,
    /// `kexec`, `bpf`, `perf_event_open`, mounts and namespaces…). On by default; turn it off
    /// only for a step that needs one of those calls.
    pub seccomp: bool,
}

/// Where the step's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootFs {
    /// An overlay: read-only `lowers` listed bottom → top and a fresh `upper` dir that receives
    /// every change (whiteouts as 0/0 character devices, opaque dirs as the
    /// `user.overlay.opaque` xattr). Only in [`crate::Isolation::Userns`].
    Overlay {
        /// Layer directories, bottom first. May be empty (`FROM scratch`).
        lowers: Vec<PathBuf>,
        /// The (empty) upper directory: after the step it holds the step's changes.
        upper: PathBuf,
    },
    /// A materialised directory that the step changes in place (chroot mode; the caller diffs
    /// it with a metadata scan).
    Dir(PathBuf),
}

/// One `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the step.
    pub target: String,
    /// What is mounted there.
    pub kind: MountKind,
}

/// The kinds of `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// A host file or directory (from the context or a stage). Read-only unless `readwrite`;
    /// with `readwrite` the step may write but its writes are discarded (a throwaway overlay
    /// for a directory, a private copy for a file).
    Bind {
        /// Host path.
        source: PathBuf,
        /// `rw`.
        readwrite: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes, if any.
        size: Option<u64>,
    },
    /// A persistent cache directory kept by the caller; bound read-write. Its root gets
    /// `uid`/`gid`/`mode` (ids inside the step).
    Cache {
        /// Host directory.
        source: PathBuf,
        /// Owner inside the step.
        uid: u32,
        /// Group inside the step.
        gid: u32,
        /// Permission bits of the cache root.
        mode: u32,
        /// The cache dir was just created (and perhaps seeded from a stage, with the
        /// container's ids on disk): where the step's ids are a shifted range, the sandbox
        /// moves its whole tree into that range first.
        #[serde(default)]
        fresh: bool,
    },
    /// A secret file: written by the sandbox into a tmpfs private to the step's mount namespace
    /// with `mode`, `uid`, `gid` and bound read-only; it never touches a disk, and is gone
    /// with the step's last process (even when the builder is killed).
    Secret {
        /// The secret's bytes (they reach the helper over its control socket only).
        content: SecretBytes,
        /// Owner inside the step.
        uid: u32,
        /// Group inside the step.
        gid: u32,
        /// Permission bits (BuildKit default 0o400).
        mode: u32,
    },
}

/// A secret's bytes. Its `Debug` form never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secret bytes>", self.0.len())
    }
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Network {
    /// The host's network namespace.
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
    /// A new network namespace with outbound access through a user-mode network stack
    /// (`slirp4netns`, which must be installed): the step reaches the outside, but not the
    /// host's loopback services nor its abstract sockets. `/etc/resolv.conf` then names the
    /// stack's DNS forwarder (10.0.2.3).
    Sandbox,
}

/// Host files bound read-only over the image's `/etc` entries. `None` leaves the image's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcFiles {
    /// Bound over `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Bound over `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// Bound over `/etc/hostname`.
    pub hostname: Option<PathBuf>,
}

impl EtcFiles {
    /// Each file with its name under `/etc`.
    pub fn named(&self) -> [(&'static str, Option<&PathBuf>); 3] {
        [
            ("hosts", self.hosts.as_ref()),
            ("resolv.conf", self.resolv_conf.as_ref()),
            ("hostname", self.hostname.as_ref()),
        ]
    }
}

impl RunSpec {
    /// A spec with Docker's defaults: root user, `/` as cwd, host network, no mounts.
    pub fn new(root: RootFs, scratch_dir: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        RunSpec {
            root,
            scratch_dir: scratch_dir.into(),
            argv,
            env: Vec::new(),
            cwd: "/".to_owned(),
            user: String::new(),
            hostname: "rbuild".to_owned(),
            mounts: Vec::new(),
            network: Network::Host,
            etc: EtcFiles::default(),
            seccomp: true,
        }
    }

    /// Checks what can be checked without touching the filesystem; names the field at fault.
    pub fn validate(&self) -> Result<(), crate::SandboxError> {
        let bad = |m: String| Err(crate::SandboxError::InvalidSpec(m));
        if self.argv.is_empty() {
            return bad("argv is empty".into());
        }
        if !self.cwd.starts_with('/') {
            return bad(format!("cwd {:?} is not absolute", self.cwd));
        }
        for (i, e) in self.env.iter().enumerate() {
            if !e.contains('=') || e.starts_with('=') {
                return bad(format!("env[{i}] {e:?} is not KEY=VALUE"));
            }
        }
        if !self.scratch_dir.is_absolute() {
            return bad(format!(
                "scratch_dir {:?} is not absolute",
                self.scratch_dir
            ));
        }
        match &self.root {
            RootFs::Overlay { lowers, upper } => {
                if !upper.is_absolute() {
                    return bad(format!("upper dir {upper:?} is not absolute"));
                }
                if let Some(l) = lowers.iter().find(|l| !l.is_absolute()) {
                    return bad(format!("lower dir {l:?} is not absolute"));
                }
            }
            RootFs::Dir(d) if !d.is_absolute() => {
                return bad(format!("rootfs dir {d:?} is not absolute"));
            }
            RootFs::Dir(_) => {}
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if !m.target.starts_with('/') || m.target.split('/').any(|c| c == "..") {
                return bad(format!(
                    "mounts[{i}] target {:?} must be absolute without '..'",
                    m.target
                ));
            }
            if let MountKind::Bind { source, .. } | MountKind::Cache { source, .. } = &m.kind {
                if !source.is_absolute() {
                    return bad(format!("mounts[{i}] source {source:?} is not absolute"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec::new(RootFs::Dir("/r".into()), "/s", vec!["true".into()])
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut s = spec();
        s.env.push("NOEQUALS".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("env[0]"), "{e}");
        let mut s = spec();
        s.mounts.push(Mount {
            target: "/a/../b".into(),
            kind: MountKind::Tmpfs { size: None },
        });
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("mounts[0]"), "{e}");
        let mut s = spec();
        s.argv.clear();
        assert!(s.validate().unwrap_err().to_string().contains("argv"));
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn spec_round_trips_through_json() {
        let mut s = spec();
        s.mounts.push(Mount {
            target: "/run/secrets/x".into(),
            kind: MountKind::Secret {
                content: SecretBytes(b"hunter2".to_vec()),
                uid: 0,
                gid: 0,
                mode: 0o400,
            },
        });
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<RunSpec>(&j).unwrap(), s);
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "Debug shows no secret"
        );
    }
}
