//! Moving a finished RUN step's overlayfs upper dir into the directory that was its one lower
//! dir, so that the lower dir becomes what the step's overlay showed (its merged view), without
//! writing the step's files a second time from its layer.
//!
//! Entries are moved with `renameat` (a new directory with all below it in one call), deleted
//! paths (overlayfs whiteouts) are removed, directories present on both sides are merged and
//! then given the upper copy's mode, owner, extended attributes and times. Nothing of
//! overlayfs' own bookkeeping stays behind: no whiteout device, no `*.overlay.*` attribute
//! (the directory becomes the next step's lower dir, where overlayfs would read them).
//!
//! Every path is resolved inside its directory by [`rbuild_fs::Root`] (no symlink followed out
//! of it); both trees are the RUN step's and hostile, but nothing runs in them any more.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rbuild_fs::{FileMeta, Kind, Root, SetMeta};

use crate::error::LayerError;
use crate::xattrs::{self, is_overlay_xattr};

/// What [`merge_overlay_upper`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MergeReport {
    /// Entries moved from the upper dir (a directory counts once, with all below it).
    pub moved: u64,
    /// Paths deleted in the lower dir (whiteouts and entries replaced by an opaque directory).
    pub removed: u64,
    /// Directories present on both sides, merged.
    pub merged_dirs: u64,
}

/// Moves the overlayfs upper dir `upper` into `lower`, the one lower dir it was mounted over,
/// leaving `lower` as the overlay's merged view and `upper` with directories only (to be
/// removed by the caller). What it deletes from `lower` is moved into `trash` (an existing
/// directory), also for the caller to remove, when it likes: unlinking thousands of files
/// costs far more than moving them (blocks freed, the journal written) and need not hold up
/// the next step. All three must be on one file system.
///
/// On an error `lower` is half merged: the caller must not use it any more (rbuild makes the
/// stage's filesystem again from its layers).
pub fn merge_overlay_upper(
    upper: &Path,
    lower: &Path,
    trash: &Path,
) -> Result<MergeReport, LayerError> {
    let merge = Merge {
        upper: Root::open(upper).map_err(merge_error)?,
        lower: Root::open(lower).map_err(merge_error)?,
        trash: Root::open(trash).map_err(merge_error)?,
        discarded: std::cell::Cell::new(0),
        upper_path: upper.to_path_buf(),
        lower_path: lower.to_path_buf(),
    };
    let mut report = MergeReport::default();
    merge.dir(Path::new(""), &mut report)?;
    let top = merge.upper.symlink_metadata("").map_err(merge_error)?;
    merge.copy_dir_meta(Path::new(""), &top)?;
    Ok(report)
}

fn merge_error(source: rbuild_fs::FsError) -> LayerError {
    LayerError::Merge { source }
}

struct Merge {
    upper: Root,
    lower: Root,
    trash: Root,
    /// How many entries went to the trash (their names there).
    discarded: std::cell::Cell<u64>,
    upper_path: PathBuf,
    lower_path: PathBuf,
}

impl Merge {
    /// Merges the upper directory `rel` into the lower one (both exist and are directories).
    fn dir(&self, rel: &Path, report: &mut MergeReport) -> Result<(), LayerError> {
        for name in self.upper.read_dir(rel).map_err(merge_error)? {
            let child = rel.join(&name);
            let meta = self.upper.symlink_metadata(&child).map_err(merge_error)?;
            let upper_full = self.upper_path.join(&child);
            if is_whiteout(&upper_full, &meta)? {
                self.discard(&child)?;
                report.removed += 1;
                continue;
            }
            if meta.kind == Kind::Dir && !overlay_flag(&upper_full, "opaque", b"y")? {
                let below = match self.lower.symlink_metadata(&child) {
                    Ok(m) => Some(m),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(merge_error(e)),
                };
                if below.is_some_and(|m| m.kind == Kind::Dir) {
                    self.dir(&child, report)?;
                    self.copy_dir_meta(&child, &meta)?;
                    report.merged_dirs += 1;
                    continue;
                }
            }
            // A new entry, or one replacing what was there (an opaque directory hides all
            // of the lower one's content).
            self.discard(&child)?;
            self.upper
                .rename_to(&child, &self.lower, &child)
                .map_err(merge_error)?;
            report.moved += 1;
            self.settle(&child, &meta)?;
        }
        Ok(())
    }

