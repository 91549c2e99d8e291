//! Applying a layer onto a directory: extraction with whiteouts and opaque directories,
//! hardlinks, symlinks, xattrs, modes, owners where permitted and mtimes (directories last),
//! refusing any entry that would touch something outside the target (see [`crate::safe_path`]).
//!
//! The compression (gzip, zstd or none) is detected from the first bytes. The diffID of the
//! uncompressed stream is computed on the way and checked when an expected one is given. When
//! an error is returned, the target holds part of the layer and must be discarded.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rbuild_oci::{Compression, Digest, MediaType, Sha256Hasher};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

use crate::error::LayerError;
use crate::meta_limit::MetaLimit;
use crate::safe_path::{self, Target, WalkError};
use crate::tar_stream::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::xattrs::is_overlay_xattr;

/// How to apply a layer.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// When set, the uncompressed layer must hash to this diffID, or the apply fails (after the
    /// whole stream was read).
    pub expected_diff_id: Option<Digest>,
    /// Whether to set entries' owners (`lchown`). Failures for lack of privilege are counted in
    /// [`ApplyReport::owners_not_set`], not errors.
    pub set_owners: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            expected_diff_id: None,
            set_owners: true,
        }
    }
}

/// What an apply did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyReport {
    /// The compression detected.
    pub compression: Compression,
    /// The diffID of the uncompressed layer.
    pub diff_id: Digest,
    /// The size of the uncompressed layer.
    pub uncompressed_size: u64,
    /// Entries created or updated (whiteouts and opaque markers not counted).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes that could not be created (no privilege), relative to the target.
    pub skipped_devices: Vec<PathBuf>,
    /// Entries whose owner could not be set (no privilege, or an id unmapped here).
    pub owners_not_set: u64,
    /// Extended attributes that could not be set (no privilege or no support).
    pub xattrs_not_set: u64,
}

/// A layer of an image as its manifest and config describe it: what [`apply_image_layer`]
/// checks the bytes against.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayer<'a> {
    /// The blob's digest (the manifest's layer descriptor), named in errors.
    pub digest: &'a Digest,
    /// The blob's media type in the manifest.
    pub media_type: &'a MediaType,
    /// The config's `rootfs.diff_ids` entry for this layer.
    pub diff_id: &'a Digest,
}

