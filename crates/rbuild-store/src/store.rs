//! Opening a layout and reading blobs.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use rbuild_oci::{Descriptor, Digest, MediaType};

use crate::fs_sync::write_atomically;
use crate::lock::IndexLock;
use crate::{BlobWriter, StoreError};

/// Content of the `oci-layout` file this store writes.
const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The lock file serialising `index.json` updates and gc (not part of the OCI layout).
pub(crate) const LOCK_FILE: &str = ".rbuild-lock";
/// Where blob writers keep their temp files (same filesystem as `blobs/`, so rename is atomic).
pub(crate) const INGEST_DIR: &str = ".rbuild-ingest";

/// A local content store: an OCI image layout directory (`oci-layout`, `index.json`,
/// `blobs/<alg>/<hex>`). Cheap to clone; several `Store`s, threads and processes may share one
/// directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the layout at `dir`, creating it (and `dir`) if absent. A directory that is neither
    /// a layout nor empty is refused.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let root = dir.as_ref().to_path_buf();
        match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => {
                return Err(StoreError::NotALayout {
                    path: root,
                    reason: "it exists and is not a directory".into(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&root).map_err(StoreError::io("create directory", &root))?;
            }
            Err(e) => return Err(StoreError::io("stat", &root)(e)),
        }
        let store = Store { root };
        if !store.root.join("oci-layout").exists() || !store.index_path().exists() {
            let _lock = store.lock()?;
            store.initialise()?;
        } else {
            store.check_layout_file()?;
        }
        for dir in [
            store.root.join("blobs").join("sha256"),
            store.root.join(INGEST_DIR),
        ] {
            fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        }
        Ok(store)
    }

    /// Creates `oci-layout` and `index.json` if missing. Called under the lock, so two processes
    /// opening the same new directory agree.
    fn initialise(&self) -> Result<(), StoreError> {
        let layout = self.root.join("oci-layout");
        if layout.exists() {
            self.check_layout_file()?;
        } else {
            let ours = [
                LOCK_FILE,
                INGEST_DIR,
                crate::cache::CACHE_DIR,
                crate::lease::LEASE_DIR,
                "blobs",
            ];
            let entries = fs::read_dir(&self.root).map_err(StoreError::io("list", &self.root))?;
            for entry in entries {
                let entry = entry.map_err(StoreError::io("list", &self.root))?;
                let name = entry.file_name();
                if !ours.iter().any(|o| name == *o) {
                    return Err(StoreError::NotALayout {
                        path: self.root.clone(),
                        reason: format!(
                            "it has no oci-layout file and is not empty (found {:?})",
                            name.to_string_lossy()
                        ),
                    });
                }
            }
            write_atomically(&layout, OCI_LAYOUT_CONTENT)?;
            tracing::debug!(path = %self.root.display(), "created OCI image layout");
        }
        if !self.index_path().exists() {
            let empty = rbuild_oci::Index::default();
            write_atomically(&self.index_path(), &empty.to_canonical_json())?;
        }
        Ok(())
    }

    fn check_layout_file(&self) -> Result<(), StoreError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct OciLayout {
            image_layout_version: String,
        }
        let path = self.root.join("oci-layout");
        let bytes = fs::read(&path).map_err(StoreError::io("read", &path))?;
        let layout: OciLayout =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::NotALayout {
                path: self.root.clone(),
                reason: format!("oci-layout does not decode: {e}"),
            })?;
        if !layout.image_layout_version.starts_with("1.") {
            return Err(StoreError::NotALayout {
                path: self.root.clone(),
                reason: format!(
                    "unsupported imageLayoutVersion {:?}",
                    layout.image_layout_version
                ),
            });
        }
        Ok(())
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join(INGEST_DIR)
    }

    pub(crate) fn lock(&self) -> Result<IndexLock, StoreError> {
        IndexLock::acquire(&self.root.join(LOCK_FILE))
    }

    /// Where the blob lives (or would live): `blobs/<algorithm>/<encoded>`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.encoded())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The blob's size in bytes.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(StoreError::io("stat", path)(e)),
        }
    }

    /// Opens the blob for streaming. The content is not re-verified (it was when written).
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io("open", path)(e),
        })
    }

    /// Reads a small blob (manifest, config) whole and checks its digest, so a blob damaged on
    /// disk is reported rather than used.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        let path = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(StoreError::io("read", &path))?;
        if digest.is_sha256() {
            let actual = Digest::sha256_of(&bytes);
            if &actual != digest {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("content hashes to {actual}"),
                });
            }
        }
        Ok(bytes)
    }

    /// Starts writing a blob; see [`BlobWriter`].
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(self)
    }

    /// Stores `bytes` and returns their descriptor.
    pub fn put_blob(&self, bytes: &[u8], media_type: MediaType) -> Result<Descriptor, StoreError> {
        let mut w = self.blob_writer()?;
        std::io::Write::write_all(&mut w, bytes)
            .map_err(StoreError::io("write", self.ingest_dir()))?;
        let (digest, size) = w.commit(None, Some(bytes.len() as u64))?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    /// Streams `reader` into the store, verifying the expected digest and size if given (for
    /// example a layer being pulled).
    pub fn write_blob(
        &self,
        reader: &mut impl Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(d) = expected {
            if !d.is_sha256() {
                return Err(StoreError::UnsupportedDigest(d.clone()));
            }
        }
        let mut w = self.blob_writer()?;
        std::io::copy(reader, &mut w)
            .map_err(StoreError::io("copy a blob into", self.ingest_dir()))?;
        w.commit(expected, expected_size)
    }
}
