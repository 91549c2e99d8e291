//! Issue 16 item 8: the binary links no dynamic library beyond libc, and the fully static
//! build (glibc `+crt-static`, as `deploy/build.sh` makes it) resolves a registry by name inside
//! a root that holds nothing but itself, a context and `/etc/hosts` — a `FROM scratch` image's
//! filesystem, without glibc's NSS modules. Names are resolved by reqwest's `hickory-dns`.
//!
//! The static binary is `RBUILD_STATIC_BINARY` when set, else built here (a target directory
//! of its own, no debug info: a few minutes the first time).
#![allow(clippy::print_stderr)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_testkit::{RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// deploy/build.sh's flags (without optimisation): static glibc, and random numbers from the
/// getrandom system call (a static binary cannot find glibc's `getrandom` by `dlsym`, and
/// would read /dev/urandom instead).
const STATIC_RUSTFLAGS: &str =
    "-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\" -C debuginfo=0";

fn static_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RBUILD_STATIC_BINARY") {
        return PathBuf::from(path);
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("static-build");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-p",
            "rbuild-cli",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("RUSTFLAGS", STATIC_RUSTFLAGS)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "static build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join("x86_64-unknown-linux-gnu/debug/rbuild")
}

/// The ELF program header types of `path` (64-bit little-endian).
fn program_header_types(path: &Path) -> Vec<u32> {
    let elf = fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (offset, size, count) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..count)
        .map(|i| {
            let at = offset + i * size;
            u32::from_le_bytes(elf[at..at + 4].try_into().unwrap())
        })
        .collect()
}

const PT_INTERP: u32 = 3;

#[test]
fn the_binary_needs_no_library_beyond_libc() {
    let output = Command::new("ldd").arg(RBUILD).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let allowed = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux-x86-64.so",
    ];
    for line in text.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let name = name.rsplit('/').next().unwrap_or(name);
        assert!(
            allowed.iter().any(|a| name.starts_with(a)),
            "rbuild links {name} (liblzma, libbz2, libzstd must be static):\n{text}"
        );
    }
}

#[test]
fn static_binary_resolves_a_registry_by_name_in_a_scratch_root() {
    let binary = static_binary();
    assert!(
        !program_header_types(&binary).contains(&PT_INTERP),
        "{} has a program interpreter: not fully static",
        binary.display()
    );
    if !common::is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the chroot test needs root (CI is set)"
        );
        eprintln!("SKIPPED: the chroot part needs root");
        return;
    }
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    // The scratch root: the binary, a context, the name of the registry, nothing else.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("ctx")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    // What a container runtime gives a FROM scratch image: /dev/null, /dev/random, /dev/urandom.
    for (name, minor) in [("null", "3"), ("random", "8"), ("urandom", "9")] {
        let path = root.join("dev").join(name);
        common::sh(
            "mknod",
            &["-m", "0666", path.to_str().unwrap(), "c", "1", minor],
        );
    }
    fs::copy(&binary, root.join("rbuild")).unwrap();
    fs::write(root.join("etc/hosts"), "127.0.0.1 registry.rbuild.test\n").unwrap();
    // Nothing answers DNS here: the name must come from the hosts file.
    fs::write(
        root.join("etc/resolv.conf"),
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    fs::write(root.join("ctx/hello.txt"), "hello\n").unwrap();
    fs::write(
        root.join("ctx/Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    let name = format!("registry.rbuild.test:{}", registry.port());
    let output = Command::new("chroot")
        .arg(&root)
        .args([
            "/rbuild",
            "--context",
            "/ctx",
            "--cache-dir",
            "/store",
            "--insecure",
        ])
        .args(["--insecure-registry", &name, "--destination"])
        .arg(format!("{name}/static/app:v1"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(registry.has_tag("static/app", "v1"));
}