/// How a layer of this media type is compressed, for the layer types this crate unpacks: OCI
/// `tar`, `tar+gzip`, `tar+zstd` (and their non-distributable forms), Docker
/// `rootfs.diff.tar.gzip`, `rootfs.foreign.diff.tar.gzip` and `rootfs.diff.tar`. `None` for
/// anything else (another compression, an encrypted layer, not a layer at all).
pub fn layer_compression(media_type: &MediaType) -> Option<Compression> {
    match media_type {
        MediaType::OciLayer => Some(Compression::None),
        MediaType::OciLayerGzip
        | MediaType::DockerLayerGzip
        | MediaType::DockerForeignLayerGzip => Some(Compression::Gzip),
        MediaType::OciLayerZstd => Some(Compression::Zstd),
        MediaType::Other(s) => match s.as_str() {
            "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        },
        _ => None,
    }
}

/// Applies an image's layer onto `target`, checking the bytes against what the image says of
/// them: the media type must be a layer type ([`layer_compression`]) and match the first bytes
/// (gzip magic `1f 8b`, zstd magic `28 b5 2f fd`, a plain tar otherwise), checked before any
/// entry is extracted; the uncompressed stream's sha256, computed in the same pass as the
/// extraction, must be `layer.diff_id`. On error, `target` holds part of a layer that is not
/// what the image claims and must be discarded.
pub fn apply_image_layer(
    blob: impl Read,
    target: &Path,
    layer: &ImageLayer<'_>,
    set_owners: bool,
) -> Result<ApplyReport, LayerError> {
    let expected = expected_compression(layer.digest, layer.media_type)?;
    let options = ApplyOptions {
        expected_diff_id: Some(layer.diff_id.clone()),
        set_owners,
    };
    let check = |found| check_compression(layer.digest, layer.media_type, expected, found);
    apply(blob, target, &options, check).map_err(|e| match e {
        LayerError::DiffIdMismatch {
            layer: None,
            expected,
            actual,
        } => LayerError::DiffIdMismatch {
            layer: Some(layer.digest.clone()),
            expected,
            actual,
        },
        other => other,
    })
}

/// Checks an image's layer without unpacking it: its media type must be a layer type
/// ([`layer_compression`]) and its first bytes (read from `blob`, at most 4) must be of that
/// compression. What can be checked of a base layer that is passed on without being unpacked;
/// its diffID can only be checked by [`apply_image_layer`]. Returns the compression.
pub fn check_layer_media_type(
    mut blob: impl Read,
    digest: &Digest,
    media_type: &MediaType,
) -> Result<Compression, LayerError> {
    let expected = expected_compression(digest, media_type)?;
    let (magic, got) = read_magic(&mut blob)?;
    check_compression(digest, media_type, expected, compression_of(&magic[..got]))?;
    Ok(expected)
}

fn expected_compression(
    digest: &Digest,
    media_type: &MediaType,
) -> Result<Compression, LayerError> {
    layer_compression(media_type).ok_or_else(|| LayerError::UnsupportedMediaType {
        layer: digest.clone(),
        media_type: media_type.as_str().to_owned(),
    })
}

fn check_compression(
    digest: &Digest,
    media_type: &MediaType,
    expected: Compression,
    found: Compression,
) -> Result<(), LayerError> {
    if found == expected {
        return Ok(());
    }
    Err(LayerError::MediaTypeMismatch {
        layer: digest.clone(),
        media_type: media_type.as_str().to_owned(),
        found,
    })
}

/// Applies the layer read from `layer` onto the directory `target`.
pub fn apply_layer(
    layer: impl Read,
    target: &Path,
    options: &ApplyOptions,
) -> Result<ApplyReport, LayerError> {
    apply(layer, target, options, |_| Ok(()))
}

/// [`apply_layer`], with `check_compression` called on the detected compression before any
/// entry is extracted.
fn apply(
    layer: impl Read,
    target: &Path,
    options: &ApplyOptions,
    check_compression: impl FnOnce(Compression) -> Result<(), LayerError>,
) -> Result<ApplyReport, LayerError> {
    let meta = fs::metadata(target).map_err(|e| LayerError::io("opening target", target, e))?;
    if !meta.is_dir() {
        return Err(LayerError::io(
            "opening target",
            target,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let (compression, stream) = decompressed(layer)?;
    check_compression(compression)?;
    let mut archive = tar::Archive::new(MetaLimit::new(HashingReader {
        inner: stream,
        hasher: Sha256Hasher::new(),
    }));
    let mut applier = Applier {
        target: Target::new(target),
        set_owners: options.set_owners,
        written: HashSet::new(),
        deferred_dirs: Vec::new(),
        buf: vec![0; 128 * 1024],
        report: ApplyReport {
            compression,
            diff_id: Digest::sha256_of(b""),
            uncompressed_size: 0,
            entries: 0,
            whiteouts: 0,
            skipped_devices: Vec::new(),
            owners_not_set: 0,
            xattrs_not_set: 0,
        },
    };
    let entries = archive
        .entries()
        .map_err(|e| LayerError::malformed(b"entry #0", e.to_string()))?;
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| {
            LayerError::malformed(format!("entry #{index}").as_bytes(), e.to_string())
        })?;
        applier.apply_entry(&mut entry)?;
    }
    applier.finish_dirs()?;
    let mut rest = archive.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| LayerError::malformed(b"end of archive", e.to_string()))?;
    let (diff_id, size) = rest.hasher.finish();
    if let Some(expected) = &options.expected_diff_id {
        if *expected != diff_id {
            return Err(LayerError::DiffIdMismatch {
                layer: None,
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    let mut report = applier.report;
    report.diff_id = diff_id;
    report.uncompressed_size = size;
    Ok(report)
}

/// The first (up to) 4 bytes of a layer, and how many there were.
fn read_magic(layer: &mut impl Read) -> Result<([u8; 4], usize), LayerError> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match layer.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::malformed(b"start of layer", e.to_string())),
        }
    }
    Ok((magic, got))
}

/// The compression a layer's first bytes announce: gzip magic `1f 8b`, zstd magic
/// `28 b5 2f fd`, a plain tar otherwise.
fn compression_of(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The compression announced by the first bytes (gzip, zstd or none), and a reader of the
/// uncompressed stream.
pub fn decompressed<'a>(
    mut layer: impl Read + 'a,
) -> Result<(Compression, Box<dyn Read + 'a>), LayerError> {
    let (magic, got) = read_magic(&mut layer)?;
    let whole = io::Cursor::new(magic[..got].to_vec()).chain(layer);
    Ok(match compression_of(&magic[..got]) {
        Compression::Gzip => (
            Compression::Gzip,
            Box::new(flate2::read::MultiGzDecoder::new(whole)),
        ),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(whole)
                .map_err(|e| LayerError::malformed(b"start of layer", e.to_string()))?;
            (Compression::Zstd, Box::new(decoder))
        }
        Compression::None => (Compression::None, Box::new(whole)),
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Metadata of one entry, PAX overrides applied.
struct EntryMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier {
    target: Target,
    set_owners: bool,
    /// Paths (joined components) this layer created or updated; an opaque marker keeps them.
    written: HashSet<Vec<u8>>,
    /// Directories whose mode and mtime are set at the end (children change a dir's mtime, and
    /// a read-only mode would stop children from being created when not root).
    deferred_dirs: Vec<(PathBuf, u32, i64)>,
    buf: Vec<u8>,
    report: ApplyReport,
}

impl Applier {
    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let name = entry.path_bytes().into_owned();
        let comps = safe_path::components(&name)
            .map_err(|reason| LayerError::unsafe_entry(&name, reason))?;
        let Some((base, parents)) = comps.split_last() else {
            // The root itself ("./"): the target's own metadata is the caller's.
            return Ok(());
        };
        let entry_type = entry.header().entry_type();

        if *base == OPAQUE_MARKER {
            return self.opaque(&name, parents);
        }
        if base.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the tree.
            return Ok(());
        }
        if let Some(victim) = base.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&name, parents, victim);
        }

        let parent = self
            .walk(&name, parents, true)?
            .expect("created when missing");
        let full = parent.join(OsStr::from_bytes(base));
        let rel = safe_path::join(&comps);
        let meta = entry_meta(entry, &name)?;
        let shown = full.clone();

        use tar::EntryType as T;
        match entry_type {
            T::Directory => {
                self.clear_for(&full, true)?;
                if !exists(&full)? {
                    fs::create_dir(&full).map_err(|e| LayerError::io("creating", &full, e))?;
                }
                self.set_owner(&full, &meta);
                self.set_xattrs(&full, &meta);
                self.deferred_dirs.push((full, meta.mode, meta.mtime));
            }
            T::Regular | T::Continuous => {
                self.clear_for(&full, false)?;
                self.write_file(entry, &name, &full)?;
                // chown clears setuid bits and capabilities, so it goes first; xattrs go
                // before a possibly read-only mode (unprivileged setxattr needs write access).
                self.set_owner(&full, &meta);
                self.set_xattrs(&full, &meta);
                set_mode(&full, meta.mode)?;
                set_mtime(&full, meta.mtime)?;
            }
            T::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| LayerError::malformed(&name, "symbolic link without a target"))?
                    .into_owned();
                self.clear_for(&full, false)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &full)
                    .map_err(|e| LayerError::io("creating symlink", &full, e))?;
                self.set_owner(&full, &meta);
                self.set_xattrs(&full, &meta);
                set_mtime(&full, meta.mtime)?;
            }
            T::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| LayerError::malformed(&name, "hardlink without a target"))?
                    .into_owned();
                let source = self.hardlink_source(&name, &link, &rel)?;
                self.clear_for(&full, false)?;
                fs::hard_link(&source, &full).map_err(|e| LayerError::io("linking", &full, e))?;
            }
            T::Char | T::Block | T::Fifo => {
                self.clear_for(&full, false)?;
                if !self.make_node(entry, entry_type, &name, &full, &meta)? {
                    return Ok(());
                }
                // chown clears setuid bits and capabilities, so it goes first; xattrs go
                // before a possibly read-only mode (unprivileged setxattr needs write access).
                self.set_owner(&full, &meta);
                self.set_xattrs(&full, &meta);
                set_mode(&full, meta.mode)?;
                set_mtime(&full, meta.mtime)?;
            }
            T::XGlobalHeader => return Ok(()),
            other => {
                return Err(LayerError::malformed(
                    &name,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ))
            }
        }
        tracing::trace!(path = %shown.display(), "applied");
        self.written.insert(rel);
        self.report.entries += 1;
        Ok(())
    }

    fn walk(
        &self,
        name: &[u8],
        dirs: &[&[u8]],
        create: bool,
    ) -> Result<Option<PathBuf>, LayerError> {
        self.target.walk_dirs(dirs, create).map_err(|e| match e {
            WalkError::Unsafe(reason) => LayerError::unsafe_entry(name, reason),
            WalkError::Io(path, e) => LayerError::io("creating parent", path, e),
        })
    }

    /// `.wh..wh..opq` in `dir`: everything in `dir` that this layer did not write goes.
    fn opaque(&mut self, name: &[u8], dir: &[&[u8]]) -> Result<(), LayerError> {
        let full = self.walk(name, dir, true)?.expect("created when missing");
        let prefix = safe_path::join(dir);
        let read = fs::read_dir(&full).map_err(|e| LayerError::io("listing", &full, e))?;
        for child in read {
            let child = child.map_err(|e| LayerError::io("listing", &full, e))?;
            let child_name = child.file_name();
            let mut rel = prefix.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(child_name.as_bytes());
            if !self.written.contains(&rel) {
                remove_any(&child.path())?;
            }
        }
        self.report.whiteouts += 1;
        Ok(())
    }

    /// `.wh.<victim>` in `dir`: `dir/victim` goes, whatever it is.
    fn whiteout(&mut self, name: &[u8], dir: &[&[u8]], victim: &[u8]) -> Result<(), LayerError> {
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(LayerError::unsafe_entry(
                name,
                "whiteout of an empty, `.` or `..` name",
            ));
        }
        self.report.whiteouts += 1;
        let Some(parent) = self.walk(name, dir, false)? else {
            return Ok(()); // Nothing there to delete.
        };
        let full = parent.join(OsStr::from_bytes(victim));
        if exists(&full)? {
            remove_any(&full)?;
        }
        Ok(())
    }

    /// The existing file a hardlink entry links to: inside the target, reached without a
    /// symlinked parent, not a directory, and not the entry itself.
    fn hardlink_source(&self, name: &[u8], link: &[u8], rel: &[u8]) -> Result<PathBuf, LayerError> {
        let comps = safe_path::components(link).map_err(|reason| {
            LayerError::unsafe_entry(
                name,
                format!(
                    "hardlink target {:?}: {reason}",
                    String::from_utf8_lossy(link)
                ),
            )
        })?;
        let Some((base, parents)) = comps.split_last() else {
            return Err(LayerError::unsafe_entry(name, "hardlink to the root"));
        };
        if safe_path::join(&comps) == rel {
            return Err(LayerError::unsafe_entry(name, "hardlink to itself"));
        }
        let parent = self
            .target
            .walk_dirs(parents, false)
            .map_err(|e| match e {
                WalkError::Unsafe(reason) => {
                    LayerError::unsafe_entry(name, format!("hardlink target's {reason}"))
                }
                WalkError::Io(path, e) => LayerError::io("inspecting", path, e),
            })?
            .ok_or_else(|| LayerError::unsafe_entry(name, "hardlink target does not exist"))?;
        let source = parent.join(OsStr::from_bytes(base));
        match fs::symlink_metadata(&source) {
            Ok(meta) if meta.is_dir() => {
                Err(LayerError::unsafe_entry(name, "hardlink to a directory"))
            }
            Ok(_) => Ok(source),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LayerError::unsafe_entry(
                name,
                "hardlink target does not exist",
            )),
            Err(e) => Err(LayerError::io("inspecting", &source, e)),
        }
    }

    /// Makes room for an entry at `full`: an existing directory stays when the entry is one too;
    /// anything else there is removed (a symlink itself, never what it points to).
    fn clear_for(&self, full: &Path, entry_is_dir: bool) -> Result<(), LayerError> {
        match fs::symlink_metadata(full) {
            Ok(meta) if meta.is_dir() && entry_is_dir => Ok(()),
            Ok(_) => remove_any(full),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LayerError::io("inspecting", full, e)),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &[u8],
        full: &Path,
    ) -> Result<(), LayerError> {
        let size = entry.size();
        let mut file = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(full)
            .map_err(|e| LayerError::io("creating", full, e))?;
        let mut copied = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::malformed(name, e.to_string())),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| LayerError::io("writing", full, e))?;
            copied += n as u64;
        }
        if copied != size {
            return Err(LayerError::malformed(
                name,
                format!("truncated: {copied} of {size} bytes"),
            ));
        }
        Ok(())
    }

    /// Creates a device node or FIFO; `false` when a device was skipped for lack of privilege.
    fn make_node<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        entry_type: tar::EntryType,
        name: &[u8],
        full: &Path,
        meta: &EntryMeta,
    ) -> Result<bool, LayerError> {
        let file_type = match entry_type {
            tar::EntryType::Char => FileType::CharacterDevice,
            tar::EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        // FIFOs have no device number (GNU tar leaves the fields blank).
        let (major, minor) = if file_type == FileType::Fifo {
            (0, 0)
        } else {
            let header = entry.header();
            let bad = |e: io::Error| LayerError::malformed(name, e.to_string());
            (
                header.device_major().map_err(bad)?.unwrap_or(0),
                header.device_minor().map_err(bad)?.unwrap_or(0),
            )
        };
        let mode = Mode::from_raw_mode(meta.mode & 0o777);
        let dev = rustix::fs::makedev(major, minor);
        match rustix::fs::mknodat(CWD, full, file_type, mode, dev) {
            Ok(()) => Ok(true),
            Err(e)
                if file_type != FileType::Fifo
                    && (e == rustix::io::Errno::PERM || e == rustix::io::Errno::ACCESS) =>
            {
                let rel = PathBuf::from(OsStr::from_bytes(name));
                tracing::warn!(entry = %rel.display(), major, minor, "device node skipped: no privilege to create it");
                self.report.skipped_devices.push(rel);
                Ok(false)
            }
            Err(e) => Err(LayerError::io("creating node", full, e.into())),
        }
    }

    fn set_owner(&mut self, full: &Path, meta: &EntryMeta) {
        if !self.set_owners {
            return;
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(meta.uid), u32::try_from(meta.gid)) else {
            self.report.owners_not_set += 1;
            return;
        };
        if let Err(e) = std::os::unix::fs::lchown(full, Some(uid), Some(gid)) {
            tracing::debug!(path = %full.display(), uid, gid, error = %e, "owner not set");
            self.report.owners_not_set += 1;
        }
    }

    fn set_xattrs(&mut self, full: &Path, meta: &EntryMeta) {
        for (key, value) in &meta.xattrs {
            if is_overlay_xattr(key) {
                continue;
            }
            if let Err(e) = xattr::set(full, OsStr::from_bytes(key), value) {
                tracing::warn!(path = %full.display(), xattr = %String::from_utf8_lossy(key), error = %e, "xattr not set");
                self.report.xattrs_not_set += 1;
            }
        }
    }

    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        // Deepest last-created first, so that setting a child does not touch a finished parent.
        for (full, mode, mtime) in self.deferred_dirs.drain(..).rev() {
            set_mode(&full, mode)?;
            set_mtime(&full, mtime)?;
        }
        Ok(())
    }
}

