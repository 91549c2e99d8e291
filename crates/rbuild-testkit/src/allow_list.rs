//! Differences between two image snapshots that a comparison accepts, each with its reason.
//!
//! [`KnownDifference`] is the one commented list of the ways Buildah 1.28 (the oracle) is known
//! to differ from BuildKit, which rbuild follows (DESIGN.md §6). Some apply to every build
//! ([`AllowList::buildkit_vs_buildah`]); the others only where a case triggers them, so a case
//! names them in its `allow` file together with the path or config field concerned:
//!
//! ```text
//! # <known difference> path <glob> <aspect>[,<aspect>...]
//! workdir-lazy path /app/unused only-in-candidate
//! # <known difference> config <Field>
//! arg-stage-inheritance config Env
//! ```

use std::fmt;

use crate::TestkitError;

/// What part of a path's entry differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aspect {
    /// The path exists only in the oracle's image.
    OnlyInOracle,
    /// The path exists only in the candidate's (rbuild's) image.
    OnlyInCandidate,
    /// File, directory, symlink...
    Kind,
    /// Permission bits.
    Mode,
    /// uid or gid.
    Owner,
    /// File size.
    Size,
    /// File content (sha256).
    Content,
    /// Symlink target.
    LinkTarget,
    /// Hardlink grouping.
    Hardlink,
    /// Extended attributes.
    Xattrs,
}

impl Aspect {
    const ALL: [(Aspect, &'static str); 10] = [
        (Aspect::OnlyInOracle, "only-in-oracle"),
        (Aspect::OnlyInCandidate, "only-in-candidate"),
        (Aspect::Kind, "kind"),
        (Aspect::Mode, "mode"),
        (Aspect::Owner, "owner"),
        (Aspect::Size, "size"),
        (Aspect::Content, "content"),
        (Aspect::LinkTarget, "link"),
        (Aspect::Hardlink, "hardlink"),
        (Aspect::Xattrs, "xattrs"),
    ];

    /// The aspect's name in `allow` files.
    pub fn name(self) -> &'static str {
        Aspect::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    fn parse(name: &str) -> Option<Aspect> {
        Aspect::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(a, _)| *a)
    }
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The known ways Buildah 1.28 differs from BuildKit. In each, BuildKit (and rbuild) is right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownDifference {
    /// Buildah does not inherit a stage's ARG values into `FROM <stage>` children.
    ArgStageInheritance,
    /// Buildah writes a shell-form ENTRYPOINT or CMD with `/bin/sh -c`, ignoring SHELL.
    ShellFormIgnoresShell,
    /// Buildah moves a re-set `PATH` to the end of Env; BuildKit keeps its place.
    PathEnvOrder,
    /// Buildah creates a WORKDIR only when a later step uses it; BuildKit always creates it.
    WorkdirLazy,
    /// Buildah creates a VOLUME's directory and drops later writes under it.
    VolumeDirAndWrites,
    /// Buildah leaves the intermediate directories of a WORKDIR after USER owned by root.
    WorkdirOwnerAfterUser,
    /// Buildah's `ADD --chown` of a local tar keeps the archive's owners.
    AddChownTar,
    /// Buildah's RUN layers carry empty `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` and
    /// `/run`, `/proc`, `/sys`, `/dev` directories (its mount points).
    RunMountPoints,
    /// Buildah labels its images `io.buildah.version`.
    BuildahVersionLabel,
    /// Buildah gives the directory that `COPY --chmod` creates 0755; BuildKit ≥ 0.21 gives it
    /// the `--chmod` mode too.
    CopyChmodCreatedDir,
    /// Buildah writes `"Cmd": []` where ENTRYPOINT resets an inherited CMD; BuildKit writes null.
    EntrypointResetCmdEmpty,
    /// Buildah writes an unset Entrypoint or Cmd as `[]`; BuildKit leaves it null.
    UnsetCommandEmptyList,
    /// BuildKit sets `ArgsEscaped: true` with every CMD; Buildah leaves it unset.
    CmdArgsEscaped,
    /// BuildKit gives a `FROM scratch` image `WorkingDir: "/"`; Buildah leaves it unset.
    ScratchWorkdirRoot,
    /// Buildah gives a RUN under `USER user:group` that group as a supplementary group too;
    /// BuildKit gives none for the explicit form.
    ExplicitGroupSupplementary,
    /// Buildah keeps the `user.*` (and other) extended attributes of copied files; a BuildKit
    /// layer carries `security.capability` only.
    ContextXattrs,
    /// Buildah replaces a symlink named as COPY's destination with the copied file; BuildKit
    /// writes through the link (resolved inside the image).
    CopyDestSymlink,
}

impl KnownDifference {
    const ALL: [(KnownDifference, &'static str); 17] = [
        (
            KnownDifference::ArgStageInheritance,
            "arg-stage-inheritance",
        ),
        (
            KnownDifference::ShellFormIgnoresShell,
            "shell-form-ignores-shell",
        ),
        (KnownDifference::PathEnvOrder, "path-env-order"),
        (KnownDifference::WorkdirLazy, "workdir-lazy"),
        (KnownDifference::VolumeDirAndWrites, "volume-dir-and-writes"),
        (
            KnownDifference::WorkdirOwnerAfterUser,
            "workdir-owner-after-user",
        ),
        (KnownDifference::AddChownTar, "add-chown-tar"),
        (KnownDifference::RunMountPoints, "run-mount-points"),
        (
            KnownDifference::BuildahVersionLabel,
            "buildah-version-label",
        ),
        (
            KnownDifference::CopyChmodCreatedDir,
            "copy-chmod-created-dir",
        ),
        (
            KnownDifference::EntrypointResetCmdEmpty,
            "entrypoint-reset-cmd-empty",
        ),
        (
            KnownDifference::UnsetCommandEmptyList,
            "unset-command-empty-list",
        ),
        (KnownDifference::CmdArgsEscaped, "cmd-args-escaped"),
        (KnownDifference::ScratchWorkdirRoot, "scratch-workdir-root"),
        (
            KnownDifference::ExplicitGroupSupplementary,
            "explicit-group-supplementary",
        ),
        (KnownDifference::ContextXattrs, "context-xattrs"),
        (KnownDifference::CopyDestSymlink, "copy-dest-symlink"),
    ];

    /// Every known difference, in the order of the list.
    pub fn all() -> impl Iterator<Item = KnownDifference> {
        KnownDifference::ALL.iter().map(|(k, _)| *k)
    }

    /// The name used in `allow` files.
    pub fn name(self) -> &'static str {
        KnownDifference::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// The difference with this name.
    pub fn parse(name: &str) -> Option<KnownDifference> {
        KnownDifference::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(k, _)| *k)
    }

