//! ADD of a local archive: a tar, plain or compressed with gzip, bzip2, xz or zstd, is extracted into the
//! destination directory (BuildKit's auto-extraction). The archive's owners are kept unless
//! `--chown` is given.

use super::staging::{EntryMeta, Staging};
use super::CopyRequest;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether `path` starts like a tar archive (compressed or not) that ADD extracts.
pub fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    let head = &head[..n];
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || (n >= 262 && &head[257..262] == b"ustar")
}

/// Extracts the archive at `path` into `dest` in the staging tree.
pub fn add_archive(
    path: &Path,
    dest: &str,
    request: &CopyRequest<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let shown = path.display().to_string();
    let mut head = [0u8; 6];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| format!("{shown}: {e}"))?;
    let file = fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    // apply_layer recognises gzip, zstd and plain tar itself; bzip2 and xz are decoded here.
    let reader: Box<dyn Read> = if head[..n].starts_with(b"BZh") {
        Box::new(bzip2::read::BzDecoder::new(std::io::BufReader::new(file)))
    } else if head[..n].starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let scratch = tempfile::Builder::new()
        .prefix("add-archive-")
        .tempdir_in(staging.root().parent().unwrap_or(staging.root()))
        .map_err(|e| e.to_string())?;
    rbuild_layer::apply_layer(
        reader,
        scratch.path(),
        &rbuild_layer::ApplyOptions {
            expected_diff_id: None,
            set_owners: true,
        },
    )
    .map_err(|e| format!("ADD failed: extracting {shown}: {e}"))?;
    staging.ensure_dir(dest).map_err(|e| e.to_string())?;
    copy_extracted(scratch.path(), dest, request, staging)
}

fn copy_extracted(
    dir: &Path,
    target: &str,
    request: &CopyRequest<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let child = format!(
            "{}/{}",
            target.trim_end_matches('/'),
            name.to_string_lossy()
        );
        let meta = fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
        let (uid, gid) = request.chown.unwrap_or((meta.uid(), meta.gid()));
        let mtime = (meta.mtime(), meta.mtime_nsec() as u32);
        let is_dir = meta.is_dir();
        let mode = request
            .chmod
            .as_ref()
            .map_or(meta.mode() & 0o7777, |c| c.apply(meta.mode(), is_dir));
        let entry = EntryMeta {
            mode,
            uid,
            gid,
            mtime,
        };
        if is_dir {
            staging.ensure_dir(&child).map_err(|e| e.to_string())?;
            staging
                .set_dir_meta(&child, entry)
                .map_err(|e| e.to_string())?;
            copy_extracted(&path, &child, request, staging)?;
        } else if meta.file_type().is_symlink() {
            let link = fs::read_link(&path).map_err(|e| e.to_string())?;
            staging
                .put_symlink(&child, &link, entry)
                .map_err(|e| e.to_string())?;
        } else if meta.is_file() {
            let mut f = fs::File::open(&path).map_err(|e| e.to_string())?;
            staging
                .put_file(&child, &mut f, entry)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
