//! Copies of a source tree for `RUN --mount`: a bind of the context must not show files that
//! `.dockerignore` hides, and a cache seeded `from=` a stage starts as a copy of it.

use crate::dockerignore::IgnoreMatcher;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Copies `src` (a file, symlink or directory whose path relative to the source root is `rel`)
/// to `dest`, leaving out what `ignore` hides (re-included paths below an ignored directory
/// are kept); `keep_owner` also copies owners.
pub(super) fn copy_tree(
    src: &Path,
    rel: &str,
    dest: &Path,
    ignore: Option<&IgnoreMatcher>,
    keep_owner: bool,
) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dest)?;
    } else if ft.is_dir() {
        if !dest.exists() {
            fs::create_dir(dest)?;
        }
        let mut names: Vec<_> = fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let name_str = name.to_string_lossy();
            let child_rel = if rel == "." || rel.is_empty() {
                name_str.into_owned()
            } else {
                format!("{rel}/{name_str}")
            };
            let child = src.join(&name);
            if let Some(ignore) = ignore.filter(|i| !i.is_empty()) {
                if ignore.is_ignored(&child_rel) {
                    let is_dir = fs::symlink_metadata(&child).is_ok_and(|m| m.is_dir());
                    if !(is_dir && ignore.may_reinclude_below(&child_rel)) {
                        continue;
                    }
                }
            }
            copy_tree(&child, &child_rel, &dest.join(&name), ignore, keep_owner)?;
        }
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if ft.is_file() {
        fs::copy(src, dest)?;
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else {
        // Devices, fifos and sockets carry no content a build step could read.
        return Ok(());
    }
    if keep_owner {
        std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_files_are_left_out_and_modes_kept() {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("d/logs")).unwrap();
        fs::write(src.path().join("d/a.sh"), "a").unwrap();
        fs::set_permissions(src.path().join("d/a.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(src.path().join("d/logs/x.log"), "1").unwrap();
        fs::write(src.path().join("d/logs/keep.log"), "2").unwrap();
        std::os::unix::fs::symlink("a.sh", src.path().join("d/link")).unwrap();
        let ignore = IgnoreMatcher::parse("d/logs\n!d/logs/keep.log\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("copy");
        copy_tree(src.path(), ".", &dest, Some(&ignore), false).unwrap();
        assert_eq!(fs::read(dest.join("d/a.sh")).unwrap(), b"a");
        let mode = fs::metadata(dest.join("d/a.sh")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750);
        assert!(!dest.join("d/logs/x.log").exists());
        assert!(dest.join("d/logs/keep.log").exists());
        assert_eq!(
            fs::read_link(dest.join("d/link")).unwrap(),
            Path::new("a.sh")
        );
    }
}
