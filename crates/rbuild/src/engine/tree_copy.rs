//! Copies of a source tree for `RUN --mount`: a bind of the context must not show files that
//! `.dockerignore` hides, and a cache seeded `from=` a stage starts as a copy of it. The source
//! is read with the one walker (inside its root, symlinks copied as symlinks) and the copy
//! written inside its own directory.

use crate::dockerignore::IgnoreMatcher;
use rbuild_fs::{Kind, Root, SetMeta, Visit};
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
    let fail = std::io::Error::other::<String>;
    let fs_fail = std::io::Error::other::<rbuild_fs::FsError>;
    let (src_parent, src_name) = split(src)?;
    let dest_parent = dest
        .parent()
        .ok_or_else(|| fail(format!("{}: no parent", dest.display())))?;
    let dest_name = dest
        .file_name()
        .ok_or_else(|| fail(format!("{}: no name", dest.display())))?;
    let from = Root::open(src_parent).map_err(fs_fail)?;
    let to = Root::open(dest_parent).map_err(fs_fail)?;
    let ignore = ignore.filter(|i| !i.is_empty());
    let mut dirs = Vec::new();
    rbuild_fs::walk(&from, Path::new(src_name), false, &mut |entry| {
        let target = if entry.rel.as_os_str().is_empty() {
            Path::new(dest_name).to_path_buf()
        } else {
            Path::new(dest_name).join(entry.rel)
        };
        if !entry.rel.as_os_str().is_empty() {
            if let Some(ignore) = ignore {
                let inner = entry.rel.to_string_lossy();
                let child_rel = if rel == "." || rel.is_empty() {
                    inner.into_owned()
                } else {
                    format!("{rel}/{inner}")
                };
                if ignore.is_ignored(&child_rel)
                    && !(entry.meta.is_dir() && ignore.may_reinclude_below(&child_rel))
                {
                    return Ok(Visit::SkipChildren);
                }
            }
        }
        let mode = entry.meta.permissions();
        match entry.meta.kind {
            Kind::Symlink => to.symlink(&target, entry.read_link()?)?,
            Kind::Dir => {
                match to.create_dir(&target, 0o700) {
                    Err(e)
                        if entry.rel.as_os_str().is_empty()
                            && to.symlink_metadata(&target).is_ok_and(|m| m.is_dir()) =>
                    {
                        tracing::debug!(error = %e, "copying into an existing directory");
                    }
                    other => other?,
                }
                // Modes last, deepest first: a read-only directory must still take children.
                dirs.push((target.clone(), mode));
            }
            Kind::File => {
                let mut input = entry.open_file()?;
                let mut output = to.create_file(&target, 0o600)?;
                std::io::copy(&mut input, &mut output).map_err(|source| {
                    rbuild_fs::FsError::Io {
                        op: "copy",
                        path: target.clone(),
                        source,
                    }
                })?;
                to.set_meta(
                    &target,
                    SetMeta {
                        mode: Some(mode),
                        ..SetMeta::default()
                    },
                )?;
            }
            // Devices, fifos and sockets carry no content a build step could read.
            Kind::Special => return Ok(Visit::Continue),
        }
        if keep_owner {
            let owner = Some((entry.meta.uid, entry.meta.gid));
            to.set_meta(
                &target,
                SetMeta {
                    owner,
                    ..SetMeta::default()
                },
            )?;
        }
        Ok::<_, rbuild_fs::FsError>(Visit::Continue)
    })
    .map_err(fs_fail)?;
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (dir, mode) in dirs {
        to.set_meta(
            &dir,
            SetMeta {
                mode: Some(mode),
                ..SetMeta::default()
            },
        )
        .map_err(fs_fail)?;
    }
    Ok(())
}

/// A host path as its directory and name (`/` has none: refused).
fn split(path: &Path) -> std::io::Result<(&Path, &std::ffi::OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(std::io::Error::other(format!(
            "{}: cannot copy a root directory by name",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