    /// Why the difference is expected.
    pub fn reason(self) -> &'static str {
        match self {
            KnownDifference::ArgStageInheritance => {
                "Buildah 1.28 does not inherit ARG values declared in a stage into FROM <stage>; BuildKit does"
            }
            KnownDifference::ShellFormIgnoresShell => {
                "Buildah 1.28 wraps a shell-form ENTRYPOINT or CMD in /bin/sh -c whatever SHELL says; BuildKit uses SHELL"
            }
            KnownDifference::PathEnvOrder => {
                "Buildah 1.28 moves a re-set PATH to the end of Env; BuildKit keeps its position"
            }
            KnownDifference::WorkdirLazy => {
                "Buildah 1.28 creates a WORKDIR only when a later step touches it; BuildKit creates it at once"
            }
            KnownDifference::VolumeDirAndWrites => {
                "Buildah 1.28 creates a VOLUME's directory and drops later writes under it; BuildKit does neither"
            }
            KnownDifference::WorkdirOwnerAfterUser => {
                "Buildah 1.28 leaves WORKDIR's intermediate dirs root-owned after USER; BuildKit owns them by USER"
            }
            KnownDifference::AddChownTar => {
                "Buildah 1.28's ADD --chown of a local tar keeps the archive's owners; BuildKit applies --chown"
            }
            KnownDifference::RunMountPoints => {
                "Buildah 1.28's RUN layers keep its empty mount points /etc/hostname, /etc/hosts, /etc/resolv.conf, /run, /proc, /sys, /dev; BuildKit removes the mount stubs it created"
            }
            KnownDifference::BuildahVersionLabel => "Buildah labels every image io.buildah.version",
            KnownDifference::CopyChmodCreatedDir => {
                "Buildah 1.28 creates COPY --chmod's destination dir 0755; BuildKit >= 0.21 applies the --chmod mode"
            }
            KnownDifference::EntrypointResetCmdEmpty => {
                "Buildah 1.28 resets an inherited Cmd to [] on ENTRYPOINT; BuildKit sets it to null (same meaning)"
            }
            KnownDifference::UnsetCommandEmptyList => {
                "Buildah 1.28 writes an unset Entrypoint or Cmd as []; BuildKit leaves it null (same meaning)"
            }
            KnownDifference::CmdArgsEscaped => {
                "BuildKit's dispatchCmd sets the Docker-compat ArgsEscaped: true with every CMD; Buildah 1.28 leaves it unset"
            }
            KnownDifference::ScratchWorkdirRoot => {
                "BuildKit's empty image (FROM scratch) has WorkingDir \"/\"; Buildah 1.28 leaves it unset (same meaning)"
            }
            KnownDifference::ExplicitGroupSupplementary => {
                "Buildah 1.28 adds the group of USER user:group to RUN's supplementary groups; BuildKit (runc's GetExecUser) sets none for the explicit form"
            }
            KnownDifference::ContextXattrs => {
                "Buildah 1.28 keeps the user.* xattrs of context files; a BuildKit layer records security.capability and no other xattr"
            }
            KnownDifference::CopyDestSymlink => {
                "Buildah 1.28 replaces a symlink named as COPY's destination by the file; BuildKit keeps the link and writes the file it points to"
            }
        }
    }

