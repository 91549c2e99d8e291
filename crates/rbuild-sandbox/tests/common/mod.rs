//! Shared fixtures: a busybox rootfs, temp dirs, running a step and collecting its output.
#![allow(dead_code, clippy::print_stderr)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

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
