//! The escape suite: a hostile `RUN` step attacks the sandbox the ways that worked before the
//! hardening (issue "RUN is a security boundary"), as root and as a freshly created non-root
//! builder with subordinate ranges, and every test asserts on the host side that nothing
//! happened. The attacks are made by a small static probe (`probe/escape_probe.c`, compiled
//! here with `cc -static`) and busybox inside the step; the builder is the sandbox's helper
//! binary driving a real step.
//!
//! A test that cannot arm its probe (no C compiler, no cgroup to attack, no terminal) skips
//! with a notice, and fails under `CI=1`.
#![allow(clippy::print_stderr, unsafe_code)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use rbuild_sandbox::{Mount, MountKind, RootFs, RunSpec, SecretBytes};

/// Who runs the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builder {
    /// Real root, as Kaniko runners run.
    Root,
    /// The test user with subordinate ranges, entering its own user namespace first as the
    /// rbuild binary does.
    User,
}

/// Off CI a missing prerequisite skips with a notice; on CI it fails.
fn cannot_arm(test: &str, why: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: cannot arm the probe: {why}");
    }
    eprintln!("SKIPPED {test}: cannot arm the probe: {why}");
    false
}

/// The static probe, compiled once per test binary.
fn probe_binary() -> Result<&'static Path, String> {
    static PROBE: OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            let out = dir.path().join("probe");
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/escape_probe.c");
            let st = Command::new("cc")
                .args(["-static", "-O1", "-o"])
                .arg(&out)
                .arg(&src)
                .status()
                .map_err(|e| format!("cc: {e} (install gcc and libc6-dev)"))?;
            if !st.success() {
                return Err(format!("cc -static {} failed ({st})", src.display()));
            }
            Ok((dir, out))
        })
        .as_ref()
        .map(|(_, p)| p.as_path())
        .map_err(Clone::clone)
}

/// A busybox rootfs holding `/probe`, owned by the builder, and a way to run steps over it
/// through the real helper binary.
struct Armed {
    who: Builder,
    fx: Fixture,
    helper: PathBuf,
    probe: PathBuf,
}

impl Armed {
    /// `None` (after the notice) when the test cannot run here.
    fn new(test: &str, who: Builder) -> Option<Armed> {
        if !have_root(test) {
            return None;
        }
        let probe = match probe_binary() {
            Ok(p) => p.to_path_buf(),
            Err(e) => {
                cannot_arm(test, &e);
                return None;
            }
        };
        let (fx, helper) = match who {
            Builder::Root => (Fixture::new(), PathBuf::from(HELPER)),
            Builder::User => {
                let u = UserFixture::new();
                (u.fx, u.helper)
            }
        };
        let inside = fx.lower.join("probe");
        std::fs::copy(&probe, &inside).unwrap();
        std::fs::set_permissions(&inside, PermissionsExt::from_mode(0o755)).unwrap();
        let host_probe = fx.tmp.path().join("probe");
        std::fs::copy(&probe, &host_probe).unwrap();
        std::fs::set_permissions(&host_probe, PermissionsExt::from_mode(0o755)).unwrap();
        if who == Builder::User {
            chown_r(&fx.lower, test_user());
        }
        Some(Armed {
            who,
            fx,
            helper,
            probe: host_probe,
        })
    }