    /// Where BuildKit's behaviour is decided: the file and function in moby/buildkit (or the
    /// tonistiigi/fsutil / containerd code it calls), read with the search tool.
    pub fn buildkit_reference(self) -> &'static str {
        match self {
            KnownDifference::ArgStageInheritance => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchState.init: ds.buildArgs = append(ds.buildArgs, ds.base.buildArgs...)"
            }
            KnownDifference::ShellFormIgnoresShell => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchEntrypoint / dispatchCmd: withShell(d.image, args) uses Config.Shell"
            }
            KnownDifference::PathEnvOrder => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go addEnv: an existing key is replaced in place"
            }
            KnownDifference::WorkdirLazy => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchWorkdir: llb.Mkdir(wd, 0755, WithParents) at once for every WORKDIR but /"
            }
            KnownDifference::VolumeDirAndWrites => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchVolume: only Config.Volumes changes, no directory, no layer"
            }
            KnownDifference::WorkdirOwnerAfterUser => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchWorkdir (llb.WithUser(Config.User)) -> solver/llbsolver/file/backend.go mkdir -> fsutil copy/mkdir.go MkdirAll chowns every directory it creates"
            }
            KnownDifference::AddChownTar => {
                "moby/buildkit solver/llbsolver/file/unpack.go unpack: applyRootArchive(ctx, dest, rdr, u, ...) with the --chown user"
            }
            KnownDifference::RunMountPoints => {
                "moby/buildkit executor/stubs.go MountStubsCleaner: the empty files and directories made for mounts are removed after the run"
            }
            KnownDifference::BuildahVersionLabel => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchLabel: Config.Labels holds only the Dockerfile's (and --label) labels"
            }
            KnownDifference::CopyChmodCreatedDir => {
                "tonistiigi/fsutil copy/copy.go Copy/prepareTargetDir: MkdirAll of the missing destination directories; since the fix of moby/buildkit#4945 (BuildKit 0.21, described in moby/buildkit#5943) they get the --chmod mode (the stored fsutil source still shows the older fixed 0755)"
            }
            KnownDifference::EntrypointResetCmdEmpty => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchEntrypoint: if !d.cmd.IsSet { Config.Cmd = nil }"
            }
            KnownDifference::UnsetCommandEmptyList => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/image.go emptyImage: Entrypoint and Cmd stay nil until an instruction sets them"
            }
            KnownDifference::CmdArgsEscaped => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go dispatchCmd: d.image.Config.ArgsEscaped = true"
            }
            KnownDifference::ScratchWorkdirRoot => {
                "moby/buildkit frontend/dockerfile/dockerfile2llb/image.go emptyImage: img.Config.WorkingDir = \"/\""
            }
            KnownDifference::ExplicitGroupSupplementary => {
                "moby/buildkit executor/oci/user.go GetUser: an explicit user:group gives no additional gids"
            }
            KnownDifference::ContextXattrs => {
                "containerd archive/tar.go ChangeWriter.HandleChange (BuildKit's layer writer, via util/overlay/overlay_linux.go WriteUpperdir) records only security.capability; fsutil stat_unix.go loadXattr and copy/copy_linux.go copyXAttrs carry the others only as far as the snapshot"
            }
            KnownDifference::CopyDestSymlink => {
                "tonistiigi/fsutil copy/copy.go Copy: dst = fs.RootPath(dstRoot, filepath.Clean(dst)) resolves every component of the destination, the last included, inside the root"
            }
        }
    }
}

