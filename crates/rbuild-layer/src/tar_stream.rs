//! Turning a change set over a source tree into tar bytes, in the order and form of DESIGN.md §3:
//! entries sorted by path components (bytes), parents before children (an unchanged parent
//! directory is written too, from the source tree, so that every entry has its parent in the
//! layer), hardlinks within the layer kept, overlay xattrs dropped, sockets skipped, numeric ids
//! only, mtimes clamped to `SOURCE_DATE_EPOCH`.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::changes::{Change, ChangeSet};
use crate::chunk_sink::ChunkSink;
use crate::error::LayerError;
use crate::tar_header::{self, EntryType, HeaderFields, BLOCK};
use crate::xattrs;

/// Owners (uid, gid) a layer records for some paths (relative to the tree written) instead of
/// the owners those paths have on disk: a builder without the privilege to `chown` still
/// writes the owners the image must have.
pub type OwnerMap = HashMap<std::path::PathBuf, (u32, u32)>;

/// The name of the marker that makes a directory opaque.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The prefix of a whiteout's name.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Planned {
    /// The path as it is in the source tree.
    Source,
    /// A whiteout for the path (the entry is named `<parent>/.wh.<name>`).
    Whiteout,
    /// The opaque marker inside the directory.
    OpaqueMarker,
}

struct PlannedEntry<'a> {
    /// Components joined by NUL (which no name holds), so that comparing keys as bytes orders
    /// entries by their components: parents first, siblings by byte order.
    key: Vec<u8>,
    /// The name in the tar, without a trailing `/`.
    name: Vec<u8>,
    /// The path in the source tree.
    source: &'a Path,
    what: Planned,
}

/// Writes the tar for `changes` read from `root` into `sink`; returns the number of entries.
pub(crate) fn write_tar(
    root: &Path,
    changes: &ChangeSet,
    owners: &OwnerMap,
    source_date_epoch: Option<i64>,
    sink: &mut ChunkSink<'_>,
) -> Result<u64, LayerError> {
    let plan = plan(changes);
    let mut writer = TarStream {
        root,
        owners,
        epoch: source_date_epoch,
        sink,
        header: Vec::with_capacity(4 * BLOCK),
        hardlinks: HashMap::new(),
        open_dirs: Vec::new(),
        entries: 0,
    };
    for entry in &plan {
        writer.write_planned(entry)?;
    }
    writer
        .sink
        .write_bytes(&[0u8; 2 * BLOCK])
        .map_err(LayerError::Output)?;
    Ok(writer.entries)
}

fn plan(changes: &ChangeSet) -> Vec<PlannedEntry<'_>> {
    let mut plan = Vec::with_capacity(changes.len() + 8);
    for (path, change) in changes {
        let bytes = path.as_os_str().as_bytes();
        let key: Vec<u8> = bytes
            .iter()
            .map(|&b| if b == b'/' { 0 } else { b })
            .collect();
        match change {
            Change::Upsert => plan.push(PlannedEntry {
                key,
                name: bytes.to_vec(),
                source: path,
                what: Planned::Source,
            }),
            Change::OpaqueDir => {
                let mut marker_key = key.clone();
                // An empty last component: right after the directory, before its children.
                marker_key.push(0);
                let mut marker = bytes.to_vec();
                marker.push(b'/');
                marker.extend_from_slice(OPAQUE_MARKER);
                plan.push(PlannedEntry {
                    key,
                    name: bytes.to_vec(),
                    source: path,
                    what: Planned::Source,
                });
                plan.push(PlannedEntry {
                    key: marker_key,
                    name: marker,
                    source: path,
                    what: Planned::OpaqueMarker,
                });
            }
            Change::Delete => {
                let split = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
                let mut name = bytes[..split].to_vec();
                name.extend_from_slice(WHITEOUT_PREFIX);
                name.extend_from_slice(&bytes[split..]);
                let key = name
                    .iter()
                    .map(|&b| if b == b'/' { 0 } else { b })
                    .collect();
                plan.push(PlannedEntry {
                    key,
                    name,
                    source: path,
                    what: Planned::Whiteout,
                });
            }
        }
    }
    plan.sort_by(|a, b| a.key.cmp(&b.key));
    plan
}

