//! Resolving layer entry names inside the target directory without ever leaving it.
//!
//! A name is split into components; `..` and absolute names are refused (rather than cleaned
//! or re-rooted: no well-formed layer has them, so a layer that does is hostile or broken).
//! Every parent component is then checked with `lstat` on its way down from the target: a
//! symbolic link in a parent position is refused, never followed, and missing parents are
//! created as directories. The last component is never followed either: callers replace what
//! is there (`O_EXCL` creation, `lchown`, `lsetxattr`, `utimensat(AT_SYMLINK_NOFOLLOW)`).
//!
//! This is safe against anything a layer does to the target, since entries are applied one
//! after the other and each re-checks its parents. It does not defend against another process
//! changing the target concurrently (the target is private to the build while it is applied).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The clean components of a tar entry name (`.` and empty components dropped); an error
/// message when the name is absolute or has a `..` component.
pub(crate) fn components(name: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if name.first() == Some(&b'/') {
        return Err("absolute name");
    }
    let mut out = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            _ => out.push(part),
        }
    }
    Ok(out)
}

/// `components` joined by `/` (the key under which an applied path is remembered).
pub(crate) fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

/// Why a parent walk stopped.
pub(crate) enum WalkError {
    /// A parent is not a real directory (a symlink, a file...): the message says which.
    Unsafe(String),
    /// A system call failed.
    Io(PathBuf, io::Error),
}

/// The target directory of an apply.
pub(crate) struct Target {
    root: PathBuf,
}

impl Target {
    pub(crate) fn new(root: &Path) -> Target {
        Target {
            root: root.to_owned(),
        }
    }

    /// Walks `dirs` from the target down, checking that each is a real directory. Missing ones
    /// are created (mode 0755) when `create` is set; otherwise `Ok(None)` says one is missing.
    /// Returns the full path of the last one.
    pub(crate) fn walk_dirs(
        &self,
        dirs: &[&[u8]],
        create: bool,
    ) -> Result<Option<PathBuf>, WalkError> {
        let mut path = self.root.clone();
        for (i, c) in dirs.iter().enumerate() {
            path.push(OsStr::from_bytes(c));
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    let what = if meta.file_type().is_symlink() {
                        "a symbolic link"
                    } else {
                        "not a directory"
                    };
                    return Err(WalkError::Unsafe(format!(
                        "parent {:?} is {what}",
                        String::from_utf8_lossy(&join(&dirs[..=i]))
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    fs::create_dir(&path).map_err(|e| WalkError::Io(path.clone(), e))?;
                }
                Err(e) => return Err(WalkError::Io(path, e)),
            }
        }
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_into_clean_components() {
        assert_eq!(components(b"./a//b/./c/").unwrap(), [&b"a"[..], b"b", b"c"]);
        assert!(components(b"./").unwrap().is_empty());
        assert_eq!(components(b"/etc/passwd"), Err("absolute name"));
        assert_eq!(components(b"a/../../b"), Err("`..` component"));
        assert_eq!(components(b".."), Err("`..` component"));
    }
}
