//! Resolving a Dockerfile `USER` value against the image's `/etc/passwd` and `/etc/group`.
//!
//! Pure functions over file contents, with runc's (and so BuildKit's) rules: a name must exist
//! in `passwd`; a number need not (then gid 0 and `HOME=/`); an explicit `:group` replaces the
//! primary group and disables supplementary groups; without it, every group of `/etc/group`
//! that lists the user's name as a member is a supplementary group.

/// A resolved identity inside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id inside the step.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (without the primary one), sorted, no duplicates.
    pub additional_gids: Vec<u32>,
    /// Home directory from `/etc/passwd`, `/` when the user is not listed there.
    pub home: String,
}

/// A `USER` value that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user name absent from `/etc/passwd`.
    #[error("USER {0:?}: unable to find user {1:?}: no matching entries in /etc/passwd")]
    UnknownUser(String, String),
    /// A group name absent from `/etc/group`.
    #[error("USER {0:?}: unable to find group {1:?}: no matching entries in /etc/group")]
    UnknownGroup(String, String),
    /// An empty user or group part, or a number out of range.
    #[error("USER {0:?}: {1}")]
    Malformed(String, String),
}

/// The largest `/etc/passwd` or `/etc/group` read (4 MiB): a hostile image cannot make the
/// lookup read without end (`/etc/passwd -> /dev/zero`).
pub const MAX_ACCOUNT_FILE: u64 = 4 << 20;

