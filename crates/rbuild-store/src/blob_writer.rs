//! Writing one blob: temp file, hash while writing, verify, fsync, rename.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use rbuild_oci::{Digest, DigestWriter};
use tempfile::NamedTempFile;

use crate::fs_sync::{set_readable, sync_dir};
use crate::{Store, StoreError};

/// A [`Write`] into a temp file inside the store that becomes a blob only on a successful
/// [`BlobWriter::commit`]. Dropping it, or a failed commit, removes the temp file: nothing
/// half-written ever appears under `blobs/`.
pub struct BlobWriter {
    out: DigestWriter<BufWriter<NamedTempFile>>,
    blobs_dir: PathBuf,
}

impl BlobWriter {
    pub(crate) fn new(store: &Store) -> Result<BlobWriter, StoreError> {
        let dir = store.ingest_dir();
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(StoreError::io("create a temp file in", &dir))?;
        Ok(BlobWriter {
            out: DigestWriter::new(BufWriter::with_capacity(256 * 1024, tmp)),
            blobs_dir: store.root().join("blobs"),
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.out.bytes_written()
    }

    /// Finishes the blob: checks it against `expected` digest and `expected_size` when given,
    /// fsyncs it, renames it to `blobs/sha256/<hex>` and fsyncs that directory. If the blob is
    /// already present (another writer won), the existing verified blob is kept and this copy
    /// discarded. Returns the digest and size.
    pub fn commit(
        self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(d) = expected {
            if !d.is_sha256() {
                return Err(StoreError::UnsupportedDigest(d.clone()));
            }
        }
        let mut out = self.out;
        let tmp_path = out.get_ref().get_ref().path().to_path_buf();
        out.flush().map_err(StoreError::io("write", &tmp_path))?;
        let (buffered, digest, size) = out.finish();
        let tmp = buffered
            .into_inner()
            .map_err(|e| StoreError::io("write", &tmp_path)(e.into_error()))?;
        if let Some(expected) = expected {
            if expected != &digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        if let Some(expected) = expected_size {
            if expected != size {
                return Err(StoreError::SizeMismatch {
                    digest,
                    expected,
                    actual: size,
                });
            }
        }
        let dir = self.blobs_dir.join(digest.algorithm());
        let target = dir.join(digest.encoded());
        if fs::metadata(&target).is_ok_and(|m| m.is_file() && m.len() == size) {
            // Same name means same content (it was verified when it landed); keep it, but mark
            // it fresh so a concurrent gc's grace period protects it until the caller
            // references it. A blob of the wrong size (damaged on disk) is replaced below.
            touch(&target).map_err(StoreError::io("touch", &target))?;
            tracing::trace!(%digest, "blob already present");
            return Ok((digest, size));
        }
        tmp.as_file()
            .sync_all()
            .map_err(StoreError::io("fsync", tmp.path()))?;
        set_readable(tmp.as_file(), tmp.path())?;
        fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        tmp.persist(&target)
            .map_err(|e| StoreError::io("rename into", &target)(e.error))?;
        sync_dir(&dir)?;
        tracing::debug!(%digest, size, "blob committed");
        Ok((digest, size))
    }
}

fn touch(path: &std::path::Path) -> io::Result<()> {
    File::options()
        .append(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
