//! Shared fixtures: a busybox rootfs, temp dirs, running a step and collecting its output.
#![allow(dead_code, clippy::print_stderr)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::OnceLock;

use rbuild_sandbox::idmap::HostIds;
use rbuild_sandbox::{Isolation, RootFs, RunSpec, Sandbox, StepStatus, Stream};

pub const HELPER: &str = env!("CARGO_BIN_EXE_rbuild-sandbox-helper");

/// True when the test can run (we are root). Off CI a non-root run skips with a notice; on
/// CI it fails, since the namespace tests are the point of this crate.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (creates users and namespaces)");
    }
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// Writes a busybox rootfs into `dir`: /bin/busybox with a symlink per applet, /etc/passwd
/// (root, app 1000), /etc/group, /tmp, /etc/hosts of the image.
pub fn busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
    let list = Command::new("/usr/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    std::fs::write(etc.join("hosts"), "127.0.0.1 image-hosts\n").unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir_all(dir.join("root")).unwrap();
}

/// A temp dir with a busybox lower layer, an empty upper and a scratch dir.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub scratch: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let lower = tmp.path().join("lower");
        let upper = tmp.path().join("upper");
        let scratch = tmp.path().join("scratch");
        busybox_rootfs(&lower);
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&scratch).unwrap();
        Fixture {
            tmp,
            lower,
            upper,
            scratch,
        }
    }

    /// A shell-form step over the overlay of the fixture's lower.
    pub fn sh(&self, script: &str) -> RunSpec {
        RunSpec::new(
            RootFs::Overlay {
                lowers: vec![self.lower.clone()],
                upper: self.upper.clone(),
            },
            &self.scratch,
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        )
    }

    /// Names directly in the upper dir.
    pub fn upper_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.upper)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

pub fn sandbox(isolation: Isolation) -> Sandbox {
    Sandbox::builder()
        .helper(HELPER)
        .isolation(isolation)
        .build()
        .unwrap()
}

/// Output of a finished step.
#[derive(Debug)]
pub struct Ran {
    pub status: StepStatus,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(sandbox: &Sandbox, spec: &RunSpec) -> Ran {
    let (mut out, mut err) = (String::new(), String::new());
    let status = sandbox
        .run(spec, |l| {
            let s = if l.stream == Stream::Stdout {
                &mut out
            } else {
                &mut err
            };
            s.push_str(&String::from_utf8_lossy(l.bytes));
            s.push('\n');
        })
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    Ran {
        status,
        stdout: out,
        stderr: err,
    }
}

/// Mount points of this (the host's) mount namespace.
pub fn host_mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect()
}

/// Pids whose command line contains `needle` (NUL-separated args joined by spaces).
pub fn pids_with_cmdline(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The value of an extended attribute, if set.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    #[allow(unsafe_code)]
    // SAFETY: both strings are NUL-terminated and outlive the call; `buf` is writable for
    // `buf.len()` bytes and the kernel writes at most that many.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

pub const USER: &str = "rbsbx";

/// The test user: created when absent, with a subordinate range in /etc/subuid and /etc/subgid.
pub fn test_user() -> &'static HostIds {
    static USER_IDS: OnceLock<HostIds> = OnceLock::new();
    USER_IDS.get_or_init(|| {
        if nix::unistd::User::from_name(USER).unwrap().is_none() {
            let st = Command::new("useradd")
                .args(["-M", "-s", "/bin/sh", USER])
                .status()
                .unwrap();
            assert!(st.success(), "useradd {USER}");
        }
        let has = |f: &str| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&format!("{USER}:")))
        };
        if !has("/etc/subuid") || !has("/etc/subgid") {
            let st = Command::new("usermod")
                .args([
                    "--add-subuids",
                    "400000-465535",
                    "--add-subgids",
                    "400000-465535",
                    USER,
                ])
                .status()
                .unwrap();
            assert!(st.success(), "usermod --add-subuids");
        }
        let u = nix::unistd::User::from_name(USER).unwrap().unwrap();
        HostIds {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            name: Some(USER.into()),
            subuid: std::fs::read_to_string("/etc/subuid").unwrap(),
            subgid: std::fs::read_to_string("/etc/subgid").unwrap(),
            has_newidmap: true,
            own_uids: Vec::new(),
            own_gids: Vec::new(),
            initial_userns: true,
        }
    })
}

/// A fixture owned by the test user, the helper binary copied where that user can run it.
pub struct UserFixture {
    pub fx: Fixture,
    pub helper: PathBuf,
}

pub fn chown_r(path: &Path, ids: &HostIds) {
    let st = Command::new("chown")
        .args(["-R", "-h", &format!("{}:{}", ids.uid, ids.gid)])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

impl UserFixture {
    pub fn new() -> UserFixture {
        let ids = test_user();
        let fx = Fixture::new();
        for d in [&fx.lower, &fx.upper, &fx.scratch] {
            chown_r(d, ids);
        }
        let helper = fx.tmp.path().join("helper");
        std::fs::copy(HELPER, &helper).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        UserFixture { fx, helper }
    }

    /// Runs `spec` through the helper binary as the test user; returns (exit code, stdout,
    /// stderr).
    pub fn run_as_user(&self, spec: &RunSpec, extra: &[&str]) -> (i32, String, String) {
        let file = self
            .fx
            .tmp
            .path()
            .join(format!("spec-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_string(spec).unwrap()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = Command::new("runuser")
            .args(["-u", USER, "--"])
            .arg(&self.helper)
            .args(["run", file.to_str().unwrap(), "--isolation", "userns"])
            .args(extra)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