    /// A file the builder owns, readable by it alone.
    fn builders_private_file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.fx.tmp.path().join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, PermissionsExt::from_mode(0o600)).unwrap();
        if self.who == Builder::User {
            let ids = test_user();
            std::os::unix::fs::chown(&p, Some(ids.uid), Some(ids.gid)).unwrap();
        }
        p
    }

    /// A directory the builder owns.
    fn builders_dir(&self, name: &str) -> PathBuf {
        let p = self.fx.tmp.path().join(name);
        std::fs::create_dir(&p).unwrap();
        if self.who == Builder::User {
            chown_r(&p, test_user());
        }
        p
    }

    fn write_spec(&self, spec: &RunSpec) -> PathBuf {
        let file = self.fx.tmp.path().join("spec.json");
        std::fs::write(&file, serde_json::to_string(spec).unwrap()).unwrap();
        std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).unwrap();
        file
    }

    /// The command that runs `spec` as the builder, `wrap` (a program and its arguments)
    /// exec-ing the helper.
    fn command(&self, spec: &RunSpec, isolation: &str, wrap: &[&str]) -> Command {
        let file = self.write_spec(spec);
        let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
        argv.push(self.helper.display().to_string());
        argv.extend(["run".into(), file.display().to_string()]);
        argv.extend(["--isolation".into(), isolation.into()]);
        let mut cmd = match self.who {
            Builder::Root => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            Builder::User => {
                argv.push("--rootless-userns".into());
                let mut c = Command::new("runuser");
                c.args(["-u", USER, "--"]).args(&argv);
                c
            }
        };
        cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    }

    /// Runs `spec`; returns (exit code, stdout, stderr).
    fn run(&self, spec: &RunSpec, isolation: &str) -> (i32, String, String) {
        let out = self.command(spec, isolation, &[]).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A shell-form step over the overlay (userns) or the rootfs dir (chroot).
    fn sh(&self, script: &str, isolation: &str) -> RunSpec {
        let mut spec = self.fx.sh(script);
        if isolation == "chroot" {
            spec.root = RootFs::Dir(self.fx.lower.clone());
        }
        spec
    }
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rbuild-escape-{what}-{}-{nanos}", std::process::id())
}

// Row 1: core_pattern. The step writes `|/proc/%P/root/p` to the host's core_pattern: as host
// root (before) the host ran `/p` as root on the next crash.
fn core_pattern(who: Builder) {
    let Some(a) = Armed::new("core_pattern", who) else {
        return;
    };
    let path = "/proc/sys/kernel/core_pattern";
    let before = std::fs::read_to_string(path).unwrap();
    let (code, out, err) = a.run(
        &a.sh(&format!("/probe write {path} '|/proc/%P/root/p'"), "userns"),
        "userns",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("write: ok"), "{out}");
    assert_eq!(std::fs::read_to_string(path).unwrap(), before);
}

#[test]
fn core_pattern_stays_the_hosts_as_root() {
    core_pattern(Builder::Root);
}

#[test]
fn core_pattern_stays_the_hosts_as_user() {
    core_pattern(Builder::User);
}

/// A cgroup of the host with a process in it, for the step to attack.
struct Victim {
    dir: PathBuf,
    child: std::process::Child,
}

impl Victim {
    /// A new cgroup under `mount` holding a `sleep`, or `None` when the host refuses.
    fn new(mount: &Path, procs: &str) -> Option<Victim> {
        let dir = mount.join(unique("victim"));
        std::fs::create_dir(&dir).ok()?;
        let child = Command::new("sleep").arg("300").spawn().unwrap();
        let joined = std::fs::write(dir.join(procs), child.id().to_string()).is_ok();
        let victim = Victim { dir, child };
        // Dropping an unarmed victim kills its process and removes the cgroup.
        joined.then_some(victim)
    }

    fn alive_and_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("freezer.state"), "THAWED");
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The host's cgroup mounts: `(mount point, filesystem type, super options)`.
fn cgroup_mounts() -> Vec<(PathBuf, String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fstype = post.next()?;
            let opts = post.nth(1).unwrap_or_default();
            fstype.starts_with("cgroup").then(|| {
                (
                    PathBuf::from(mount_point),
                    fstype.to_owned(),
                    opts.to_owned(),
                )
            })
        })
        .collect()
}

