//! The owner that `COPY --chown=user[:group]`, `ADD --chown` and WORKDIR (under `USER`) give
//! the entries they create, with BuildKit's file-op rules (moby/buildkit
//! `solver/llbsolver/file/user_linux.go`, `readUser`; the spec is split by `llb.WithUser` in
//! `client/llb/fileop.go`):
//!
//! - a numeric user alone is `uid:uid` (`UserOpt_ByID` sets both ids), and needs no passwd file;
//! - `uid:gid` needs no file either;
//! - a name is looked up in the stage's `/etc/passwd` (its primary group) and a group name in
//!   `/etc/group`; `root` is `0:0` even where the stage has no passwd file (`FROM scratch`).
//!
//! The names are resolved by the one passwd/group resolver, [`rbuild_sandbox::user`]. Where
//! BuildKit silently falls back to `0` for a name its files do not list, rbuild stops with an
//! error naming the file (a typo must not give root-owned files).
//!
//! The stage's files are hostile input (issue #12: a base image with `/etc/passwd -> /dev/zero`
//! made `COPY --chown=app` read forever): they are read only when they are regular files once
//! their symlinks are resolved inside the stage, and never beyond
//! [`MAX_ACCOUNT_FILE_BYTES`].

use super::staging::resolve_in_root;
use rbuild_sandbox::user::{resolve_user, UserError};
use rustix::fs::{Mode, OFlags};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// The largest `/etc/passwd` or `/etc/group` a stage may have for `--chown` or WORKDIR to read
/// it: the sandbox's own limit for USER ([`rbuild_sandbox::user::MAX_ACCOUNT_FILE`], 4 MiB: a
/// system with tens of thousands of accounts fits; a file beyond it is an error).
pub const MAX_ACCOUNT_FILE_BYTES: u64 = rbuild_sandbox::user::MAX_ACCOUNT_FILE;

/// Why an owner cannot be resolved. One line each, naming the stage file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// A user or group name absent from the stage's file (or the file is absent).
    #[error("unable to find {what} {name:?}: no matching entries in {file} of the stage")]
    UnknownName {
        /// `user` or `group`.
        what: &'static str,
        /// The name asked for.
        name: String,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
    /// An empty part (`app:`, `:staff`) or an id out of range.
    #[error("--chown/USER {spec:?}: {reason}")]
    Malformed {
        /// The owner as written.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The stage's passwd or group file is a device, FIFO, directory or socket.
    #[error("{file} of the stage is a {kind}, not a regular file: it cannot name users (fix the base image)")]
    NotRegular {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// What it is instead.
        kind: &'static str,
    },
    /// The stage's passwd or group file is larger than [`MAX_ACCOUNT_FILE_BYTES`].
    #[error("{file} of the stage is larger than {limit} bytes (MAX_ACCOUNT_FILE_BYTES): refusing to read it; use numeric ids or fix the base image")]
    TooLarge {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The file could not be read.
    #[error("read {file} of the stage: {source}")]
    Read {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<UserError> for OwnerError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::UnknownUser(_, name) => OwnerError::UnknownName {
                what: "user",
                name,
                file: PASSWD,
            },
            UserError::UnknownGroup(_, name) => OwnerError::UnknownName {
                what: "group",
                name,
                file: GROUP,
            },
            UserError::Malformed(spec, reason) => OwnerError::Malformed { spec, reason },
        }
    }
}

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// Whether resolving `spec` reads the stage's files (it names a user or group rather than
/// giving numeric ids).
pub fn needs_account_files(spec: &str) -> bool {
    numeric_owner(spec).is_none()
}

/// `uid` → `uid:uid`, `uid:gid` → itself; `None` when a part is a name (or empty).
fn numeric_owner(spec: &str) -> Option<(u32, u32)> {
    let numeric = |s: &str| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u32>().ok()
        } else {
            None
        }
    };
    match spec.split_once(':') {
        None => numeric(spec).map(|uid| (uid, uid)),
        Some((u, g)) => Some((numeric(u)?, numeric(g)?)),
    }
}

/// Resolves `spec` (`user`, `user:group`, names or ids) to `(uid, gid)`, reading the passwd
/// and group files under `rootfs` (the stage's filesystem; `None` when it has none yet) only
/// when a name is given.
pub fn resolve_owner(spec: &str, rootfs: Option<&Path>) -> Result<(u32, u32), OwnerError> {
    if let Some(owner) = numeric_owner(spec) {
        return Ok(owner);
    }
    let (passwd, group) = match rootfs {
        Some(root) => (
            read_account_file(root, PASSWD)?,
            if spec.contains(':') {
                read_account_file(root, GROUP)?
            } else {
                String::new()
            },
        ),
        None => (String::new(), String::new()),
    };
    let user = resolve_user(spec, &passwd, &group)?;
    Ok((user.uid, user.gid))
}

