//! ADD of a local archive: a tar, plain or compressed with gzip, bzip2, xz or zstd, is extracted into the
//! destination directory (BuildKit's auto-extraction). The archive's owners are kept unless
//! `--chown` is given.

use super::staging::{EntryMeta, Staging};
use super::CopyRequest;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether ADD extracts the local file at `path`: BuildKit decides by content, not by name
/// (moby/buildkit `solver/llbsolver/file/unpack.go`, `isArchivePath`): a regular file whose
/// content, once decompressed if it starts with a gzip, bzip2, xz or zstd magic
/// (`util/archiveutil` `DecompressStream`), begins with a valid tar header. Anything else — a
/// gzip stream of text, a text file named `fake.tar.gz`, an empty file — is copied as is.
pub fn is_archive(path: &Path) -> bool {
    let Ok(reader) = decompressed(path) else {
        return false;
    };
    let mut archive = tar::Archive::new(reader);
    // Only the first header is read (at most two 512-byte blocks of decompressed data).
    matches!(archive.entries().map(|mut e| e.next()), Ok(Some(Ok(_))))
}

/// The content of `path`, decompressed when it starts with a gzip, bzip2, xz or zstd magic.
fn decompressed(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut head = [0u8; 6];
    let mut file = fs::File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    let file = std::io::BufReader::new(fs::File::open(path)?);
    Ok(if head.starts_with(b"BZh") {
        Box::new(bzip2::read::BzDecoder::new(file))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new(file))
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(file)?)
    } else {
        Box::new(file)
    })
}

/// Extracts the archive at `path` into `dest` in the staging tree.
pub fn add_archive(
    path: &Path,
    dest: &str,
    request: &CopyRequest<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let shown = path.display().to_string();
    let reader = decompressed(path).map_err(|e| format!("{shown}: {e}"))?;
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
    copy_extracted(scratch.path(), Path::new(dest), request, staging)
}

/// Stages what was extracted into `dir` (a directory of our own) under `target`, names as
/// bytes (not UTF-8 ones included), every listing error reported.
fn copy_extracted(
    dir: &Path,
    target: &Path,
    request: &CopyRequest<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let listing = |e: std::io::Error| format!("ADD failed: listing the extracted archive: {e}");
    let mut names = fs::read_dir(dir)
        .map_err(listing)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(listing)?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let child = target.join(&name);
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
            super::copy_layer_xattrs(&path, &staging.path_of(&child));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_archive;
    use std::io::Write;

    fn tar_bytes() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "f.txt", &b"abc"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn archives_are_recognised_by_content_not_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, data: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, data).unwrap();
            is_archive(&path)
        };
        let tar = tar_bytes();
        assert!(check("plain.bin", &tar));
        assert!(check("x.tar.gz", &gzip(&tar)));
        assert!(check("noext", &zstd::encode_all(&tar[..], 1).unwrap()));
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).unwrap();
        assert!(check("x.tbz", &bz.finish().unwrap()));
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar).unwrap();
        assert!(check("x.txz", &xz.finish().unwrap()));

        // Not tar once decompressed, or not decompressible: copied as is.
        assert!(!check("notatar.gz", &gzip(b"just text\n")));
        assert!(!check("fake.tar.gz", b"I am not an archive\n"));
        assert!(!check("broken.gz", &[0x1f, 0x8b, 0x08, 0, 1, 2, 3]));
        assert!(!check("empty.tar", b""));
        // An end-of-archive marker alone holds no header: Go's tar.Reader.Next gives io.EOF.
        assert!(!check("zeros.tar", &[0u8; 1024]));
        // A header block whose checksum is wrong is not a tar header.
        let mut bad = tar.clone();
        bad[148] ^= 0x01;
        assert!(!check("badsum.tar", &bad));
    }
}
