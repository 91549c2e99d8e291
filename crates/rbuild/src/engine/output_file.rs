//! Output files of a build (`--digest-file`, `--tar-path`): written to a temporary file beside
//! the target and renamed over it, so a reader never sees half a file; but written in place
//! when the target is not a regular file (a FIFO, a character device such as `/dev/stdout`) or
//! cannot be replaced (a file bind-mounted into a container, as Kubernetes mounts
//! `/dev/termination-log`: the rename fails with "Device or resource busy").

use crate::BuildError;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// Writes `path` with `write`, atomically where the target allows it (see the module).
pub(crate) fn write_output(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), String>,
) -> Result<(), BuildError> {
    let out = |reason: String| BuildError::Output {
        path: path.to_path_buf(),
        reason,
    };
    let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file());
    if special {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| out(e.to_string()))?;
        return write(&mut file).map_err(out);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| out(e.to_string()))?;
    let mut file = temp.as_file().try_clone().map_err(|e| out(e.to_string()))?;
    write(&mut file).map_err(out)?;
    match temp.persist(path) {
        Ok(_) => Ok(()),
        // A bind-mounted file (EBUSY) or one on another mount than its directory (EXDEV):
        // the content is copied into it instead.
        Err(e) if cannot_replace(&e.error) => {
            let mut source = e.file;
            source
                .as_file_mut()
                .seek(SeekFrom::Start(0))
                .map_err(|e| out(e.to_string()))?;
            let mut target = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|e| out(e.to_string()))?;
            std::io::copy(source.as_file_mut(), &mut target).map_err(|e| out(e.to_string()))?;
            target.sync_all().map_err(|e| out(e.to_string()))?;
            tracing::debug!(path = %path.display(), "output written in place (cannot be replaced)");
            Ok(())
        }
        Err(e) => Err(out(e.error.to_string())),
    }
}

/// Whether a rename failed because the target cannot be replaced (EBUSY: a mount point;
/// EXDEV: the target sits on another mount than its directory).
fn cannot_replace(error: &std::io::Error) -> bool {
    let code = error.raw_os_error();
    code == Some(rustix::io::Errno::BUSY.raw_os_error())
        || code == Some(rustix::io::Errno::XDEV.raw_os_error())
}