// Row 2: cgroups. Before, `/sys` was bound recursively and only its top made read-only: the
// step killed (cgroup.kill) and froze (freezer.state) host processes.
fn cgroups(who: Builder) {
    let Some(a) = Armed::new("cgroups", who) else {
        return;
    };
    let mounts = cgroup_mounts();
    let v2 = mounts.iter().find(|(_, t, _)| t == "cgroup2");
    let freezer = mounts
        .iter()
        .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|o| o == "freezer"));
    let mut victims = Vec::new();
    let mut script = String::new();
    if let Some((m, ..)) = v2 {
        if let Some(v) = Victim::new(m, "cgroup.procs") {
            script.push_str(&format!(
                "/probe write {}/cgroup.kill 1; /probe write {}/cgroup.freeze 1; ",
                v.dir.display(),
                v.dir.display()
            ));
            script.push_str(&format!("/probe mkdir {}/{}; ", m.display(), unique("new")));
            victims.push(v);
        }
    }
    if let Some((m, ..)) = freezer {
        if let Some(v) = Victim::new(m, "tasks") {
            script.push_str(&format!(
                "/probe write {}/freezer.state FROZEN; ",
                v.dir.display()
            ));
            victims.push(v);
        }
    }
    if victims.is_empty() {
        cannot_arm(
            "cgroups",
            "no writable cgroup v2 or v1 freezer hierarchy here",
        );
        return;
    }
    let (code, out, err) = a.run(&a.sh(&script, "userns"), "userns");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(": ok"), "{out}");
    std::thread::sleep(Duration::from_millis(100));
    for v in &mut victims {
        assert!(v.alive_and_running(), "{} was killed", v.dir.display());
        if let Ok(state) = std::fs::read_to_string(v.dir.join("freezer.state")) {
            assert_eq!(state.trim(), "THAWED");
        }
        if let Ok(events) = std::fs::read_to_string(v.dir.join("cgroup.events")) {
            assert!(events.contains("frozen 0"), "{events}");
        }
    }
    if let Some((m, ..)) = v2 {
        let created: Vec<_> = std::fs::read_dir(m)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains("rbuild-escape-new")
            })
            .collect();
        assert!(created.is_empty(), "the step created a host cgroup");
    }
}

#[test]
fn host_cgroups_cannot_be_killed_frozen_or_created_as_root() {
    cgroups(Builder::Root);
}

#[test]
fn host_cgroups_cannot_be_killed_frozen_or_created_as_user() {
    cgroups(Builder::User);
}