struct TarStream<'a, 's, 'p> {
    root: &'a Path,
    /// Owners written instead of the source tree's, by path relative to `root`.
    owners: &'a OwnerMap,
    epoch: Option<i64>,
    sink: &'s mut ChunkSink<'p>,
    header: Vec<u8>,
    /// (device, inode) of multiply-linked files already written → their name in the layer.
    hardlinks: HashMap<(u64, u64), Vec<u8>>,
    /// The directories written that are ancestors of the last entry, shallowest first.
    open_dirs: Vec<Vec<u8>>,
    entries: u64,
}

impl TarStream<'_, '_, '_> {
    fn write_planned(&mut self, entry: &PlannedEntry<'_>) -> Result<(), LayerError> {
        self.write_missing_parents(&entry.name)?;
        match entry.what {
            Planned::Source => {
                let full = self.root.join(entry.source);
                let meta = fs::symlink_metadata(&full)
                    .map_err(|e| LayerError::io("inspecting", &full, e))?;
                self.write_source(&entry.name, &full, &meta)
            }
            Planned::Whiteout | Planned::OpaqueMarker => self.write_marker(&entry.name),
        }
    }

    /// Writes the directories above `name` that no entry of the change set wrote.
    fn write_missing_parents(&mut self, name: &[u8]) -> Result<(), LayerError> {
        while let Some(top) = self.open_dirs.last() {
            if is_ancestor(top, name) {
                break;
            }
            self.open_dirs.pop();
        }
        let mut start = self.open_dirs.last().map_or(0, |d| d.len() + 1);
        while let Some(slash) = name[start..].iter().position(|&b| b == b'/') {
            let dir = name[..start + slash].to_vec();
            let full = self.root.join(Path::new(std::ffi::OsStr::from_bytes(&dir)));
            let meta =
                fs::symlink_metadata(&full).map_err(|e| LayerError::io("inspecting", &full, e))?;
            if !meta.is_dir() {
                return Err(LayerError::FileChanged {
                    path: full,
                    reason: "a parent of a changed path is not a directory".into(),
                });
            }
            self.write_source(&dir, &full, &meta)?;
            start += slash + 1;
        }
        Ok(())
    }

    fn write_source(
        &mut self,
        name: &[u8],
        full: &Path,
        meta: &Metadata,
    ) -> Result<(), LayerError> {
        let file_type = meta.file_type();
        if file_type.is_socket() {
            tracing::debug!(path = %full.display(), "socket skipped: layers carry no sockets");
            return Ok(());
        }
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattrs::read_kept(full)
            .map_err(|e| LayerError::io("reading xattrs of", full, e))?
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v))
            .collect();
        let (uid, gid) = self
            .owners
            .get(Path::new(std::ffi::OsStr::from_bytes(name)))
            .copied()
            .unwrap_or((meta.uid(), meta.gid()));
        let mut fields = HeaderFields {
            name,
            entry_type: EntryType::Regular,
            mode: meta.mode() & 0o7777,
            uid: u64::from(uid),
            gid: u64::from(gid),
            size: 0,
            mtime: self.clamp(meta.mtime()),
            link_name: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &xattrs,
        };
        let dir_name;
        let link_target;
        if file_type.is_dir() {
            dir_name = [name, b"/"].concat();
            fields.name = &dir_name;
            fields.entry_type = EntryType::Directory;
            self.encode_and_write(&fields, full)?;
            self.open_dirs.push(name.to_vec());
            return Ok(());
        } else if file_type.is_symlink() {
            link_target =
                fs::read_link(full).map_err(|e| LayerError::io("reading link", full, e))?;
            fields.entry_type = EntryType::Symlink;
            fields.link_name = link_target.as_os_str().as_bytes();
        } else if file_type.is_char_device() || file_type.is_block_device() {
            fields.entry_type = if file_type.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            fields.dev_major = u64::from(rustix::fs::major(meta.rdev()));
            fields.dev_minor = u64::from(rustix::fs::minor(meta.rdev()));
        } else if file_type.is_fifo() {
            fields.entry_type = EntryType::Fifo;
        } else if file_type.is_file() {
            // The first name of an inode in the tar's sorted order is the regular file, every
            // later name a hardlink to it, as BuildKit writes layers: containerd's
            // `archive/tar.go`, `(*changeWriter).HandleChange`, keeps `inodeSrc[inode]` = the
            // first changed name walked (in path order) and links later names to it. (It also
            // adds *unchanged* names of a changed inode, which a change set here never holds.)
            if meta.nlink() > 1 {
                if let Some(first) = self.hardlinks.get(&(meta.dev(), meta.ino())) {
                    let first = first.clone();
                    fields.entry_type = EntryType::HardLink;
                    fields.link_name = &first;
                    fields.xattrs = &[];
                    return self.encode_and_write(&fields, full);
                }
                self.hardlinks
                    .insert((meta.dev(), meta.ino()), name.to_vec());
            }
            return self.write_regular(fields, full, meta);
        }
        self.encode_and_write(&fields, full)
    }

    fn write_regular(
        &mut self,
        mut fields: HeaderFields<'_>,
        full: &Path,
        lstat: &Metadata,
    ) -> Result<(), LayerError> {
        let mut file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(full)
            .map_err(|e| LayerError::io("opening", full, e))?;
        let meta = file
            .metadata()
            .map_err(|e| LayerError::io("inspecting", full, e))?;
        if meta.ino() != lstat.ino() || meta.dev() != lstat.dev() {
            return Err(LayerError::FileChanged {
                path: full.to_owned(),
                reason: "replaced by another file".into(),
            });
        }
        fields.size = meta.len();
        self.encode_and_write(&fields, full)?;
        let copied = self
            .sink
            .copy_from(&mut file, meta.len())
            .map_err(|e| match e.kind() {
                io::ErrorKind::BrokenPipe => LayerError::Output(e),
                _ => LayerError::io("reading", full, e),
            })?;
        if copied != meta.len() {
            return Err(LayerError::FileChanged {
                path: full.to_owned(),
                reason: format!("{} bytes read, {} expected", copied, meta.len()),
            });
        }
        let pad = tar_header::padding_after(meta.len());
        self.sink
            .write_bytes(&[0u8; BLOCK][..pad])
            .map_err(LayerError::Output)
    }

    /// A whiteout or opaque marker: an empty regular file, mode 0, owned by root.
    fn write_marker(&mut self, name: &[u8]) -> Result<(), LayerError> {
        let fields = HeaderFields {
            name,
            entry_type: EntryType::Regular,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            // No time of its own: the epoch when given (reproducible), else 0.
            mtime: self.epoch.unwrap_or(0),
            link_name: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs: &[],
        };
        self.encode_and_write(&fields, Path::new(std::ffi::OsStr::from_bytes(name)))
    }

    fn encode_and_write(
        &mut self,
        fields: &HeaderFields<'_>,
        full: &Path,
    ) -> Result<(), LayerError> {
        self.header.clear();
        tar_header::encode(fields, &mut self.header).map_err(|e| LayerError::Unsupported {
            path: full.to_owned(),
            what: e.0.to_owned(),
        })?;
        self.entries += 1;
        self.sink
            .write_bytes(&self.header)
            .map_err(LayerError::Output)
    }

    fn clamp(&self, mtime: i64) -> i64 {
        match self.epoch {
            Some(epoch) if mtime > epoch => epoch,
            _ => mtime,
        }
    }
}

fn is_ancestor(dir: &[u8], path: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}