fn entry_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &[u8],
) -> Result<EntryMeta, LayerError> {
    let bad = |e: io::Error| LayerError::malformed(name, e.to_string());
    let header = entry.header();
    let mut meta = EntryMeta {
        mode: header.mode().map_err(bad)? & 0o7777,
        uid: header.uid().map_err(bad)?,
        gid: header.gid().map_err(bad)?,
        mtime: i64::try_from(header.mtime().map_err(bad)?).unwrap_or(i64::MAX),
        xattrs: Vec::new(),
    };
    if let Some(extensions) = entry.pax_extensions().map_err(bad)? {
        for record in extensions {
            let record = record.map_err(bad)?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| {
                        LayerError::malformed(
                            name,
                            format!("bad PAX number {:?}", String::from_utf8_lossy(key)),
                        )
                    })
            };
            match key {
                b"uid" => meta.uid = u64::try_from(number()?).unwrap_or(u64::MAX),
                b"gid" => meta.gid = u64::try_from(number()?).unwrap_or(u64::MAX),
                b"mtime" => meta.mtime = number()?,
                _ => {
                    if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
                        meta.xattrs.push((xname.to_vec(), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(meta)
}

fn exists(path: &Path) -> Result<bool, LayerError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LayerError::io("inspecting", path, e)),
    }
}

/// Removes `path` (a directory with its contents; a symlink itself).
fn remove_any(path: &Path) -> Result<(), LayerError> {
    let meta = fs::symlink_metadata(path).map_err(|e| LayerError::io("inspecting", path, e))?;
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    result.map_err(|e| LayerError::io("removing", path, e))
}

/// Sets permission bits (setuid, setgid and sticky included) on a non-symlink.
fn set_mode(path: &Path, mode: u32) -> Result<(), LayerError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| LayerError::io("setting mode of", path, e))
}

/// Sets atime and mtime to `mtime` without following a symlink.
fn set_mtime(path: &Path, mtime: i64) -> Result<(), LayerError> {
    let time = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| LayerError::io("setting mtime of", path, e.into()))
}