/// The text of `file` (absolute, in the image) under `rootfs`: empty when it does not exist,
/// an error when it is not a regular file or is larger than [`MAX_ACCOUNT_FILE_BYTES`].
/// Symlinks are followed inside `rootfs` only.
fn read_account_file(rootfs: &Path, file: &'static str) -> Result<String, OwnerError> {
    let not_regular = |kind| OwnerError::NotRegular { file, kind };
    let Some(resolved) = resolve_in_root(rootfs, file) else {
        return Err(not_regular("symlink loop"));
    };
    let path = rootfs.join(resolved.trim_start_matches('/'));
    let read_error = |source| OwnerError::Read { file, source };
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: the path was resolved
    // inside the stage, a link appearing now is not followed out of it.
    let fd = match rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(String::new()),
        Err(rustix::io::Errno::LOOP) => return Err(not_regular("symlink")),
        Err(e) => return Err(read_error(e.into())),
    };
    let file_handle = std::fs::File::from(fd);
    let meta = file_handle.metadata().map_err(read_error)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(not_regular(if kind.is_dir() {
            "directory"
        } else if kind.is_char_device() {
            "character device"
        } else if kind.is_block_device() {
            "block device"
        } else if kind.is_fifo() {
            "FIFO"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        }));
    }
    let too_large = OwnerError::TooLarge {
        file,
        limit: MAX_ACCOUNT_FILE_BYTES,
    };
    if meta.len() > MAX_ACCOUNT_FILE_BYTES {
        return Err(too_large);
    }
    let mut bytes = Vec::new();
    file_handle
        .take(MAX_ACCOUNT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_ACCOUNT_FILE_BYTES {
        return Err(too_large);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn stage() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        dir
    }

    #[test]
    fn numeric_and_named_owners_follow_buildkit_read_user() {
        let dir = stage();
        let r = Some(dir.path());
        assert_eq!(resolve_owner("1234", r).unwrap(), (1234, 1234));
        // A uid listed in passwd alone still gives gid = uid (UserOpt_ByID), not its group.
        assert_eq!(resolve_owner("1000", r).unwrap(), (1000, 1000));
        assert_eq!(resolve_owner("1234:5", r).unwrap(), (1234, 5));
        assert_eq!(resolve_owner("app", r).unwrap(), (1000, 1001));
        assert_eq!(resolve_owner("app:staff", r).unwrap(), (1000, 50));
        assert_eq!(resolve_owner("0:staff", r).unwrap(), (0, 50));
        assert_eq!(resolve_owner("app:77", r).unwrap(), (1000, 77));
        let err = resolve_owner("nobody", r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user \"nobody\": no matching entries in /etc/passwd of the stage"
        );
        let err = resolve_owner("app:nogroup", r).unwrap_err();
        assert!(err.to_string().contains("group \"nogroup\""), "{err}");
        assert!(matches!(
            resolve_owner("app:", r),
            Err(OwnerError::Malformed { .. })
        ));
    }

    #[test]
    fn root_and_ids_need_no_passwd_file() {
        let empty = tempfile::tempdir().unwrap();
        for (spec, want) in [
            ("root", (0, 0)),
            ("0", (0, 0)),
            ("9999", (9999, 9999)),
            ("9999:9999", (9999, 9999)),
        ] {
            assert_eq!(resolve_owner(spec, Some(empty.path())).unwrap(), want);
            assert_eq!(resolve_owner(spec, None).unwrap(), want);
        }
        assert!(resolve_owner("app", Some(empty.path())).is_err());
        assert!(!needs_account_files("12:34") && needs_account_files("app"));
    }

    #[test]
    fn passwd_linked_to_a_host_device_never_leaves_the_stage() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        // Absolute: resolved inside the stage, so it only reaches a /dev/zero the stage has.
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        symlink("/dev/zero", dir.path().join("etc/passwd")).unwrap();
        // The stage has no dev/zero: like a missing file, a name is then unknown.
        assert!(matches!(
            resolve_owner("app", Some(dir.path())),
            Err(OwnerError::UnknownName { .. })
        ));
        // A relative link climbing out of the stage stays inside it too.
        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        symlink("../../../../../../dev/zero", dir.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_owner("app", Some(dir.path())),
            Err(OwnerError::UnknownName { .. })
        ));
    }

    #[test]
    fn special_files_and_oversized_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.path().join("etc/passwd"),
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let err = resolve_owner("app", Some(dir.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/passwd of the stage is a FIFO, not a regular file: it cannot name users (fix the base image)"
        );

        std::fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::fs::create_dir(dir.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_owner("app", Some(dir.path())),
            Err(OwnerError::NotRegular {
                kind: "directory",
                ..
            })
        ));

        std::fs::remove_dir(dir.path().join("etc/passwd")).unwrap();
        let big = std::fs::File::create(dir.path().join("etc/passwd")).unwrap();
        big.set_len(MAX_ACCOUNT_FILE_BYTES + 1).unwrap();
        let err = resolve_owner("app", Some(dir.path())).unwrap_err();
        assert!(matches!(err, OwnerError::TooLarge { .. }), "{err}");
        // Numeric ids never touch the files.
        assert_eq!(resolve_owner("5:6", Some(dir.path())).unwrap(), (5, 6));
    }

    #[test]
    fn passwd_linked_inside_the_stage_is_followed() {
        let dir = stage();
        std::fs::create_dir_all(dir.path().join("usr/share")).unwrap();
        std::fs::rename(
            dir.path().join("etc/passwd"),
            dir.path().join("usr/share/passwd"),
        )
        .unwrap();
        symlink("../usr/share/passwd", dir.path().join("etc/passwd")).unwrap();
        assert_eq!(
            resolve_owner("app", Some(dir.path())).unwrap(),
            (1000, 1001)
        );
    }
}