/// What an allowance covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowTarget {
    /// Paths matching `pattern` (`*` and `?` within a component, `**` across components),
    /// for the listed aspects (all when empty).
    Path {
        /// The glob, absolute (`/etc/hostname`, `/run/**`).
        pattern: String,
        /// The aspects accepted.
        aspects: Vec<Aspect>,
    },
    /// A config field: `User`, `Env`, `Env.order` (same entries, other order), `Labels.<key>`,
    /// `Entrypoint`, ...
    Config(String),
}

/// One accepted difference and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// What it covers.
    pub target: AllowTarget,
    /// Which known difference explains it.
    pub known: KnownDifference,
}

impl Allowance {
    /// Whether this allowance covers `aspect` of `path`.
    pub fn covers_path(&self, path: &str, aspect: Aspect) -> bool {
        match &self.target {
            AllowTarget::Path { pattern, aspects } => {
                (aspects.is_empty() || aspects.contains(&aspect)) && glob_match(pattern, path)
            }
            AllowTarget::Config(_) => false,
        }
    }

    /// Whether this allowance covers config `field`.
    pub fn covers_config(&self, field: &str) -> bool {
        matches!(&self.target, AllowTarget::Config(f) if f == field)
    }
}

/// A set of allowances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// The allowances, in order.
    pub allowances: Vec<Allowance>,
}

impl AllowList {
    /// The differences every Buildah build shows: its RUN mount points, its version label, its
    /// `[]` for an unset Entrypoint or Cmd.
    pub fn buildkit_vs_buildah() -> AllowList {
        let mut list = AllowList::default();
        // Buildah bind-mounts these over the rootfs during RUN and leaves the empty mount
        // points in the layer; only paths Buildah has and rbuild lacks are accepted.
        // /proc, /sys and /dev were added after the first rbuild comparison: on the busybox
        // base (which has none of them) every Buildah RUN left them behind.
        for pattern in [
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/run",
            "/proc",
            "/sys",
            "/dev",
        ] {
            list.allowances.push(Allowance {
                target: AllowTarget::Path {
                    pattern: pattern.to_owned(),
                    aspects: vec![Aspect::OnlyInOracle],
                },
                known: KnownDifference::RunMountPoints,
            });
        }
        list.allowances.push(Allowance {
            target: AllowTarget::Config("Labels.io.buildah.version".to_owned()),
            known: KnownDifference::BuildahVersionLabel,
        });
        // Only null against [] (see `tree_diff`): any other Entrypoint or Cmd difference stays
        // a difference. Added after the first rbuild comparison showed it on 44 of 54 cases.
        for field in ["Entrypoint.empty", "Cmd.empty"] {
            list.allowances.push(Allowance {
                target: AllowTarget::Config(field.to_owned()),
                known: KnownDifference::UnsetCommandEmptyList,
            });
        }
        list
    }

