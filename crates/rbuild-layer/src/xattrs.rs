//! Reading a file's extended attributes (never following symbolic links) and telling overlayfs'
//! own attributes apart from the ones a layer keeps.

use std::ffi::OsString;
use std::io;
use std::path::Path;

/// Extended attributes of one file: (name, value), sorted by name.
pub type Xattrs = Vec<(OsString, Vec<u8>)>;

/// Whether `name` is overlayfs' private bookkeeping (`trusted.overlay.*`, or `user.overlay.*`
/// on a mount with `userxattr`), which never goes into a layer.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// All extended attributes of `path` (itself, not a symlink's target), sorted by name. A file
/// system without xattr support gives none.
pub(crate) fn read_all(path: &Path) -> io::Result<Xattrs> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push((name, value)),
            // Removed between list and get: it is simply not there any more.
            Ok(None) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// The one extended attribute a layer keeps, as BuildKit's layers do: containerd's
/// `archive/tar.go` `(*ChangeWriter).HandleChange` records `security.capability` alone
/// (`user.*`, `trusted.*` and other `security.*` attributes, and overlayfs' own, never reach
/// a layer).
pub const LAYER_XATTR: &str = "security.capability";

/// The attributes of `path` that a layer keeps: [`LAYER_XATTR`], when set.
pub(crate) fn read_kept(path: &Path) -> io::Result<Xattrs> {
    Ok(get(path, LAYER_XATTR)?
        .map(|value| vec![(OsString::from(LAYER_XATTR), value)])
        .unwrap_or_default())
}

/// The value of one attribute of `path` (not following symlinks), if set.
pub(crate) fn get(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match xattr::get(path, name) {
        Err(e) if unsupported(&e) => Ok(None),
        other => other,
    }
}

pub(crate) fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOTSUP.raw_os_error()
            || code == rustix::io::Errno::NODATA.raw_os_error()
    )
}