// Row 3: a setuid-root binary planted through a cache mount: before, identity mapping and no
// nosuid gave the host `<cache>/x` mode 4755 owned by 0, which another user ran as root.
fn setuid_cache(who: Builder) {
    let Some(a) = Armed::new("setuid_cache", who) else {
        return;
    };
    let cache = a.builders_dir("cache");
    let cache_mount = |fresh: bool| Mount {
        target: "/c".into(),
        kind: MountKind::Cache {
            source: cache.clone(),
            uid: 0,
            gid: 0,
            mode: 0o755,
            fresh,
        },
    };
    let mut spec = a.sh(
        "cp /probe /c/x && chown 0:0 /c/x && chmod 4755 /c/x && /c/x ids",
        "userns",
    );
    spec.mounts = vec![cache_mount(true)];
    let (code, out, err) = a.run(&spec, "userns");
    assert_eq!((code, out.as_str()), (0, "out: uid=0 euid=0\n"), "{err}");
    let planted = std::fs::symlink_metadata(cache.join("x")).unwrap();
    assert_ne!(planted.mode() & 0o4000, 0, "the attempt was made");
    for entry in walk(&cache) {
        let md = std::fs::symlink_metadata(&entry).unwrap();
        assert!(
            !(md.uid() == 0 && md.mode() & 0o6000 != 0),
            "{} is setuid/setgid and owned by host root",
            entry.display()
        );
        if who == Builder::Root {
            assert_ne!(md.uid(), 0, "{} belongs to host root", entry.display());
        }
    }
    // The bind is nosuid inside the step too: the planted file raises no one's privileges.
    let mut spec = a.sh("su app -c '/c/x ids'", "userns");
    spec.mounts = vec![cache_mount(false)];
    let (code, out, err) = a.run(&spec, "userns");
    assert_eq!(
        (code, out.as_str()),
        (0, "out: uid=1000 euid=1000\n"),
        "{err}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn no_setuid_root_file_through_a_cache_mount_as_root() {
    setuid_cache(Builder::Root);
}

#[test]
fn no_setuid_root_file_through_a_cache_mount_as_user() {
    setuid_cache(Builder::User);
}

/// A pseudo-terminal: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: both out-pointers are valid; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Whatever can be read from `fd` right now, without blocking.
fn drain(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 || pfd.revents & libc::POLLIN == 0 {
            break;
        }
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn inject(fd: &OwnedFd, text: &str) -> bool {
    text.bytes().all(|b| {
        // SAFETY: TIOCSTI reads one byte through the pointer, which is valid.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSTI, &b) == 0 }
    })
}

// Row 4: TIOCSTI. Before, the step shared rbuild's session and /dev/tty was the host's: it
// typed a command into the shell that started rbuild.
fn tiocsti(who: Builder) {
    let Some(a) = Armed::new("tiocsti", who) else {
        return;
    };
    let (master, slave) = openpty();
    // Armed: we can type into this terminal and read it back from its input queue.
    if !inject(&slave, "armed\n") || !drain(&slave).contains("armed") {
        cannot_arm("tiocsti", "TIOCSTI on a fresh pty does not work here");
        return;
    }
    let spec = a.sh("/probe tiocsti 'echo PWNED\n'", "userns");
    let mut cmd = a.command(&spec, "userns", &[]);
    let raw_slave = slave.as_raw_fd();
    let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    cmd.stdin(dup(&slave))
        .stdout(dup(&slave))
        .stderr(dup(&slave));
    // SAFETY: between fork and exec only async-signal-safe calls: setsid and ioctl.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(raw_slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut shown = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        shown.push_str(&drain(&master));
    }
    let status = child.wait().unwrap();
    shown.push_str(&drain(&master));
    assert!(status.success(), "{shown}");
    assert!(shown.contains("open /dev/tty: "), "{shown}");
    assert!(!shown.contains("open /dev/tty: ok"), "{shown}");
    let typed = drain(&slave);
    assert!(
        !typed.contains("PWNED"),
        "the step typed into the builder's terminal: {typed:?}"
    );
}

#[test]
fn a_step_cannot_type_into_the_builders_terminal_as_root() {
    tiocsti(Builder::Root);
}

#[test]
fn a_step_cannot_type_into_the_builders_terminal_as_user() {
    tiocsti(Builder::User);
}

// Row 5: keyrings. Before, the step kept the builder's session keyring and read its keys.
fn keys(who: Builder) {
    let Some(a) = Armed::new("keys", who) else {
        return;
    };
    let (name, value) = (unique("key"), unique("value"));
    let probe = a.probe.display().to_string();
    // Armed: the builder, as started, holds the key.
    let mut check = match who {
        Builder::Root => Command::new(&probe),
        Builder::User => {
            let mut c = Command::new("runuser");
            c.args(["-u", USER, "--", &probe]);
            c
        }
    };
    let armed = check
        .args(["addkey", &name, &value, &probe, "keys", &name])
        .output()
        .unwrap();
    let armed = String::from_utf8_lossy(&armed.stdout);
    if !armed.contains(&format!("request_key: ok key={value}")) {
        cannot_arm(
            "keys",
            &format!("the builder cannot hold a key here: {armed}"),
        );
        return;
    }
    let spec = a.sh(&format!("/probe keys {name}"), "userns");
    let out = a
        .command(&spec, "userns", &[&probe, "addkey", &name, &value])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("out: request_key: "), "{stdout}");
    assert!(
        !stdout.contains(&value),
        "the step read the builder's key: {stdout}"
    );
}

#[test]
fn the_builders_keys_are_out_of_reach_as_root() {
    keys(Builder::Root);
}

#[test]
fn the_builders_keys_are_out_of_reach_as_user() {
    keys(Builder::User);
}

// Row 6: chroot escape. Before, chroot mode chrooted without pivot_root and kept
// CAP_SYS_CHROOT: chroot("/esc"), chdir("..") x100, chroot(".") reached the host's `/`.
fn chroot_escape(who: Builder, isolation: &str) {
    let Some(a) = Armed::new("chroot_escape", who) else {
        return;
    };
    let canary = unique("canary");
    let file = a.builders_private_file("config.json", &canary);
    let spec = a.sh(
        &format!("/probe chroot-escape {}", file.display()),
        isolation,
    );
    let (code, out, err) = a.run(&spec, isolation);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("out: chroot /esc: "), "{out}");
    assert!(
        !out.contains(&canary),
        "the step read the builder's file: {out}"
    );
    if isolation == "chroot" {
        // CAP_SYS_CHROOT is gone: the trick does not even start.
        assert!(
            out.contains("chroot /esc: Operation not permitted"),
            "{out}"
        );
    }
}

