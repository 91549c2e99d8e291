//! Directories a step did not change but that show up as changed: the parents of mount
//! points the sandbox created and removed again (`/run` for `/run/secrets/x`, `/etc` for a
//! missing `/etc/resolv.conf`, the parent of a cache target). The sandbox restores their
//! times; such a directory, equal in mode, owner and mtime to what it was and with no change
//! below it, is no change at all (BuildKit's overlay differ skips it too). Over an overlay the
//! copied-up directory is compared with the lower one; in chroot mode the before and after
//! scans are compared without the ctime, which a removed entry always bumps.

use rbuild_layer::{Change, ChangeSet, FileMeta, TreeScan};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `changes` (read from the overlay upper dir `upper` over the tree `lower`) without the
/// directories that equal the lower's and have no change below them; `owners` are the upper
/// entries' owners where they differ from the files' own.
pub(crate) fn drop_unchanged_overlay_dirs(
    changes: &ChangeSet,
    upper: &Path,
    lower: &Path,
    owners: &rbuild_layer::OwnerMap,
) -> Result<ChangeSet, rbuild_layer::LayerError> {
    drop_unchanged_dirs(changes, |path| {
        same_dir(
            &upper.join(path),
            owners.get(path).copied(),
            &lower.join(path),
        )
    })
}

/// `changes` (the diff of the scans `before` and `after`) without the directories whose only
/// difference is their ctime and that have no change below them.
pub(crate) fn drop_unchanged_scanned_dirs(
    changes: &ChangeSet,
    before: &TreeScan,
    after: &TreeScan,
) -> Result<ChangeSet, rbuild_layer::LayerError> {
    drop_unchanged_dirs(changes, |path| match (before.get(path), after.get(path)) {
        (Some(a), Some(b)) => a.is_dir() && b.is_dir() && same_but_ctime(a, b),
        _ => false,
    })
}

fn same_but_ctime(a: &FileMeta, b: &FileMeta) -> bool {
    (a.mode, a.uid, a.gid, a.mtime_ns, &a.xattrs) == (b.mode, b.uid, b.gid, b.mtime_ns, &b.xattrs)
}

fn drop_unchanged_dirs(
    changes: &ChangeSet,
    unchanged_dir: impl Fn(&Path) -> bool,
) -> Result<ChangeSet, rbuild_layer::LayerError> {
    let entries: Vec<(&PathBuf, &Change)> = changes.iter().collect();
    let mut has_kept_child: BTreeSet<PathBuf> = BTreeSet::new();
    let mut kept: Vec<(&PathBuf, Change)> = Vec::new();
    // Children come after their parents: walk backwards so a parent knows its children.
    for (path, change) in entries.into_iter().rev() {
        let keep =
            *change != Change::Upsert || has_kept_child.contains(path) || !unchanged_dir(path);
        if keep {
            kept.push((path, *change));
            let mut parent = path.parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                if !has_kept_child.insert(p.to_path_buf()) {
                    break;
                }
                parent = p.parent();
            }
        } else {
            tracing::debug!(path = %path.display(), "unchanged directory left out of the layer");
        }
    }
    let mut out = ChangeSet::new();
    for (path, change) in kept {
        out.insert(path, change)?;
    }
    Ok(out)
}

/// Both are directories (not symlinks) with the same mode, owner and modification time.
fn same_dir(a: &Path, a_owner: Option<(u32, u32)>, b: &Path) -> bool {
    match (std::fs::symlink_metadata(a), std::fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => {
            a.is_dir()
                && b.is_dir()
                && a.mode() == b.mode()
                && a_owner.unwrap_or((a.uid(), a.gid())) == (b.uid(), b.gid())
                && (a.mtime(), a.mtime_nsec()) == (b.mtime(), b.mtime_nsec())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filetime::{set_file_mtime, FileTime};

    #[test]
    fn only_untouched_empty_copies_are_dropped() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        let t = FileTime::from_unix_time(1_000_000, 0);
        for d in ["run", "etc", "var/lib", "tmp"] {
            for root in [lower.path(), upper.path()] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
        }
        std::fs::write(upper.path().join("etc/new"), "x").unwrap();
        for root in [lower.path(), upper.path()] {
            for d in ["run", "etc", "var/lib", "var", "tmp"] {
                set_file_mtime(root.join(d), t).unwrap();
            }
        }
        // The step touched /tmp (a file made and removed): its mtime differs.
        set_file_mtime(
            upper.path().join("tmp"),
            FileTime::from_unix_time(2_000_000, 0),
        )
        .unwrap();
        let mut changes = ChangeSet::new();
        for (p, c) in [
            ("run", Change::Upsert),
            ("etc", Change::Upsert),
            ("etc/new", Change::Upsert),
            ("var", Change::Upsert),
            ("var/lib", Change::Upsert),
            ("tmp", Change::Upsert),
        ] {
            changes.insert(p, c).unwrap();
        }
        let out =
            drop_unchanged_overlay_dirs(&changes, upper.path(), lower.path(), &Default::default())
                .unwrap();
        let paths: Vec<_> = out
            .iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(paths, vec!["etc", "etc/new", "tmp"]);
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;
    use filetime::{set_file_mtime, FileTime};

    #[test]
    fn a_directory_that_only_got_a_new_ctime_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        std::fs::create_dir_all(root.path().join("tmp")).unwrap();
        let t = FileTime::from_unix_time(1_000_000, 0);
        set_file_mtime(root.path().join("run"), t).unwrap();
        set_file_mtime(root.path().join("tmp"), t).unwrap();
        let before = TreeScan::scan(root.path()).unwrap();
        // A mount point made and removed, the times put back: only the ctime moved.
        std::fs::create_dir(root.path().join("run/secrets")).unwrap();
        std::fs::remove_dir(root.path().join("run/secrets")).unwrap();
        set_file_mtime(root.path().join("run"), t).unwrap();
        std::fs::write(root.path().join("tmp/new"), "x").unwrap();
        let after = TreeScan::scan(root.path()).unwrap();
        let changes = rbuild_layer::diff(&before, &after);
        assert!(changes.get("run").is_some(), "the raw diff sees the ctime");
        let out = drop_unchanged_scanned_dirs(&changes, &before, &after).unwrap();
        let paths: Vec<_> = out
            .iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(paths, vec!["tmp", "tmp/new"]);
    }
}