/// An account file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountFileError {
    /// Not a regular file (a device, a FIFO, a directory…).
    #[error("{0}: not a regular file")]
    NotRegular(std::path::PathBuf),
    /// Larger than [`MAX_ACCOUNT_FILE`].
    #[error("{0}: larger than {MAX_ACCOUNT_FILE} bytes")]
    TooLarge(std::path::PathBuf),
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Reads an account file (`/etc/passwd`, `/etc/group`) for [`resolve_user`]: empty when it
/// does not exist; an error when it is not a regular file or is larger than
/// [`MAX_ACCOUNT_FILE`]. Symlinks are followed (call it where they cannot leave the image's
/// root: inside the step, or through a root-confined path). Invalid UTF-8 is replaced.
pub fn read_account_file(path: &std::path::Path) -> Result<String, AccountFileError> {
    use std::io::Read;
    let io = |source| AccountFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(io(e)),
    };
    let md = file.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(AccountFileError::NotRegular(path.to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ACCOUNT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_ACCOUNT_FILE {
        return Err(AccountFileError::TooLarge(path.to_owned()));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Lines of a colon file, without comments, blank lines, or lines with a malformed id (as
/// libc does, a bad line is skipped rather than failing the whole lookup).
fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    records(text).filter_map(|f| {
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    records(text).filter_map(|f| {
        Some(GroupEntry {
            name: f.first()?,
            gid: f.get(2)?.parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

fn parse_id(spec: &str, what: &str, s: &str) -> Result<Option<u32>, UserError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    s.parse::<u32>()
        .map(Some)
        .map_err(|_| UserError::Malformed(spec.to_owned(), format!("{what} {s} is out of range")))
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, empty = root) against the contents
/// of the image's `/etc/passwd` and `/etc/group` (empty strings when the files are missing).
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.is_empty() && group_part.is_some() {
        return Err(UserError::Malformed(
            user.to_owned(),
            "the user part is empty".into(),
        ));
    }
    if group_part == Some("") {
        return Err(UserError::Malformed(
            user.to_owned(),
            "the group part is empty".into(),
        ));
    }
    let user_part = if user_part.is_empty() {
        "root"
    } else {
        user_part
    };
    let numeric_uid = parse_id(user, "uid", user_part)?;

    let found = passwd_entries(passwd)
        .find(|e| e.name == user_part || numeric_uid.is_some_and(|u| u == e.uid));
    let (uid, mut gid, home, name) = match (&found, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_owned(), Some(e.name)),
        (None, Some(u)) => (u, 0, "/".to_owned(), None),
        (None, None) if user_part == "root" => (0, 0, "/root".to_owned(), None),
        (None, None) => {
            return Err(UserError::UnknownUser(
                user.to_owned(),
                user_part.to_owned(),
            ));
        }
    };
    let home = if home.is_empty() {
        "/".to_owned()
    } else {
        home
    };

    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) => {
            let numeric_gid = parse_id(user, "gid", g)?;
            gid = match group_entries(group)
                .find(|e| e.name == g || numeric_gid.is_some_and(|n| n == e.gid))
            {
                Some(e) => e.gid,
                None => match numeric_gid {
                    Some(n) => n,
                    None => return Err(UserError::UnknownGroup(user.to_owned(), g.to_owned())),
                },
            };
        }
        None => {
            if let Some(name) = name {
                additional_gids = group_entries(group)
                    .filter(|e| e.members.contains(&name))
                    .map(|e| e.gid)
                    .filter(|g| *g != gid)
                    .collect();
                additional_gids.sort_unstable();
                additional_gids.dedup();
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_files_are_bounded_and_regular() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("passwd");
        assert_eq!(read_account_file(&missing).unwrap(), "");
        std::os::unix::fs::symlink("/dev/zero", &missing).unwrap();
        let e = read_account_file(&missing).unwrap_err();
        assert!(matches!(e, AccountFileError::NotRegular(_)), "{e}");
        let big = dir.path().join("group");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_ACCOUNT_FILE + 1).unwrap();
        let e = read_account_file(&big).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        std::fs::write(&big, "root:x:0:\n").unwrap();
        assert_eq!(read_account_file(&big).unwrap(), "root:x:0:\n");
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
        broken:x:notanumber:1::/x:/bin/sh\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        nohome:x:1001:1001::::\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,app\n\
        app:x:1000:\n\
        staff:x:50:app, daemon\n\
        docker:x:999:app\n";

    fn r(u: &str) -> Result<ResolvedUser, UserError> {
        resolve_user(u, PASSWD, GROUP)
    }

    #[test]
    fn name_gives_ids_home_and_member_groups() {
        assert_eq!(
            r("app").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 50, 999],
                home: "/home/app".into()
            }
        );
    }

    #[test]
    fn uid_listed_in_passwd_is_resolved_like_its_name() {
        assert_eq!(r("1000").unwrap(), r("app").unwrap());
    }

    #[test]
    fn unknown_uid_gets_gid_0_and_root_home() {
        assert_eq!(
            r("4242").unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 0,
                additional_gids: vec![],
                home: "/".into()
            }
        );
    }

    #[test]
    fn empty_user_is_root() {
        let root = r("").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.additional_gids, vec![10]);
        // Even without /etc/passwd (FROM scratch), root is root.
        let bare = resolve_user("", "", "").unwrap();
        assert_eq!((bare.uid, bare.gid, bare.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn explicit_group_replaces_primary_and_drops_supplementary() {
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.additional_gids.is_empty());
        let u = r("app:777").unwrap();
        assert_eq!(u.gid, 777);
        let u = r("5:10").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (5, 10, "/"));
    }

    #[test]
    fn empty_home_field_becomes_slash() {
        assert_eq!(r("nohome").unwrap().home, "/");
    }

    #[test]
    fn unknown_names_are_errors_naming_the_file() {
        let e = r("ghost").unwrap_err();
        assert_eq!(e, UserError::UnknownUser("ghost".into(), "ghost".into()));
        assert!(e.to_string().contains("/etc/passwd"));
        let e = r("app:ghosts").unwrap_err();
        assert!(e.to_string().contains("/etc/group"), "{e}");
        assert!(matches!(r("app:"), Err(UserError::Malformed(..))));
        assert!(matches!(r(":app"), Err(UserError::Malformed(..))));
        assert!(matches!(r("99999999999"), Err(UserError::Malformed(..))));
    }
}
