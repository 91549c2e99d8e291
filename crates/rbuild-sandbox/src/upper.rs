//! After a step: the upper dir's owners, which are the step's host ids, turned back into the
//! ids the step saw (what the layer records).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::IdMap;

/// Files the step created carry host ids in the upper dir; the layer needs the ids the step
/// saw. Rewrites them in place (the builder owns the upper dir). A `chown` clears the setuid
/// and setgid bits and file capabilities: both are put back, a namespaced (v3) capability
/// whose root is the step's root becoming a plain (v2) one, as it is inside the image.
/// Where the builder may not chown (not root, a single id), nothing is changed on disk: the
/// owners are returned instead (paths relative to `dir`), for the layer to record.
pub fn map_upper_owners_to_container(
    dir: &Path,
    map: &IdMap,
) -> std::io::Result<HashMap<PathBuf, (u32, u32)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut not_written = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let uid = map.uid_to_container(meta.uid()).unwrap_or(meta.uid());
            let gid = map.gid_to_container(meta.gid()).unwrap_or(meta.gid());
            if (uid, gid) != (meta.uid(), meta.gid()) {
                let regular = meta.file_type().is_file();
                let caps = if regular {
                    xattr::get(&path, CAPABILITY_XATTR)?
                } else {
                    None
                };
                match std::os::unix::fs::lchown(&path, Some(uid), Some(gid)) {
                    Ok(()) => {
                        if regular && meta.mode() & 0o6000 != 0 {
                            std::fs::set_permissions(
                                &path,
                                PermissionsExt::from_mode(meta.mode()),
                            )?;
                        }
                        if let Some(caps) = caps {
                            xattr::set(&path, CAPABILITY_XATTR, &container_capability(&caps, map))?;
                        }
                    }
                    // A builder that is not root (one id, no subordinate range) cannot give
                    // files away: the layer records the owner instead.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                        not_written.insert(rel, (uid, gid));
                    }
                    Err(e) => return Err(e),
                }
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(not_written)
}

const CAPABILITY_XATTR: &str = "security.capability";

/// A `security.capability` value as the image needs it: a v3 (namespaced) value whose root
/// id is the step's root becomes v2; anything else is kept as it is.
fn container_capability(value: &[u8], map: &IdMap) -> Vec<u8> {
    const REVISION_MASK: u32 = 0xFF00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    let word = |i: usize| {
        value
            .get(i * 4..i * 4 + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (value.len(), word(0), word(5)) {
        (24, Some(magic), Some(rootid))
            if magic & REVISION_MASK == REVISION_3 && map.uid_to_container(rootid) == Some(0) =>
        {
            let mut out = ((magic & !REVISION_MASK) | REVISION_2)
                .to_le_bytes()
                .to_vec();
            out.extend_from_slice(&value[4..20]);
            out
        }
        _ => value.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::container_capability;
    use crate::idmap::{IdMap, IdMapEntry};

    #[test]
    fn a_namespaced_capability_of_the_steps_root_becomes_a_plain_one() {
        let map = IdMap {
            uids: vec![IdMapEntry {
                inside: 0,
                outside: 100_000,
                count: 65_536,
            }],
            gids: Vec::new(),
        };
        let mut v3 = 0x0300_0001u32.to_le_bytes().to_vec();
        v3.extend_from_slice(&[0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut with_root = v3.clone();
        with_root.extend_from_slice(&100_000u32.to_le_bytes());
        let v2 = container_capability(&with_root, &map);
        assert_eq!(v2.len(), 20);
        assert_eq!(&v2[..4], &0x0200_0001u32.to_le_bytes());
        assert_eq!(&v2[4..], &v3[4..]);
        // Another root, or a v2 value, is left alone.
        let mut other = v3.clone();
        other.extend_from_slice(&5u32.to_le_bytes());
        assert_eq!(container_capability(&other, &map), other);
        assert_eq!(container_capability(&v2, &map), v2);
    }
}
