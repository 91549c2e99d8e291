//! Export to a docker-archive tarball, the format `docker load` and
//! `skopeo … docker-archive:FILE` read.
//!
//! The archive holds `manifest.json` (`[{"Config", "RepoTags", "Layers"}]`) and `repositories`
//! as classic `docker save` wrote them, with the blobs stored the way Docker ≥ 25 saves them
//! (`blobs/sha256/<hex>`, plus `oci-layout` and `index.json`), so both the legacy loader and
//! OCI-aware tools read it. Layers are stored as they are in the store (compressed or not):
//! `docker load` and containers/image decompress them by sniffing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use rbuild_oci::{Descriptor, Digest, Index, Reference, ANNOTATION_REF_NAME};
use serde::Serialize;

use crate::{Store, StoreError};

/// One entry of `manifest.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

impl Store {
    /// Writes the named images (each resolved for the host platform) as a docker-archive to
    /// `out`, and returns `out`. A name that parses as an image reference becomes a RepoTag in
    /// its familiar form (`docker.io/library/alpine:3.20` → `alpine:3.20`); several names of
    /// the same image share one entry.
    pub fn export_docker_archive<W: Write>(&self, names: &[&str], out: W) -> Result<W, StoreError> {
        let mut images: Vec<(Descriptor, Vec<Reference>)> = Vec::new();
        for name in names {
            let descriptor = self.resolve(name)?;
            let reference = Reference::parse(name).ok().filter(|r| r.tag().is_some());
            match images
                .iter_mut()
                .find(|(d, _)| d.digest == descriptor.digest)
            {
                Some((_, references)) => references.extend(reference),
                None => images.push((descriptor, reference.into_iter().collect())),
            }
        }
        self.export_docker_archive_images(&images, out)
    }

    /// Writes images given by descriptor (a manifest, or an index resolved for the host
    /// platform) as a docker-archive to `out`, each tagged with its references (those with a
    /// tag become RepoTags); returns `out`. Nothing is looked up by name, so concurrent
    /// builds sharing a store cannot swap each other's images.
    pub fn export_docker_archive_images<W: Write>(
        &self,
        images: &[(Descriptor, Vec<Reference>)],
        out: W,
    ) -> Result<W, StoreError> {
        let mut entries: Vec<(Descriptor, ArchiveManifest, Vec<Reference>)> = Vec::new();
        let mut blobs: Vec<(Digest, u64)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (top, references) in images {
            let name = references
                .first()
                .map(Reference::to_string)
                .unwrap_or_else(|| top.digest.to_string());
            let (descriptor, manifest, _config) =
                self.image_at(top.clone(), &rbuild_oci::Platform::host(), &name)?;
            let references: Vec<Reference> = references
                .iter()
                .filter(|r| r.tag().is_some())
                .cloned()
                .collect();
            if let Some(entry) = entries.iter_mut().find(|e| e.0.digest == descriptor.digest) {
                entry
                    .1
                    .repo_tags
                    .extend(references.iter().map(Reference::familiar));
                entry.2.extend(references);
                continue;
            }
            for d in std::iter::once(&descriptor)
                .chain(std::iter::once(&manifest.config))
                .chain(&manifest.layers)
            {
                // The descriptor's size, not the file's: a blob damaged on disk then fails
                // the export instead of slipping into the archive.
                if seen.insert(d.digest.clone()) {
                    blobs.push((d.digest.clone(), d.size));
                }
            }
            let entry = ArchiveManifest {
                config: blob_name(&manifest.config.digest),
                repo_tags: references.iter().map(Reference::familiar).collect(),
                layers: manifest
                    .layers
                    .iter()
                    .map(|l| blob_name(&l.digest))
                    .collect(),
            };
            let mut descriptor = descriptor;
            descriptor.annotations.clear();
            entries.push((descriptor, entry, references));
        }

        let mut tar = tar::Builder::new(out);
        let archive_path = std::path::PathBuf::from("docker-archive");
        let io_err = |e: std::io::Error| StoreError::io("write", &archive_path)(e);
        append_dir(&mut tar, "blobs/").map_err(io_err)?;
        append_dir(&mut tar, "blobs/sha256/").map_err(io_err)?;
        for (digest, size) in &blobs {
            let on_disk = self.blob_size(digest)?;
            if on_disk != *size {
                return Err(StoreError::Corrupt {
                    path: self.blob_path(digest),
                    reason: format!("{on_disk} bytes on disk, the manifest says {size}"),
                });
            }
            let file = self.open_blob(digest)?;
            append_file(&mut tar, &blob_name(digest), *size, file).map_err(io_err)?;
        }
        append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io_err)?;

        let mut index = Index::default();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (descriptor, entry, references) in &entries {
            for r in references {
                let mut d = descriptor.clone();
                d.annotations
                    .insert("io.containerd.image.name".into(), r.to_string());
                if let Some(tag) = r.tag() {
                    d.annotations.insert(ANNOTATION_REF_NAME.into(), tag.into());
                    let top = entry
                        .layers
                        .last()
                        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
                        .unwrap_or_default();
                    let familiar = r.familiar();
                    let repo = familiar
                        .rsplit_once(':')
                        .map_or(familiar.as_str(), |(n, _)| n);
                    repositories
                        .entry(repo.to_string())
                        .or_default()
                        .insert(tag.to_string(), top);
                }
                index.manifests.push(d);
            }
            if references.is_empty() {
                index.manifests.push(descriptor.clone());
            }
        }
        append_bytes(&mut tar, "index.json", &index.to_canonical_json()).map_err(io_err)?;
        let manifests: Vec<&ArchiveManifest> = entries.iter().map(|e| &e.1).collect();
        let manifest_json = serde_json::to_vec(&manifests).expect("manifest.json serializes");
        append_bytes(&mut tar, "manifest.json", &manifest_json).map_err(io_err)?;
        let repositories_json = serde_json::to_vec(&repositories).expect("repositories serializes");
        append_bytes(&mut tar, "repositories", &repositories_json).map_err(io_err)?;
        let out = tar.into_inner().map_err(io_err)?;
        tracing::debug!(
            images = entries.len(),
            blobs = blobs.len(),
            "wrote docker-archive"
        );
        Ok(out)
    }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.encoded())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, path, std::io::empty())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    content: impl Read,
) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, size);
    let exact = ExactSize {
        inner: content.take(size),
        left: size,
        path,
    };
    tar.append_data(&mut h, path, exact)
}

/// Yields exactly the size written in the tar header, or fails: a blob that shrank under us
/// must give an error, not an archive whose entries are misaligned.
struct ExactSize<'a, R> {
    inner: R,
    left: u64,
    path: &'a str,
}

impl<R: Read> Read for ExactSize<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} ended {} bytes early", self.path, self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    append_file(tar, path, bytes.len() as u64, bytes)
}