#[test]
fn chroot_tricks_do_not_reach_the_host_in_chroot_mode() {
    chroot_escape(Builder::Root, "chroot");
}

#[test]
fn chroot_tricks_do_not_reach_the_host_in_userns_mode_as_root() {
    chroot_escape(Builder::Root, "userns");
}

#[test]
fn chroot_tricks_do_not_reach_the_host_in_userns_mode_as_user() {
    chroot_escape(Builder::User, "userns");
}

/// Installs a seccomp filter refusing new user namespaces (`unshare` and `clone` with
/// `CLONE_NEWUSER`) in the child before it execs, as a container runtime's profile does.
fn block_userns(cmd: &mut Command) {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    let flag = libc::CLONE_NEWUSER as u64;
    let cond = || {
        SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )
        .unwrap()])
        .unwrap()
    };
    let rules = [
        (libc::SYS_unshare, vec![cond()]),
        (libc::SYS_clone, vec![cond()]),
    ]
    .into_iter()
    .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    let program: BpfProgram = filter.try_into().unwrap();
    // SAFETY: between fork and exec the closure only installs the prepared filter (prctl
    // and seccomp system calls).
    unsafe {
        cmd.pre_exec(move || seccompiler::apply_filter(&program).map_err(std::io::Error::other));
    }
}

// Row 7: with user namespaces blocked, `auto` silently picked chroot and row 6 worked.
fn blocked_userns(who: Builder) {
    let Some(a) = Armed::new("blocked_userns", who) else {
        return;
    };
    let mut cmd = match who {
        Builder::Root => Command::new(&a.helper),
        Builder::User => {
            let mut c = Command::new("runuser");
            c.args(["-u", USER, "--"]).arg(&a.helper);
            c
        }
    };
    cmd.arg("detect");
    block_userns(&mut cmd);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(out.stdout.is_empty(), "no mode was chosen");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("user namespaces do not work here"), "{err}");
    assert!(err.contains("a seccomp profile"), "{err}");
    if who == Builder::Root {
        assert!(err.contains("pass --isolation chroot"), "{err}");
    }
    // The same builder with the same filter, asked for chroot explicitly, gets it.
    if who == Builder::Root {
        let mut cmd = Command::new(&a.helper);
        cmd.args(["detect", "--isolation", "chroot"]);
        block_userns(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("chroot "),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn auto_stops_instead_of_falling_back_when_userns_is_blocked_as_root() {
    blocked_userns(Builder::Root);
}

#[test]
fn auto_stops_instead_of_falling_back_when_userns_is_blocked_as_user() {
    blocked_userns(Builder::User);
}

/// Files under `dir` (not following links) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
                && std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

// Row 8: a secret given as bytes sat in `<cache-dir>/.rbuild-work/run-*/secrets/secret-0`,
// and stayed there after a SIGKILL of rbuild.
fn secret_after_kill(who: Builder) {
    let Some(a) = Armed::new("secret_after_kill", who) else {
        return;
    };
    let secret = unique("secret");
    // Each builder's step is told apart by its sleep (the two tests run at once).
    let sleep = format!("sleep {}", if who == Builder::Root { 1017 } else { 1018 });
    let mut spec = a.sh(
        &format!("test -s /run/secrets/s && echo ready; exec {sleep}"),
        "userns",
    );
    spec.mounts = vec![Mount {
        target: "/run/secrets/s".into(),
        kind: MountKind::Secret {
            content: SecretBytes(secret.as_bytes().to_vec()),
            uid: 0,
            gid: 0,
            mode: 0o400,
        },
    }];
    let mut child = a
        .command(&spec, "userns", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "out: ready");
    // While the step runs, the secret is on no disk the host sees (the spec file holds it
    // only because this test hands specs over as files: it is removed first).
    std::fs::remove_file(a.fx.tmp.path().join("spec.json")).unwrap();
    assert_eq!(
        files_containing(a.fx.tmp.path(), secret.as_bytes()),
        Vec::<PathBuf>::new()
    );
    // kill -9 of the builder: everything of the step goes, and nothing is left behind.
    let driver = match who {
        Builder::Root => child.id(),
        // The helper binary as runuser started it (its re-executed child in the user
        // namespace runs as /proc/self/exe).
        Builder::User => *pids_with_cmdline(&format!("{} run", a.helper.display()))
            .iter()
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with(a.helper.as_os_str().as_encoded_bytes()))
            })
            .expect("the builder's process"),
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(driver as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids_with_cmdline(&sleep).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        pids_with_cmdline(&sleep).is_empty(),
        "the step outlived its builder"
    );
    let _ = child.wait();
    let _ = lines.by_ref().count();
    assert_eq!(
        files_containing(a.fx.tmp.path(), secret.as_bytes()),
        Vec::<PathBuf>::new()
    );
    let mut all = String::new();
    std::fs::File::open("/proc/self/mountinfo")
        .unwrap()
        .read_to_string(&mut all)
        .unwrap();
    assert!(
        !all.contains(a.fx.tmp.path().to_str().unwrap()),
        "a mount was left: {all}"
    );
}

