//! A realistic base image made from Debian's statically linked busybox (`busybox-static`):
//! `/bin/busybox` plus one symlink per applet, `/etc/passwd` and `/etc/group` with `root`,
//! `nobody` and `app` (1000:1000), `/tmp` 1777, `/root`, `/home/app`, `/usr/bin`, `/var`. One
//! deterministic gzip layer written by `rbuild-layer`, kept in an `rbuild_store::Store`,
//! exportable as an OCI layout and pushable to a [`TestRegistry`] with `skopeo`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_layer::{LayerOptions, LayerWriter};
use rbuild_oci::{
    ContainerConfig, Descriptor, Digest, History, ImageConfig, Manifest, MediaType, Platform,
    RootFs,
};
use rbuild_store::Store;

use crate::skopeo::{self, Access};
use crate::{TestRegistry, TestkitError};

/// Where Debian's `busybox-static` installs the binary.
pub const BUSYBOX_BINARY: &str = "/bin/busybox";

/// The `PATH` of the base image's config (Docker's default).
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The name of the image inside its store.
const STORE_NAME: &str = "busybox:latest";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                      app:x:1000:1000:app:/home/app:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n";

/// A file added to the base rootfs on top of the standard tree (parents created as root 0755).
#[derive(Debug, Clone)]
pub struct ExtraFile {
    /// Path inside the image, relative (`opt/base/data.txt`).
    pub path: String,
    /// The content.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl ExtraFile {
    /// A root-owned 0644 file.
    pub fn new(path: &str, content: impl Into<Vec<u8>>) -> ExtraFile {
        ExtraFile {
            path: path.trim_start_matches('/').to_owned(),
            content: content.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    /// The same file with this owner.
    pub fn owned_by(mut self, uid: u32, gid: u32) -> ExtraFile {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// A busybox base image in its own temporary store.
#[derive(Debug)]
pub struct BusyboxImage {
    store: Store,
    manifest_digest: Digest,
    config: ImageConfig,
    _dir: tempfile::TempDir,
}

impl BusyboxImage {
    /// Whether `/bin/busybox` is installed.
    pub fn available() -> bool {
        Path::new(BUSYBOX_BINARY).is_file()
    }

    /// Whether to run tests that need busybox: `true` when installed; otherwise prints a
    /// notice and returns `false`, or panics when `CI` is set.
    // The notice is the point: a skipped test must say why to the person running it.
    #[allow(clippy::print_stderr)]
    pub fn available_or_skip() -> bool {
        if Self::available() {
            return true;
        }
        if std::env::var_os("CI").is_some() {
            panic!("{BUSYBOX_BINARY} not found and CI is set: apt-get install busybox-static");
        }
        eprintln!("skipping: {BUSYBOX_BINARY} not found (apt-get install busybox-static)");
        false
    }

    /// The standard base image (config: `PATH`, `Cmd ["sh"]`, host platform).
    pub fn build() -> Result<BusyboxImage, TestkitError> {
        Self::build_with(&[], |_| {})
    }

    /// The base image plus `extra` files, with its runtime config adjusted by `configure`
    /// (to add `OnBuild` triggers, a `User`, labels...).
    pub fn build_with(
        extra: &[ExtraFile],
        configure: impl FnOnce(&mut ContainerConfig),
    ) -> Result<BusyboxImage, TestkitError> {
        let dir = tempfile::tempdir().map_err(|e| TestkitError::io("create temp dir", e))?;
        let rootfs = dir.path().join("rootfs");
        write_rootfs(&rootfs, extra)?;

        let store = Store::open(dir.path().join("store")).map_err(store_error)?;
        let options = LayerOptions {
            source_date_epoch: Some(0),
            ..LayerOptions::default()
        };
        let mut blob = Vec::new();
        let layer = LayerWriter::new(options)
            .write_tree(&rootfs, &mut blob)
            .map_err(|e| TestkitError::Image(format!("busybox layer: {e}")))?;
        let layer_descriptor = store
            .put_blob(&blob, layer.media_type.clone())
            .map_err(store_error)?;

        let mut runtime = ContainerConfig {
            env: vec![format!("PATH={BASE_PATH}")],
            cmd: Some(vec!["sh".to_owned()]),
            ..ContainerConfig::default()
        };
        configure(&mut runtime);
        let platform = Platform::host();
        let config = ImageConfig {
            created: Some("1970-01-01T00:00:00Z".to_owned()),
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: runtime,
            rootfs: RootFs {
                diff_ids: vec![layer.diff_id.clone()],
                ..RootFs::default()
            },
            history: vec![History {
                created: Some("1970-01-01T00:00:00Z".to_owned()),
                created_by: Some("rbuild-testkit busybox base".to_owned()),
                ..History::default()
            }],
            ..ImageConfig::default()
        };
        let config_bytes = config.to_canonical_json();
        let config_descriptor = store
            .put_blob(&config_bytes, MediaType::OciConfig)
            .map_err(store_error)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            artifact_type: None,
            config: config_descriptor,
            layers: vec![Descriptor::new(
                layer.media_type,
                layer_descriptor.digest,
                layer_descriptor.size,
            )],
            subject: None,
            annotations: Default::default(),
        };
        let manifest_descriptor = store
            .put_image(
                STORE_NAME,
                &manifest.to_canonical_json(),
                MediaType::OciManifest,
            )
            .map_err(store_error)?;
        // The rootfs is only needed to write the layer.
        let _ = fs::remove_dir_all(&rootfs);
        Ok(BusyboxImage {
            store,
            manifest_digest: manifest_descriptor.digest,
            config,
            _dir: dir,
        })
    }

    /// The store holding the image.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The image's name in [`BusyboxImage::store`].
    pub fn store_name(&self) -> &'static str {
        STORE_NAME
    }

    /// The manifest digest (the same for every build of the same inputs on the same host).
    pub fn digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The image config.
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// Writes the image into the OCI layout `dir` (created if absent) as `ref_name`.
    pub fn export_oci_layout(&self, dir: &Path, ref_name: &str) -> Result<(), TestkitError> {
        self.store
            .export_oci_layout(dir, &[(STORE_NAME, ref_name)])
            .map_err(store_error)?;
        Ok(())
    }

    /// Pushes the image to a plain-HTTP or TLS `registry` without auth as `repo_tag`
    /// (`library/busybox:latest`); returns the full reference (`127.0.0.1:PORT/library/busybox:latest`).
    pub fn push_to(&self, registry: &TestRegistry, repo_tag: &str) -> Result<String, TestkitError> {
        let cert_dir: Option<PathBuf> = registry
            .tls()
            .and_then(|tls| tls.ca_cert.parent().map(Path::to_path_buf));
        let access = Access {
            creds: None,
            cert_dir: cert_dir.as_deref(),
        };
        self.push_with(&registry.host(), repo_tag, &access)
    }

    /// Pushes the image to `host/repo_tag` with the given access; returns the full reference.
    pub fn push_with(
        &self,
        host: &str,
        repo_tag: &str,
        access: &Access<'_>,
    ) -> Result<String, TestkitError> {
        let layout = tempfile::tempdir().map_err(|e| TestkitError::io("create temp dir", e))?;
        self.export_oci_layout(layout.path(), "latest")?;
        let reference = format!("{host}/{repo_tag}");
        skopeo::copy_from_oci_dir(layout.path(), "latest", &reference, access)?;
        tracing::debug!(%reference, digest = %self.manifest_digest, "pushed busybox base");
        Ok(reference)
    }
}

fn store_error(e: rbuild_store::StoreError) -> TestkitError {
    TestkitError::Image(format!("busybox store: {e}"))
}

/// Writes the base rootfs into `root` (created): see the module docs. Owners are set with
/// `lchown`, which needs root; without it the tree keeps the caller's owners (logged).
pub fn write_rootfs(root: &Path, extra: &[ExtraFile]) -> Result<(), TestkitError> {
    let applets = applets()?;
    for (dir, mode) in [
        ("", 0o755),
        ("bin", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("home/app", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
    ] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
        set_mode(&path, mode)?;
    }
    let busybox = root.join("bin/busybox");
    fs::copy(BUSYBOX_BINARY, &busybox).map_err(|e| io(&busybox, e))?;
    set_mode(&busybox, 0o755)?;
    for applet in applets.iter().filter(|a| a.as_str() != "busybox") {
        let link = root.join("bin").join(applet);
        symlink("busybox", &link).map_err(|e| io(&link, e))?;
    }
    for (path, content) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
        let path = root.join(path);
        fs::write(&path, content).map_err(|e| io(&path, e))?;
        set_mode(&path, 0o644)?;
    }
    let mut owners = vec![(root.join("home/app"), 1000, 1000)];
    for file in extra {
        let path = root.join(&file.path);
        // Parents one by one, each 0755 whatever the umask, so the layer is the same anywhere.
        let mut parent = root.to_path_buf();
        for component in Path::new(&file.path).parent().into_iter().flatten() {
            parent.push(component);
            if !parent.is_dir() {
                fs::create_dir(&parent).map_err(|e| io(&parent, e))?;
                set_mode(&parent, 0o755)?;
            }
        }
        fs::write(&path, &file.content).map_err(|e| io(&path, e))?;
        set_mode(&path, file.mode)?;
        owners.push((path, file.uid, file.gid));
    }
    for (path, uid, gid) in owners {
        if let Err(e) = std::os::unix::fs::lchown(&path, Some(uid), Some(gid)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot set owner (not root?)");
        }
    }
    Ok(())
}

/// The applet names of `busybox --list`.
fn applets() -> Result<Vec<String>, TestkitError> {
    let output = Command::new(BUSYBOX_BINARY)
        .arg("--list")
        .output()
        .map_err(|e| {
            TestkitError::io(
                format!("run {BUSYBOX_BINARY} --list (apt-get install busybox-static)"),
                e,
            )
        })?;
    if !output.status.success() {
        return Err(TestkitError::Image(format!(
            "{BUSYBOX_BINARY} --list failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    if applets.is_empty() {
        return Err(TestkitError::Image(format!(
            "{BUSYBOX_BINARY} --list printed no applets"
        )));
    }
    Ok(applets)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), TestkitError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

fn io(path: &Path, e: std::io::Error) -> TestkitError {
    TestkitError::io(format!("busybox rootfs {}", path.display()), e)
}
