//! Where pushed blobs come from and pulled blobs go: small traits, so the client works with
//! any store (rbuild-store, an OCI layout, memory), as go-containerregistry's sources and sinks.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbuild_oci::{Digest, Sha256Hasher};

/// A readable set of blobs, for pushing.
pub trait BlobSource: Send + Sync {
    /// Opens blob `digest` positioned at byte `offset` (to resume or chunk an upload).
    fn open_blob(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>>;
}

/// A writable set of blobs, for pulling.
pub trait BlobSink: Send + Sync {
    /// Whether the blob is already present (then it is not downloaded).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Starts writing a new blob. Dropping the writer without committing discards it.
    fn begin_blob(&self) -> io::Result<Box<dyn BlobWrite>>;
}

/// A blob being written.
pub trait BlobWrite: Write + Send {
    /// Checks the content against `expected` and `size`, then makes it visible. On a mismatch
    /// nothing is stored.
    fn commit(self: Box<Self>, expected: &Digest, size: u64) -> io::Result<()>;
}

fn mismatch(expected: &Digest, size: u64, actual: &Digest, actual_size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("content is {actual} ({actual_size} bytes), expected {expected} ({size} bytes)"),
    )
}

/// Blobs held in memory: for tests, small images, and manifests assembled on the fly.
#[derive(Debug, Clone, Default)]
pub struct MemoryBlobs {
    blobs: Arc<Mutex<HashMap<Digest, Arc<Vec<u8>>>>>,
}

impl MemoryBlobs {
    /// An empty set.
    pub fn new() -> MemoryBlobs {
        MemoryBlobs::default()
    }

    /// Adds `data` and returns its digest.
    pub fn insert(&self, data: Vec<u8>) -> Digest {
        let digest = Digest::sha256_of(&data);
        self.lock().insert(digest.clone(), Arc::new(data));
        digest
    }

    /// The content of a blob, if present.
    pub fn get(&self, digest: &Digest) -> Option<Arc<Vec<u8>>> {
        self.lock().get(digest).cloned()
    }

    /// How many blobs are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no blob is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Vec<u8>>>> {
        // A panic while holding the lock cannot leave the map half-updated (single insert).
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlobSource for MemoryBlobs {
    fn open_blob(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let data = self.get(digest).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("blob {digest} not found"))
        })?;
        let mut cursor = io::Cursor::new(ArcBytes(data));
        cursor.set_position(offset);
        Ok(Box::new(cursor))
    }
}

struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl BlobSink for MemoryBlobs {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.lock().contains_key(digest)
    }

    fn begin_blob(&self) -> io::Result<Box<dyn BlobWrite>> {
        Ok(Box::new(MemoryBlobWriter {
            target: self.clone(),
            data: Vec::new(),
        }))
    }
}

struct MemoryBlobWriter {
    target: MemoryBlobs,
    data: Vec<u8>,
}

impl Write for MemoryBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWrite for MemoryBlobWriter {
    fn commit(self: Box<Self>, expected: &Digest, size: u64) -> io::Result<()> {
        let actual = Digest::sha256_of(&self.data);
        if &actual != expected || self.data.len() as u64 != size {
            return Err(mismatch(expected, size, &actual, self.data.len() as u64));
        }
        self.target.lock().insert(actual, Arc::new(self.data));
        Ok(())
    }
}

/// Blobs as files `ROOT/blobs/<algorithm>/<encoded>`, the OCI image-layout blob directory.
/// Writes go to a temporary file in `ROOT/.tmp` and are renamed into place after
/// verification.
#[derive(Debug, Clone)]
pub struct DirBlobs {
    root: PathBuf,
}

impl DirBlobs {
    /// Uses (and creates on first write) `root/blobs`.
    pub fn new(root: impl Into<PathBuf>) -> DirBlobs {
        DirBlobs { root: root.into() }
    }

    /// The path of a blob, present or not.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.encoded())
    }

    /// Writes `data` as a blob and returns its digest.
    pub fn insert(&self, data: &[u8]) -> io::Result<Digest> {
        let digest = Digest::sha256_of(data);
        let mut writer = self.begin_blob()?;
        writer.write_all(data)?;
        writer.commit(&digest, data.len() as u64)?;
        Ok(digest)
    }
}

impl BlobSource for DirBlobs {
    fn open_blob(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        use std::io::Seek;
        let mut file = std::fs::File::open(self.blob_path(digest))?;
        file.seek(io::SeekFrom::Start(offset))?;
        Ok(Box::new(file))
    }
}

impl BlobSink for DirBlobs {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn begin_blob(&self) -> io::Result<Box<dyn BlobWrite>> {
        // Outside `blobs/`, so the directory stays a clean OCI layout for other tools.
        let dir = self.root.join(".tmp");
        std::fs::create_dir_all(&dir)?;
        let file = tempfile::NamedTempFile::new_in(&dir)?;
        Ok(Box::new(DirBlobWriter {
            target: self.clone(),
            file: io::BufWriter::with_capacity(256 << 10, file),
            hasher: Sha256Hasher::new(),
        }))
    }
}

struct DirBlobWriter {
    target: DirBlobs,
    file: io::BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256Hasher,
}

impl Write for DirBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWrite for DirBlobWriter {
    fn commit(self: Box<Self>, expected: &Digest, size: u64) -> io::Result<()> {
        let DirBlobWriter {
            target,
            file,
            hasher,
        } = *self;
        let (actual, actual_size) = hasher.finish();
        if &actual != expected || actual_size != size {
            return Err(mismatch(expected, size, &actual, actual_size));
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        let path = target.blob_path(expected);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_blobs_verify_before_storing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = DirBlobs::new(dir.path());
        let digest = blobs.insert(b"hello").unwrap();
        assert!(blobs.has_blob(&digest));
        let mut text = String::new();
        blobs
            .open_blob(&digest, 1)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "ello");

        let mut writer = blobs.begin_blob().unwrap();
        writer.write_all(b"tampered").unwrap();
        let err = writer.commit(&digest, 5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let tmp_left: Vec<_> = std::fs::read_dir(dir.path().join(".tmp"))
            .unwrap()
            .collect();
        assert!(tmp_left.is_empty(), "a refused blob leaves nothing behind");
    }

    #[test]
    fn memory_blobs_refuse_mismatch() {
        let blobs = MemoryBlobs::new();
        let digest = Digest::sha256_of(b"abc");
        let mut writer = blobs.begin_blob().unwrap();
        writer.write_all(b"abd").unwrap();
        assert!(writer.commit(&digest, 3).is_err());
        assert!(!blobs.has_blob(&digest));
    }
}
