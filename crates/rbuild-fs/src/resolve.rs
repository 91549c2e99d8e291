//! Resolving a path inside a root in user space, one component at a time: `..` never climbs
//! above the root and an absolute symlink target starts again at the root, as if the root
//! were `/` (what `openat2(RESOLVE_IN_ROOT)` does in the kernel, and BuildKit's
//! `fs.RootPath`). It is needed where the kernel cannot do it: a view made of two trees (a
//! staging tree over a stage's filesystem), and to name the resolved path.

use crate::error::FsError;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most symbolic links one resolution follows (Linux's own limit), after which it fails.
pub const MAX_SYMLINKS: usize = 40;

/// What a lookup of a symlink-free path relative to the root found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Nothing (or a parent that is not a directory).
    Missing,
    /// A symbolic link with this target.
    Symlink(PathBuf),
    /// A directory.
    Dir,
    /// Anything else.
    Other,
}

/// Resolves `path` (absolute or relative: both are taken from the root) to a clean path
/// relative to the root with no symbolic link in it, following links through `lookup` and
/// never leaving the root. The last component is followed only when `follow_final` is set.
/// Missing components are kept as written (a later `..` removes them lexically).
pub fn resolve_in_root(
    path: &Path,
    follow_final: bool,
    lookup: &mut dyn FnMut(&Path) -> Result<Node, FsError>,
) -> Result<PathBuf, FsError> {
    let mut pending: Vec<OsString> = components(path.as_os_str()).rev().collect();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        if pending.is_empty() && !follow_final {
            resolved = candidate;
            continue;
        }
        match lookup(&candidate)? {
            Node::Symlink(target) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(FsError::TooManyLinks {
                        path: path.to_path_buf(),
                    });
                }
                if target.as_os_str().as_bytes().first() == Some(&b'/') {
                    resolved = PathBuf::new();
                }
                pending.extend(components(target.as_os_str()).rev());
            }
            Node::Missing | Node::Dir | Node::Other => resolved = candidate,
        }
    }
    Ok(resolved)
}

/// The non-empty, non-`.` components of `path`, as bytes split on `/`.
pub(crate) fn components(path: &OsStr) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .map(|p| OsStr::from_bytes(p).to_os_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tree(entries: &[(&str, Node)]) -> BTreeMap<PathBuf, Node> {
        entries
            .iter()
            .map(|(p, n)| (PathBuf::from(p), n.clone()))
            .collect()
    }

    fn resolve(t: &BTreeMap<PathBuf, Node>, path: &str, follow: bool) -> Result<PathBuf, FsError> {
        resolve_in_root(Path::new(path), follow, &mut |p| {
            Ok(t.get(p).cloned().unwrap_or(Node::Missing))
        })
    }

    #[test]
    fn absolute_and_dotdot_links_stay_in_the_root() {
        let t = tree(&[
            ("etc", Node::Dir),
            ("l", Node::Symlink("/".into())),
            ("up", Node::Symlink("../../../../srv".into())),
            ("etclink", Node::Symlink("/etc".into())),
        ]);
        assert_eq!(
            resolve(&t, "l/etc/hostname", true).unwrap(),
            Path::new("etc/hostname")
        );
        assert_eq!(resolve(&t, "up/x", true).unwrap(), Path::new("srv/x"));
        assert_eq!(
            resolve(&t, "/../../etclink/shadow", true).unwrap(),
            Path::new("etc/shadow")
        );
        assert_eq!(resolve(&t, "etclink", false).unwrap(), Path::new("etclink"));
        assert_eq!(resolve(&t, "etclink", true).unwrap(), Path::new("etc"));
        assert_eq!(resolve(&t, ".", true).unwrap(), Path::new(""));
    }

    #[test]
    fn link_loops_fail() {
        let t = tree(&[
            ("a", Node::Symlink("b".into())),
            ("b", Node::Symlink("a".into())),
        ]);
        assert!(matches!(
            resolve(&t, "a/x", true),
            Err(FsError::TooManyLinks { .. })
        ));
    }
}
