//! Finding changes from an overlayfs upper directory: everything in it was added or changed,
//! except overlayfs' markers, which are translated into layer markers:
//!
//! - a character device 0/0 (or, on kernels with "xwhiteouts", a file carrying the
//!   `overlay.whiteout` xattr) is a deleted path → whiteout `.wh.<name>`;
//! - a directory whose `overlay.opaque` xattr is `y` hides the lower layers → `.wh..wh..opq`;
//! - overlayfs' own xattrs (`trusted.overlay.*`, or `user.overlay.*` on a mount with
//!   `userxattr`) are not written into the layer (see [`crate::LayerWriter`]).
//!
//! Not supported: upper directories written with `redirect_dir=on` (a renamed directory points
//! at its lower copy) or `metacopy=on` (the content stays in the lower layer). Both are off by
//! default and refused here with [`LayerError::Unsupported`] when their xattrs are met, rather
//! than producing a wrong layer. Mount the overlay without them (rbuild-sandbox does).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::changes::{Change, ChangeSet};
use crate::error::LayerError;
use crate::xattrs;

const NAMESPACES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// The changes recorded in the overlayfs upper directory `upper`.
pub fn changes_from_overlay_upper(upper: &Path) -> Result<ChangeSet, LayerError> {
    let mut changes = ChangeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let read = fs::read_dir(&dir).map_err(|e| LayerError::io("listing", &dir, e))?;
        for entry in read {
            let entry = entry.map_err(|e| LayerError::io("listing", &dir, e))?;
            let child = rel.join(entry.file_name());
            let full = upper.join(&child);
            let meta =
                fs::symlink_metadata(&full).map_err(|e| LayerError::io("inspecting", &full, e))?;
            refuse_unsupported(&full)?;
            let file_type = meta.file_type();
            let change = if file_type.is_char_device() && meta.rdev() == 0 {
                Change::Delete
            } else if file_type.is_dir() {
                stack.push(child.clone());
                if overlay_xattr_is(&full, "opaque", b"y")? {
                    Change::OpaqueDir
                } else {
                    Change::Upsert
                }
            } else if file_type.is_file() && overlay_xattr(&full, "whiteout")?.is_some() {
                Change::Delete
            } else {
                Change::Upsert
            };
            changes.insert(&child, change)?;
        }
    }
    Ok(changes)
}

fn refuse_unsupported(full: &Path) -> Result<(), LayerError> {
    for (name, what) in [
        (
            "redirect",
            "has an overlayfs redirect (redirect_dir=on is not supported)",
        ),
        (
            "metacopy",
            "is an overlayfs metacopy (metacopy=on is not supported)",
        ),
    ] {
        if overlay_xattr(full, name)?.is_some() {
            return Err(LayerError::Unsupported {
                path: full.to_owned(),
                what: what.to_owned(),
            });
        }
    }
    Ok(())
}

fn overlay_xattr_is(full: &Path, name: &str, value: &[u8]) -> Result<bool, LayerError> {
    Ok(overlay_xattr(full, name)?.as_deref() == Some(value))
}

/// The value of overlayfs' xattr `name` in either namespace.
pub(crate) fn overlay_xattr(full: &Path, name: &str) -> Result<Option<Vec<u8>>, LayerError> {
    for namespace in NAMESPACES {
        let key = format!("{namespace}{name}");
        match xattrs::get(full, &key) {
            Ok(Some(value)) => return Ok(Some(value)),
            Ok(None) => {}
            // Reading trusted.* needs CAP_SYS_ADMIN; without it, such attributes are invisible
            // (and an overlay mounted without it uses user.overlay.* anyway).
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(LayerError::io("reading xattrs of", full, e)),
        }
    }
    Ok(None)
}
