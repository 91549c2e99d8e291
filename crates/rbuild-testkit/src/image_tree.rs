//! A snapshot of an image's filesystem and config: the layers applied in order into a temporary
//! directory with `rbuild_layer::apply_layer` (owners kept when run as root), then every path's
//! type, mode, owner, size, content hash, link target, hardlink group and xattrs, sorted.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rbuild_layer::{apply_layer, ApplyOptions};
use rbuild_oci::{AnyManifest, Digest, ImageConfig, Platform, Sha256Hasher};
use rbuild_store::Store;

use crate::TestkitError;

/// The type of a filesystem entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A socket.
    Socket,
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Fifo => "fifo",
            EntryKind::CharDevice => "chardev",
            EntryKind::BlockDevice => "blockdev",
            EntryKind::Socket => "socket",
        })
    }
}

/// One path of an image's filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Absolute path inside the image (`/etc/passwd`).
    pub path: String,
    /// Its type.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files; 0 otherwise).
    pub size: u64,
    /// sha256 of the content (regular files).
    pub sha256: Option<Digest>,
    /// The target of a symbolic link.
    pub link_target: Option<String>,
    /// For a file with several names in the image: the first of them in path order.
    pub hardlink_group: Option<String>,
    /// Extended attributes, by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// An image's filesystem entries (sorted by path, the root left out) and its config.
#[derive(Clone, Debug)]
pub struct ImageTree {
    /// Every path but `/`, sorted.
    pub entries: Vec<TreeEntry>,
    /// The image config.
    pub config: ImageConfig,
    /// The extracted filesystem, kept for [`ImageTree::text_of`].
    root: std::path::PathBuf,
    /// Keeps a temporary extraction alive as long as the snapshot.
    _extracted: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl ImageTree {
    /// Reads an image from `path`: an OCI layout directory holding one image, or a
    /// docker-archive file.
    pub fn from_path(path: &Path) -> Result<ImageTree, TestkitError> {
        if path.is_dir() {
            Self::from_oci_layout(path, None)
        } else {
            Self::from_docker_archive(path)
        }
    }

    /// Reads the image named `ref_name` (its `org.opencontainers.image.ref.name`) of the OCI
    /// layout `dir`, or its only image when `None`. An index is resolved for the host platform.
    /// Opening the layout as an `rbuild_store::Store` may add rbuild's bookkeeping files to it.
    pub fn from_oci_layout(dir: &Path, ref_name: Option<&str>) -> Result<ImageTree, TestkitError> {
        let store = Store::open(dir).map_err(|e| image_error(dir, e))?;
        let mut descriptor = match ref_name {
            Some(name) => store.resolve(name).map_err(|e| image_error(dir, e))?,
            None => {
                let index = store.read_index().map_err(|e| image_error(dir, e))?;
                match index.manifests.as_slice() {
                    [only] => only.clone(),
                    other => {
                        return Err(TestkitError::Image(format!(
                            "{}: expected one image in index.json, found {}",
                            dir.display(),
                            other.len()
                        )))
                    }
                }
            }
        };
        for _ in 0..8 {
            match store
                .read_manifest(&descriptor)
                .map_err(|e| image_error(dir, e))?
            {
                AnyManifest::Image(manifest) => {
                    let config = store
                        .read_config(&manifest.config.digest)
                        .map_err(|e| image_error(dir, e))?;
                    let layers = manifest
                        .layers
                        .iter()
                        .map(|l| store.blob_path(&l.digest))
                        .collect::<Vec<_>>();
                    return Self::from_layer_files(&layers, config);
                }
                AnyManifest::Index(index) => {
                    descriptor =
                        index
                            .find_platform(&Platform::host())
                            .cloned()
                            .ok_or_else(|| {
                                TestkitError::Image(format!(
                                    "{}: no manifest for the host platform",
                                    dir.display()
                                ))
                            })?;
                }
            }
        }
        Err(TestkitError::Image(format!(
            "{}: indexes nested too deep",
            dir.display()
        )))
    }

    /// Reads the image named `name` of an rbuild store.
    pub fn from_store(store: &Store, name: &str) -> Result<ImageTree, TestkitError> {
        let (_, manifest, config) = store
            .get_image(name)
            .map_err(|e| image_error(store.root(), e))?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| store.blob_path(&l.digest))
            .collect::<Vec<_>>();
        Self::from_layer_files(&layers, config)
    }

