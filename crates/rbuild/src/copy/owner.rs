//! `--chown=user[:group]`: numeric ids, or names looked up in the stage's `/etc/passwd` and
//! `/etc/group` (as BuildKit's `readUser`: a numeric user alone gives gid = uid, a named user
//! alone its primary group).

use std::path::Path;

/// Resolves `spec` against the passwd/group files under `rootfs` (if any).
pub fn resolve_chown(spec: &str, rootfs: Option<&Path>) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |name: &str| -> String {
        rootfs
            .map(|r| std::fs::read_to_string(r.join("etc").join(name)).unwrap_or_default())
            .unwrap_or_default()
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let passwd = read("passwd");
            lookup(&passwd, user, 2, Some(3)).ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read("group");
                lookup(&groups, g, 2, None)
                    .map(|(gid, _)| gid)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?
            }
        },
    };
    Ok((uid, gid))
}

/// Finds `name` in a colon-separated file; returns field `id_field` (and `second`, if asked).
fn lookup(text: &str, name: &str, id_field: usize, second: Option<usize>) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            return None;
        }
        let id = fields.get(id_field)?.parse().ok()?;
        let other = match second {
            Some(i) => fields.get(i)?.parse().ok()?,
            None => id,
        };
        Some((id, other))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_named_owners() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = Some(dir.path());
        assert_eq!(resolve_chown("1234", r), Ok((1234, 1234)));
        assert_eq!(resolve_chown("1234:5", r), Ok((1234, 5)));
        assert_eq!(resolve_chown("app", r), Ok((1000, 1001)));
        assert_eq!(resolve_chown("app:staff", r), Ok((1000, 50)));
        assert_eq!(resolve_chown("0:staff", r), Ok((0, 50)));
        assert!(resolve_chown("nobody", r)
            .unwrap_err()
            .contains("unable to find user nobody"));
        assert!(resolve_chown("app:nogroup", r)
            .unwrap_err()
            .contains("unable to find group"));
        assert!(resolve_chown("app", None).is_err());
    }
}
