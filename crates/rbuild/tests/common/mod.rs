//! Shared test helpers: a busybox base image made from `/bin/busybox` (Debian package
//! `busybox-static`), and reading back the layers of a built image.

#![allow(dead_code)]

use rbuild::oci::{Descriptor, ImageConfig, Manifest, MediaType, RootFs};
use rbuild::store::Store;
use std::io::Read;
use std::path::Path;

/// One entry read back from a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub content: Vec<u8>,
    pub link: Option<String>,
    pub mtime: u64,
}

/// The entries of a (gzip or plain) layer blob, in order.
pub fn layer_entries(store: &Store, digest: &rbuild::oci::Digest) -> Vec<Entry> {
    let bytes = store.read_blob(digest).unwrap();
    let data: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(&bytes[..]))
    } else {
        Box::new(&bytes[..])
    };
    let mut archive = tar::Archive::new(data);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => 'f',
        };
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.push(Entry {
            path,
            kind,
            mode: header.mode().unwrap() & 0o7777,
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            content,
            link,
            mtime: header.mtime().unwrap(),
        });
    }
    out
}

/// Finds `path` in `entries`.
pub fn find<'a>(entries: &'a [Entry], path: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.path.trim_end_matches('/') == path)
        .unwrap_or_else(|| {
            panic!(
                "{path} not in layer: {:?}",
                entries.iter().map(|e| &e.path).collect::<Vec<_>>()
            )
        })
}

/// Puts a busybox image (`bin/busybox`, `bin/sh` → busybox, `etc/passwd`, `etc/group`) into the
/// store as `name`.
pub fn put_busybox(store: &Store, name: &str) {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)");
    let mut builder = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if path == "tmp/" { 0o1777 } else { 0o755 });
        h.set_size(0);
        h.set_mtime(1_000_000);
        b.append_data(&mut h, path, &[][..]).unwrap();
    };
    dir(&mut builder, "bin/");
    dir(&mut builder, "etc/");
    dir(&mut builder, "tmp/");
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_000_000);
        b.append_data(&mut h, path, data).unwrap();
    };
    file(&mut builder, "bin/busybox", 0o755, &busybox);
    file(
        &mut builder,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    );
    file(
        &mut builder,
        "etc/group",
        0o644,
        b"root:x:0:\napp:x:1001:\nstaff:x:50:\n",
    );
    for applet in ["sh", "ls", "cat", "echo"] {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_000_000);
        builder
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let layer = store.put_blob(&tar, MediaType::OciLayer).unwrap();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: rbuild::oci::ContainerConfig {
            env: vec!["PATH=/bin".into()],
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        },
        rootfs: RootFs {
            diff_ids: vec![layer.digest.clone()],
            ..RootFs::default()
        },
        history: vec![rbuild::oci::History {
            created_by: Some("busybox test layer".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let config: Descriptor = store
        .put_blob(&config.to_canonical_json(), MediaType::OciConfig)
        .unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config,
        layers: vec![layer],
        subject: None,
        annotations: Default::default(),
    };
    store
        .put_image(name, &manifest.to_canonical_json(), MediaType::OciManifest)
        .unwrap();
}

/// Writes `files` (path, content, mode) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str, u32)]) {
    use std::os::unix::fs::PermissionsExt;
    for (path, content, mode) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
}
