//! Mode detection, and the one message when no mode works.

mod common;

use std::process::Command;

use common::*;
use rbuild_sandbox::{Isolation, Sandbox};

#[test]
fn root_with_user_namespaces_gets_userns() {
    if !have_root("root_with_user_namespaces_gets_userns") {
        return;
    }
    let sb = Sandbox::builder().helper(HELPER).build().unwrap();
    assert_eq!(sb.isolation(), Isolation::Userns);
    assert!(sb.supports_overlay());
    assert!(sb.probe().unwrap().fresh_proc);
}

#[test]
fn neither_mode_possible_gives_one_message_with_cause_and_fix() {
    if !have_root("neither_mode_possible_gives_one_message_with_cause_and_fix") {
        return;
    }
    // Inside a user namespace of our own: forbid further user namespaces, and drop every
    // capability so chroot fails too.
    let out = Command::new("unshare")
        .args(["-U", "--map-root-user", "sh", "-c"])
        .arg(format!(
            "echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --bounding-set -all --inh-caps -all {HELPER} detect"
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in [
        "user namespaces do not work here",
        "user.max_user_namespaces=0",
        "sysctl user.max_user_namespaces=15000",
        "unshare(CLONE_NEWUSER)",
        // `auto` never falls back to chroot: it names it as the explicit, weaker choice.
        "pass --isolation chroot",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in {err}");
    }
}

#[test]
fn forcing_an_unknown_mode_is_a_clear_error() {
    let out = Command::new(HELPER)
        .args(["detect", "--isolation", "jail"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("isolation \"jail\": expected \"userns\" or \"chroot\""),
        "{err}"
    );
}

#[test]
fn a_masked_proc_falls_back_to_binding_the_hosts_proc() {
    if !have_root("a_masked_proc_falls_back_to_binding_the_hosts_proc") {
        return;
    }
    // As container runtimes do: something mounted over a /proc file makes the kernel refuse a
    // fresh proc mount in a user namespace.
    let fx = Fixture::new();
    let spec_file = fx.tmp.path().join("spec.json");
    let spec = fx.sh("echo $$; readlink /proc/self; cat /proc/kallsyms 2>/dev/null | wc -c");
    std::fs::write(&spec_file, serde_json::to_string(&spec).unwrap()).unwrap();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind /dev/null /proc/kallsyms && {HELPER} detect --isolation userns && exec {HELPER} run {} --isolation userns",
            spec_file.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "userns fresh_proc=false overlay=true");
    assert_eq!(
        lines[1], "out: 2",
        "the step is still in its own PID namespace"
    );
    assert_ne!(
        lines[2], "out: 2",
        "/proc is the host's: it names the step by its host pid"
    );
    assert_eq!(lines[3], "out: 0", "the host's masks stay in place");
    assert!(fx.upper_entries().is_empty(), "{:?}", fx.upper_entries());
}
