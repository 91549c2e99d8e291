//! Chroot mode (real root, no user namespace): a materialised rootfs changed in place.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use rbuild_sandbox::{Isolation, Mount, MountKind, RootFs, SandboxError};

fn dir_spec(fx: &Fixture, script: &str) -> rbuild_sandbox::RunSpec {
    let mut spec = fx.sh(script);
    spec.root = RootFs::Dir(fx.lower.clone());
    spec
}

#[test]
fn chroot_step_changes_the_rootfs_in_place() {
    if !have_root("chroot_step_changes_the_rootfs_in_place") {
        return;
    }
    let fx = Fixture::new();
    let sb = sandbox(Isolation::Chroot);
    assert!(!sb.supports_overlay());
    let secret = fx.tmp.path().join("secret");
    std::fs::write(&secret, "pw").unwrap();
    let mut spec = dir_spec(
        &fx,
        "echo hi > /x && chown 100:101 /x && cat /run/secrets/s && echo && ls /proc/self/ >/dev/null && echo $$; exit 42",
    );
    spec.mounts = vec![Mount {
        target: "/run/secrets/s".into(),
        kind: MountKind::Secret {
            content: rbuild_sandbox::SecretBytes(std::fs::read(&secret).unwrap()),
            uid: 0,
            gid: 0,
            mode: 0o400,
        },
    }];
    let ran = run(&sb, &spec);
    assert_eq!(
        (ran.status.code, ran.stdout.as_str()),
        (42, "pw\n2\n"),
        "{ran:?}"
    );
    let md = std::fs::metadata(fx.lower.join("x")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100, 101));
    for stub in ["proc", "dev", "sys", "run"] {
        assert!(
            !fx.lower.join(stub).exists(),
            "mount point /{stub} left in the rootfs"
        );
    }
    let ran = run(&sb, &dir_spec(&fx, "sleep 1006 & echo bg"));
    assert_eq!(ran.stdout, "bg\n");
    assert!(pids_with_cmdline("sleep 1006").is_empty());
}

#[test]
fn chroot_mode_refuses_an_overlay_root() {
    if !have_root("chroot_mode_refuses_an_overlay_root") {
        return;
    }
    let fx = Fixture::new();
    let err = sandbox(Isolation::Chroot)
        .run(&fx.sh("true"), |_| {})
        .unwrap_err();
    assert!(matches!(err, SandboxError::InvalidSpec(_)), "{err}");
    assert!(err.to_string().contains("materialised rootfs"), "{err}");
}