#[test]
fn a_secret_never_touches_the_disk_even_after_kill_9_as_root() {
    secret_after_kill(Builder::Root);
}

#[test]
fn a_secret_never_touches_the_disk_even_after_kill_9_as_user() {
    secret_after_kill(Builder::User);
}

// Network: `--network sandbox` gives a step a network of its own (slirp4netns) that reaches
// out but not the host's loopback services or abstract sockets. (The default stays the host's
// network, as Kaniko's: the README says so.)
fn network_sandbox(who: Builder) {
    use std::os::linux::net::SocketAddrExt;
    let Some(a) = Armed::new("network_sandbox", who) else {
        return;
    };
    if rbuild_sandbox::find_in_path("slirp4netns").is_none() {
        cannot_arm("network_sandbox", "slirp4netns is not installed");
        return;
    }
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let name = unique("abstract");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let unix = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    unix.set_nonblocking(true).unwrap();
    let script = format!(
        "/probe connect 127.0.0.1 {port}; /probe connect-abstract {name}; \
         /probe connect 10.0.2.2 {port}; cat /etc/resolv.conf 2>/dev/null; \
         grep -c '^tap0\t00000000' /proc/net/route; true"
    );
    // Armed: on the host's network the same probe reaches both listeners.
    let (code, out, err) = a.run(&a.sh(&script, "userns"), "userns");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("out: connect: ok\nout: connect-abstract: ok\n"),
        "{out}"
    );
    while tcp.accept().is_ok() {}
    while unix.accept().is_ok() {}
    let mut spec = a.sh(&script, "userns");
    spec.network = rbuild_sandbox::Network::Sandbox;
    let (code, out, err) = a.run(&spec, "userns");
    if !tun_usable_by(who) {
        // Where the builder cannot open /dev/net/tun, the step never runs: one clear line.
        assert_eq!(code, 125, "{out}{err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains("cannot open /dev/net/tun"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        return;
    }
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}{err}");
    assert_eq!(lines[0], "out: connect: Connection refused", "own loopback");
    assert_eq!(lines[1], "out: connect-abstract: Connection refused");
    assert!(
        lines[2].starts_with("out: connect: ") && lines[2] != "out: connect: ok",
        "the host's loopback through the gateway: {out}"
    );
    assert_eq!(
        lines[3..],
        ["out: nameserver 10.0.2.3", "out: 1"],
        "{out}{err}"
    );
    assert!(
        tcp.accept().is_err(),
        "the step reached the host's loopback"
    );
    assert!(
        unix.accept().is_err(),
        "the step reached a host abstract socket"
    );
}

/// Whether the builder may open /dev/net/tun (Debian: 0666; some hosts make it root's only).
fn tun_usable_by(who: Builder) -> bool {
    match who {
        Builder::Root => true,
        Builder::User => Command::new("runuser")
            .args(["-u", USER, "--", "sh", "-c", "exec 3<>/dev/net/tun"])
            .status()
            .is_ok_and(|s| s.success()),
    }
}

#[test]
fn the_sandbox_network_keeps_host_loopback_and_abstract_sockets_out_as_root() {
    network_sandbox(Builder::Root);
}

#[test]
fn the_sandbox_network_keeps_host_loopback_and_abstract_sockets_out_as_user() {
    network_sandbox(Builder::User);
}
