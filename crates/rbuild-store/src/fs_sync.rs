//! Durability helpers: write a small file atomically and fsync directories.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::StoreError;

/// Flushes a directory's entries (a rename inside it) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}

/// Replaces `path` with `bytes` atomically: temp file in the same directory, fsync, rename,
/// fsync the directory. Readers see the old or the new content, never a mix.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(StoreError::io("create a temp file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(StoreError::io("write", tmp.path()))?;
    set_readable(tmp.as_file(), tmp.path())?;
    tmp.persist(path)
        .map_err(|e| StoreError::io("rename into", path)(e.error))?;
    sync_dir(dir)
}

/// Makes a file mode 0644: tempfile creates 0600, but layout files must be readable by the
/// tools and users that share the store.
pub(crate) fn set_readable(file: &File, path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(StoreError::io("chmod", path))
}