    /// Parses an `allow` file (see the module docs); `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<AllowList, TestkitError> {
        let mut list = AllowList::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| TestkitError::Image(format!("{origin}:{}: {what}", number + 1));
            let words: Vec<&str> = line.split_whitespace().collect();
            let known = KnownDifference::parse(words[0]).ok_or_else(|| {
                bad(&format!(
                    "unknown difference {:?} (known: {})",
                    words[0],
                    KnownDifference::ALL.map(|(_, n)| n).join(", ")
                ))
            })?;
            let target = match words.get(1..) {
                Some(["path", pattern, aspects]) => AllowTarget::Path {
                    pattern: (*pattern).to_owned(),
                    aspects: aspects
                        .split(',')
                        .map(|a| {
                            Aspect::parse(a).ok_or_else(|| bad(&format!("unknown aspect {a:?}")))
                        })
                        .collect::<Result<_, _>>()?,
                },
                Some(["path", pattern]) => AllowTarget::Path {
                    pattern: (*pattern).to_owned(),
                    aspects: Vec::new(),
                },
                Some(["config", field]) => AllowTarget::Config((*field).to_owned()),
                _ => {
                    return Err(bad(
                        "expected `<difference> path <glob> [aspects]` or `<difference> config <Field>`",
                    ))
                }
            };
            list.allowances.push(Allowance { target, known });
        }
        Ok(list)
    }

    /// Adds every allowance of `other`.
    pub fn extend(&mut self, other: AllowList) {
        self.allowances.extend(other.allowances);
    }

    /// The first allowance covering `aspect` of `path`.
    pub fn find_path(&self, path: &str, aspect: Aspect) -> Option<&Allowance> {
        self.allowances.iter().find(|a| a.covers_path(path, aspect))
    }

    /// The first allowance covering config `field`.
    pub fn find_config(&self, field: &str) -> Option<&Allowance> {
        self.allowances.iter().find(|a| a.covers_config(field))
    }
}

/// Shell-style glob on `/`-separated paths: `*` and `?` stay within a component, `**` as a
/// whole component matches any number of components (including none).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match_components(&pattern, &path)
}

fn match_components(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_components(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((name, path_rest)) => {
                match_component(first.as_bytes(), name.as_bytes())
                    && match_components(rest, path_rest)
            }
            None => false,
        },
    }
}

fn match_component(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| match_component(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && match_component(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && match_component(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_components() {
        assert!(glob_match("/run", "/run"));
        assert!(!glob_match("/run", "/run/x"));
        assert!(glob_match("/run/**", "/run/x/y"));
        assert!(glob_match("/**/hosts", "/etc/hosts"));
        assert!(glob_match("/etc/*.conf", "/etc/resolv.conf"));
        assert!(!glob_match("/etc/*.conf", "/etc/a/resolv.conf"));
        assert!(glob_match("/a/?", "/a/b"));
        assert!(!glob_match("/a/?", "/a/bc"));
    }

    #[test]
    fn every_known_difference_cites_buildkit_source() {
        for known in KnownDifference::all() {
            let reference = known.buildkit_reference();
            assert!(
                reference.contains(".go ") && !known.reason().is_empty(),
                "{}: {reference}",
                known.name()
            );
            assert_eq!(KnownDifference::parse(known.name()), Some(known));
        }
    }

    #[test]
    fn allow_file_parses_and_names_bad_lines() {
        let list = AllowList::parse(
            "# comment\nworkdir-lazy path /app/** only-in-candidate,owner\narg-stage-inheritance config Env\n",
            "case/allow",
        )
        .unwrap();
        assert_eq!(list.allowances.len(), 2);
        assert!(list.find_path("/app/x", Aspect::OnlyInCandidate).is_some());
        assert!(list.find_path("/app/x", Aspect::Mode).is_none());
        assert!(list.find_config("Env").is_some());

        let err = AllowList::parse("\nno-such path /x\n", "case/allow").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("test image: case/allow:2: unknown difference"));
        let err = AllowList::parse("workdir-lazy path /x bogus\n", "f").unwrap_err();
        assert!(err.to_string().contains("f:1: unknown aspect \"bogus\""));
        let err = AllowList::parse("workdir-lazy /x\n", "f").unwrap_err();
        assert!(err.to_string().contains("f:1: expected"));
    }
}