    /// Cleans the lower dir's `rel`, just moved there (or below what was): a directory of
    /// the markers in everything below it, its times put back (moving and cleaning touch
    /// them); a file of overlayfs' attributes.
    fn settle(&self, rel: &Path, meta: &FileMeta) -> Result<(), LayerError> {
        match meta.kind {
            Kind::Dir => {
                self.clean_moved_dir(rel)?;
                self.set_times(rel, meta)
            }
            Kind::File => self.strip_overlay_xattrs(rel),
            Kind::Symlink | Kind::Special => Ok(()),
        }
    }

    /// Moves the lower dir's `rel`, if there is one, into the trash.
    fn discard(&self, rel: &Path) -> Result<(), LayerError> {
        let n = self.discarded.get();
        match self.lower.rename_to(rel, &self.trash, n.to_string()) {
            Ok(()) => {
                self.discarded.set(n + 1);
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(merge_error(e)),
        }
    }

    /// Removes overlayfs' markers from the directory `rel`, just moved into the lower dir, and
    /// from everything below it.
    fn clean_moved_dir(&self, rel: &Path) -> Result<(), LayerError> {
        self.strip_overlay_xattrs(rel)?;
        for name in self.lower.read_dir(rel).map_err(merge_error)? {
            let child = rel.join(&name);
            let meta = self.lower.symlink_metadata(&child).map_err(merge_error)?;
            if is_whiteout(&self.lower_path.join(&child), &meta)? {
                self.lower.remove(&child).map_err(merge_error)?;
                continue;
            }
            self.settle(&child, &meta)?;
        }
        Ok(())
    }

    /// Removes overlayfs' attributes from the lower dir's regular file or directory `rel`.
    fn strip_overlay_xattrs(&self, rel: &Path) -> Result<(), LayerError> {
        let full = self.lower_path.join(rel);
        let names = match xattr::list(&full) {
            Ok(names) => names,
            Err(e) if xattrs::unsupported(&e) => return Ok(()),
            Err(e) => return Err(LayerError::io("listing attributes of", &full, e)),
        };
        for name in names.filter(|n| is_overlay_xattr(n.as_encoded_bytes())) {
            xattr::remove(&full, &name)
                .or_else(|e| {
                    if xattrs::unsupported(&e) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| LayerError::io("removing an overlayfs attribute of", &full, e))?;
        }
        Ok(())
    }

    /// Gives the lower dir's directory `rel` the mode, owner, attributes and times of its upper
    /// copy `upper` (its children are merged: times last).
    fn copy_dir_meta(&self, rel: &Path, upper: &FileMeta) -> Result<(), LayerError> {
        let lower = self.lower.symlink_metadata(rel).map_err(merge_error)?;
        let upper_full = self.upper_path.join(rel);
        let lower_full = self.lower_path.join(rel);
        let kept = |path: &Path| -> Result<Vec<(OsString, Vec<u8>)>, LayerError> {
            Ok(xattrs::read_all(path)
                .map_err(|e| LayerError::io("reading attributes of", path, e))?
                .into_iter()
                .filter(|(n, _)| !is_overlay_xattr(n.as_encoded_bytes()))
                .collect())
        };
        let (want, have) = (kept(&upper_full)?, kept(&lower_full)?);
        if want != have {
            for (name, _) in have
                .iter()
                .filter(|(n, _)| !want.iter().any(|(w, _)| w == n))
            {
                xattr::remove(&lower_full, name)
                    .map_err(|e| LayerError::io("removing an attribute of", &lower_full, e))?;
            }
            let failed = self.lower.set_xattrs(rel, &want).map_err(merge_error)?;
            if let Some((name, e)) = failed.into_iter().next() {
                return Err(LayerError::io(
                    "setting an attribute of",
                    lower_full.join(name),
                    e,
                ));
            }
        }
        self.strip_overlay_xattrs(rel)?;
        let owner = (upper.uid, upper.gid);
        let set = SetMeta {
            // A builder that is not root cannot give a directory away; neither can a layer's
            // apply, so the two stay alike.
            owner: (owner != (lower.uid, lower.gid)).then_some(owner),
            mode: Some(upper.permissions()),
            mtime: Some((upper.mtime, upper.mtime_nsec)),
        };
        match self.lower.set_meta(rel, set) {
            Err(rbuild_fs::FsError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                self.lower
                    .set_meta(rel, SetMeta { owner: None, ..set })
                    .map_err(merge_error)
            }
            other => other.map_err(merge_error),
        }?;
        Ok(())
    }

    /// Gives the lower dir's `rel` the times in `meta`.
    fn set_times(&self, rel: &Path, meta: &FileMeta) -> Result<(), LayerError> {
        let set = SetMeta {
            mtime: Some((meta.mtime, meta.mtime_nsec)),
            ..SetMeta::default()
        };
        self.lower.set_meta(rel, set).map_err(merge_error)
    }
}

/// Whether an entry is an overlayfs whiteout: a character device 0/0, or a regular file with
/// the `overlay.whiteout` attribute (as [`crate::changes_from_overlay_upper`] reads them).
fn is_whiteout(full: &Path, meta: &FileMeta) -> Result<bool, LayerError> {
    use rustix::fs::FileType;
    let kind = FileType::from_raw_mode(meta.mode as _);
    Ok(match kind {
        FileType::CharacterDevice => meta.rdev == 0,
        FileType::RegularFile => crate::overlay::overlay_xattr(full, "whiteout")?.is_some(),
        _ => false,
    })
}

/// Whether overlayfs' attribute `name` of `full` is `value`.
fn overlay_flag(full: &Path, name: &str, value: &[u8]) -> Result<bool, LayerError> {
    Ok(crate::overlay::overlay_xattr(full, name)?.as_deref() == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    /// A whiteout as overlayfs writes it without privilege over xattrs (an "xwhiteout"
    /// file) or, for root, as the kernel does (a 0/0 character device).
    fn whiteout(path: &Path) {
        if rustix::process::geteuid().is_root() {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .unwrap();
        } else {
            fs::write(path, "").unwrap();
            xattr::set(path, "user.overlay.whiteout", b"y").unwrap();
        }
    }

    fn trash(t: &tempfile::TempDir) -> PathBuf {
        let trash = t.path().join("trash");
        fs::create_dir_all(&trash).unwrap();
        trash
    }

    fn xattrs_of(path: &Path) -> Vec<String> {
        xattr::list(path)
            .unwrap()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn upper_moves_in_and_overlay_markers_do_not() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        for d in [
            "lower/keep",
            "lower/merged/old",
            "lower/hidden/deep",
            "upper/merged",
        ] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        fs::write(lower.join("keep/file"), "unchanged").unwrap();
        fs::write(lower.join("merged/gone"), "deleted by the step").unwrap();
        fs::write(lower.join("merged/old/x"), "below an opaque dir").unwrap();
        fs::write(lower.join("hidden/deep/y"), "replaced by a file").unwrap();
        fs::write(lower.join("changed"), "before").unwrap();

        // The step: a new tree, a deleted file, an opaque dir, a dir replaced by a file, a
        // changed file, a new hard link pair, a directory's mode changed.
        fs::create_dir_all(upper.join("new/sub")).unwrap();
        fs::write(upper.join("new/sub/a"), "new").unwrap();
        fs::hard_link(upper.join("new/sub/a"), upper.join("new/b")).unwrap();
        xattr::set(upper.join("new/sub/a"), "user.overlay.origin", b"\0").unwrap();
        xattr::set(upper.join("new"), "user.overlay.impure", b"y").unwrap();
        xattr::set(upper.join("new/sub/a"), "user.kept", b"v").unwrap();
        whiteout(&upper.join("merged/gone"));
        fs::create_dir(upper.join("merged/old")).unwrap();
        xattr::set(upper.join("merged/old"), "user.overlay.opaque", b"y").unwrap();
        fs::write(upper.join("merged/old/z"), "only this").unwrap();
        fs::write(upper.join("hidden"), "a file now").unwrap();
        fs::write(upper.join("changed"), "after").unwrap();
        fs::set_permissions(upper.join("merged"), fs::Permissions::from_mode(0o750)).unwrap();
        xattr::set(upper.join("merged"), "user.overlay.impure", b"y").unwrap();

        let report = merge_overlay_upper(&upper, &lower, &trash(&t)).unwrap();
        assert_eq!(report.removed, 1, "{report:?}");

        assert_eq!(
            fs::read_to_string(lower.join("keep/file")).unwrap(),
            "unchanged"
        );
        assert!(
            !lower.join("merged/gone").exists(),
            "whiteout applied, not moved"
        );
        assert!(fs::symlink_metadata(lower.join("merged/gone")).is_err());
        assert!(
            !lower.join("merged/old/x").exists(),
            "opaque dir hides the old one"
        );
        assert_eq!(
            fs::read_to_string(lower.join("merged/old/z")).unwrap(),
            "only this"
        );
        assert_eq!(
            fs::read_to_string(lower.join("hidden")).unwrap(),
            "a file now"
        );
        assert_eq!(fs::read_to_string(lower.join("changed")).unwrap(), "after");
        let (a, b) = (
            fs::metadata(lower.join("new/sub/a")).unwrap(),
            fs::metadata(lower.join("new/b")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hard links stay linked");
        assert_eq!(
            fs::metadata(lower.join("merged")).unwrap().mode() & 0o7777,
            0o750
        );
        for p in ["new", "new/sub/a", "merged", "merged/old"] {
            let names = xattrs_of(&lower.join(p));
            assert!(
                names.iter().all(|n| !n.contains("overlay.")),
                "{p} keeps {names:?}"
            );
        }
        assert_eq!(xattrs_of(&lower.join("new/sub/a")), ["user.kept"]);
        // What is left in the upper dir is directories only.
        for e in fs::read_dir(&upper).unwrap() {
            assert!(e.unwrap().file_type().unwrap().is_dir());
        }
    }

    #[test]
    fn symlinks_planted_in_either_tree_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower, outside) = (
            t.path().join("upper"),
            t.path().join("lower"),
            t.path().join("outside"),
        );
        for d in [&upper, &lower, &outside] {
            fs::create_dir(d).unwrap();
        }
        fs::write(outside.join("precious"), "host file").unwrap();
        // An earlier step left symlinks out of the tree; this step replaced one by a
        // directory, deleted the other and wrote a file under a third's name.
        symlink(&outside, lower.join("etc")).unwrap();
        symlink(&outside, lower.join("var")).unwrap();
        symlink(outside.join("precious"), lower.join("f")).unwrap();
        fs::create_dir(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/precious"), "written inside").unwrap();
        whiteout(&upper.join("var"));
        fs::write(upper.join("f"), "replaces the link").unwrap();
        // And a symlink of its own pointing out, with a whiteout "below" it in the upper dir
        // (nothing of the kind can be followed through).
        symlink(&outside, upper.join("link")).unwrap();

        merge_overlay_upper(&upper, &lower, &trash(&t)).unwrap();

        assert_eq!(
            fs::read_to_string(outside.join("precious")).unwrap(),
            "host file"
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        assert!(fs::symlink_metadata(lower.join("etc")).unwrap().is_dir());
        assert_eq!(
            fs::read_to_string(lower.join("etc/precious")).unwrap(),
            "written inside"
        );
        assert!(fs::symlink_metadata(lower.join("var")).is_err());
        assert!(fs::symlink_metadata(lower.join("f")).unwrap().is_file());
        assert!(fs::symlink_metadata(lower.join("link"))
            .unwrap()
            .is_symlink());
    }

    #[test]
    fn a_new_directory_keeps_its_times_and_loses_whiteouts_inside() {
        let t = tempfile::tempdir().unwrap();
        let (upper, lower) = (t.path().join("upper"), t.path().join("lower"));
        fs::create_dir_all(upper.join("d")).unwrap();
        fs::create_dir(&lower).unwrap();
        fs::write(upper.join("d/f"), "x").unwrap();
        // A stray whiteout inside a new directory (nothing below it to hide).
        whiteout(&upper.join("d/w"));
        let when = rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 5,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            upper.join("d").as_path(),
            &rustix::fs::Timestamps {
                last_access: when,
                last_modification: when,
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        merge_overlay_upper(&upper, &lower, &trash(&t)).unwrap();
        let meta = fs::metadata(lower.join("d")).unwrap();
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_000_000_000, 5));
        assert!(fs::symlink_metadata(lower.join("d/w")).is_err());
        assert!(lower.join("d/f").is_file());
    }
}