    /// Reads the first image of a docker-archive (`docker save`, `skopeo copy … docker-archive:`).
    pub fn from_docker_archive(file: &Path) -> Result<ImageTree, TestkitError> {
        let unpacked = tempfile::tempdir().map_err(|e| TestkitError::io("create temp dir", e))?;
        let archive = File::open(file)
            .map_err(|e| TestkitError::io(format!("open {}", file.display()), e))?;
        tar::Archive::new(archive)
            .unpack(unpacked.path())
            .map_err(|e| TestkitError::io(format!("unpack {}", file.display()), e))?;
        let manifest_path = unpacked.path().join("manifest.json");
        let text = fs::read(&manifest_path)
            .map_err(|e| TestkitError::io(format!("{}: read manifest.json", file.display()), e))?;
        let manifest: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| TestkitError::Image(format!("{}: manifest.json: {e}", file.display())))?;
        let first = manifest.get(0).ok_or_else(|| {
            TestkitError::Image(format!("{}: manifest.json lists no image", file.display()))
        })?;
        let config_name = first["Config"].as_str().ok_or_else(|| {
            TestkitError::Image(format!("{}: manifest.json has no Config", file.display()))
        })?;
        let config_bytes = fs::read(unpacked.path().join(config_name))
            .map_err(|e| TestkitError::io(format!("{}: read {config_name}", file.display()), e))?;
        let config = ImageConfig::from_json(&config_bytes).map_err(|e| {
            TestkitError::Image(format!("{}: config {config_name}: {e}", file.display()))
        })?;
        let layers = first["Layers"]
            .as_array()
            .ok_or_else(|| {
                TestkitError::Image(format!("{}: manifest.json has no Layers", file.display()))
            })?
            .iter()
            .map(|l| {
                l.as_str()
                    .map(|name| unpacked.path().join(name))
                    .ok_or_else(|| {
                        TestkitError::Image(format!("{}: a layer name is not text", file.display()))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_layer_files(&layers, config)
    }

    /// Applies the layer files in order (each checked against the config's diffID) and
    /// snapshots the result.
    pub fn from_layer_files(
        layers: &[impl AsRef<Path>],
        config: ImageConfig,
    ) -> Result<ImageTree, TestkitError> {
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(TestkitError::Image(format!(
                "{} layers but {} diff_ids in the config",
                layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let rootfs = tempfile::tempdir().map_err(|e| TestkitError::io("create temp dir", e))?;
        for (layer, diff_id) in layers.iter().zip(&config.rootfs.diff_ids) {
            let layer = layer.as_ref();
            let file = File::open(layer)
                .map_err(|e| TestkitError::io(format!("open layer {}", layer.display()), e))?;
            let options = ApplyOptions {
                expected_diff_id: Some(diff_id.clone()),
                set_owners: true,
            };
            apply_layer(std::io::BufReader::new(file), rootfs.path(), &options).map_err(|e| {
                TestkitError::Image(format!("apply layer {}: {e}", layer.display()))
            })?;
        }
        let mut tree = Self::from_rootfs(rootfs.path(), config)?;
        tree._extracted = Some(std::sync::Arc::new(rootfs));
        Ok(tree)
    }

    /// Snapshots an extracted filesystem at `root` with `config`.
    pub fn from_rootfs(root: &Path, config: ImageConfig) -> Result<ImageTree, TestkitError> {
        let mut entries = Vec::new();
        let mut inodes: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
        walk(root, "", &mut entries, &mut inodes)?;
        for indexes in inodes.values().filter(|i| i.len() > 1) {
            let first = entries[indexes[0]].path.clone();
            for &i in indexes {
                entries[i].hardlink_group = Some(first.clone());
            }
        }
        Ok(ImageTree {
            entries,
            config,
            root: root.to_path_buf(),
            _extracted: None,
        })
    }

    /// The content of the regular file at `path` as UTF-8 text, if it is one (read from the
    /// extracted tree, which must still exist).
    pub fn text_of(&self, path: &str) -> Option<String> {
        let entry = self.get(path)?;
        if entry.kind != EntryKind::File {
            return None;
        }
        let bytes = fs::read(self.root.join(entry.path.trim_start_matches('/'))).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The entry at `path` (absolute, `/etc/passwd`).
    pub fn get(&self, path: &str) -> Option<&TreeEntry> {
        let path = normalize(path);
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path.as_str()))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// A readable listing, one line per entry (for failure messages and golden files).
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            out.push_str(&describe(entry));
            out.push('\n');
        }
        out
    }
}

/// `/a/b` form of a path given as `a/b`, `/a/b/` or `./a/b`.
pub(crate) fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// One entry on one line: `path kind mode uid:gid [size sha] [-> target] [xattrs]`.
pub fn describe(entry: &TreeEntry) -> String {
    let mut line = format!(
        "{} {} {:04o} {}:{}",
        entry.path, entry.kind, entry.mode, entry.uid, entry.gid
    );
    if let Some(sha) = &entry.sha256 {
        line.push_str(&format!(" size={} {}", entry.size, &sha.encoded()[..12]));
    }
    if let Some(target) = &entry.link_target {
        line.push_str(&format!(" -> {target}"));
    }
    if let Some(group) = &entry.hardlink_group {
        line.push_str(&format!(" link-group={group}"));
    }
    for (name, value) in &entry.xattrs {
        line.push_str(&format!(" xattr:{name}={}", show_bytes(value)));
    }
    line
}

/// Bytes as text when printable, as hex otherwise.
pub(crate) fn show_bytes(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => format!("{text:?}"),
        _ => value.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn walk(
    dir: &Path,
    prefix: &str,
    entries: &mut Vec<TreeEntry>,
    inodes: &mut HashMap<(u64, u64), Vec<usize>>,
) -> Result<(), TestkitError> {
    let read =
        fs::read_dir(dir).map_err(|e| TestkitError::io(format!("list {}", dir.display()), e))?;
    let mut names = read
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TestkitError::io(format!("list {}", dir.display()), e))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let image_path = format!("{prefix}/{}", name.to_string_lossy());
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| TestkitError::io(format!("stat {}", path.display()), e))?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_fifo() {
            EntryKind::Fifo
        } else if file_type.is_char_device() {
            EntryKind::CharDevice
        } else if file_type.is_block_device() {
            EntryKind::BlockDevice
        } else {
            EntryKind::Socket
        };
        let (size, sha256) = if kind == EntryKind::File {
            (meta.len(), Some(hash_file(&path)?))
        } else {
            (0, None)
        };
        let link_target = if kind == EntryKind::Symlink {
            let target = fs::read_link(&path)
                .map_err(|e| TestkitError::io(format!("readlink {}", path.display()), e))?;
            Some(target.to_string_lossy().into_owned())
        } else {
            None
        };
        if kind != EntryKind::Dir && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(entries.len());
        }
        entries.push(TreeEntry {
            path: image_path.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size,
            sha256,
            link_target,
            hardlink_group: None,
            xattrs: read_xattrs(&path)?,
        });
        if kind == EntryKind::Dir {
            walk(&path, &image_path, entries, inodes)?;
        }
    }
    Ok(())
}

fn hash_file(path: &Path) -> Result<Digest, TestkitError> {
    let mut file =
        File::open(path).map_err(|e| TestkitError::io(format!("open {}", path.display()), e))?;
    let mut hasher = Sha256Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| TestkitError::io(format!("read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish().0)
}

fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, TestkitError> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        // A file system without xattrs has none to compare.
        Err(e) if e.raw_os_error() == Some(95) => return Ok(out),
        Err(e) => {
            return Err(TestkitError::io(
                format!("list xattrs {}", path.display()),
                e,
            ))
        }
    };
    for name in names {
        let value = xattr::get(path, &name)
            .map_err(|e| TestkitError::io(format!("read xattr {}", path.display()), e))?;
        if let Some(value) = value {
            out.insert(name.to_string_lossy().into_owned(), value);
        }
    }
    Ok(out)
}

fn image_error(path: &Path, e: rbuild_store::StoreError) -> TestkitError {
    TestkitError::Image(format!("{}: {e}", path.display()))
}
