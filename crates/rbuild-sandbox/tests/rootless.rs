//! The same steps run by a freshly created non-root user with subordinate id ranges: the
//! builder is that user, the helper maps ids with newuidmap/newgidmap.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use common::*;
use rbuild_sandbox::idmap::{IdMapPlan, MapMethod};

#[test]
fn rootless_chown_and_user_map_to_subordinate_ids_and_translate_back() {
    if !have_root("rootless_chown_and_user_map_to_subordinate_ids_and_translate_back") {
        return;
    }
    let ufx = UserFixture::new();
    let fx = &ufx.fx;
    std::fs::write(fx.lower.join("etc/old"), "old").unwrap();
    std::fs::create_dir_all(fx.lower.join("data")).unwrap();
    std::fs::write(fx.lower.join("data/a"), "a").unwrap();
    chown_r(&fx.lower, test_user());
    let spec = fx.sh(
        "id -u; touch /owned && chown 100:101 /owned && mkdir -m 1777 /shared && \
         su app -c 'touch /shared/by-app' && rm /etc/old && rm -rf /data && mkdir /data; exit 42",
    );
    let (code, out, err) = ufx.run_as_user(&spec, &[]);
    assert_eq!((code, out.as_str()), (42, "out: 0\n"), "{err}");

    let plan = IdMapPlan::for_host(test_user(), false);
    assert_eq!(plan.method, MapMethod::NewIdMap);
    let map = &plan.map;
    let owned = std::fs::metadata(fx.upper.join("owned")).unwrap();
    assert_ne!(owned.uid(), 100, "outside, the id is a subordinate one");
    assert_eq!(Some(owned.uid()), map.uid_to_host(100));
    assert_eq!(
        (
            map.uid_to_container(owned.uid()),
            map.gid_to_container(owned.gid())
        ),
        (Some(100), Some(101))
    );
    let by_app = std::fs::metadata(fx.upper.join("shared/by-app")).unwrap();
    assert_eq!(
        (
            map.uid_to_container(by_app.uid()),
            map.gid_to_container(by_app.gid())
        ),
        (Some(1000), Some(1000))
    );
    let shared = std::fs::metadata(fx.upper.join("shared")).unwrap();
    assert_eq!(
        (shared.uid(), map.uid_to_container(shared.uid())),
        (test_user().uid, Some(0))
    );
    let wh = std::fs::symlink_metadata(fx.upper.join("etc/old")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr(&fx.upper.join("data"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn rootless_step_is_confined_and_background_jobs_do_not_hang() {
    if !have_root("rootless_step_is_confined_and_background_jobs_do_not_hang") {
        return;
    }
    let ufx = UserFixture::new();
    let fx = &ufx.fx;
    let creds = fx.tmp.path().join("config.json");
    std::fs::write(&creds, "{\"auths\":{}}").unwrap();
    let resolv = fx.tmp.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.53\n").unwrap();
    std::fs::set_permissions(&resolv, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut spec = fx.sh(&format!(
        "cat {} 2>/dev/null && echo LEAK; {{ echo x > /etc/resolv.conf; }} 2>/dev/null || echo resolv-ro; \
         sleep 1010 & echo done",
        creds.display()
    ));
    spec.etc.resolv_conf = Some(resolv);
    let (code, out, err) = ufx.run_as_user(&spec, &[]);
    assert_eq!(
        (code, out.as_str()),
        (0, "out: resolv-ro\nout: done\n"),
        "{err}"
    );
    assert!(pids_with_cmdline("sleep 1010").is_empty());
    assert!(!fx.upper.join("etc/resolv.conf").exists());
}

#[test]
fn rootless_single_id_fallback() {
    if !have_root("rootless_single_id_fallback") {
        return;
    }
    let ufx = UserFixture::new();
    let spec = ufx
        .fx
        .sh("id -u; touch /f; chown 100 /f 2>/dev/null || echo chown-failed");
    let (code, out, err) = ufx.run_as_user(&spec, &["--single-id"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "out: 0\nout: chown-failed\n"),
        "{err}"
    );
    let f = std::fs::metadata(ufx.fx.upper.join("f")).unwrap();
    assert_eq!(f.uid(), test_user().uid);
}

#[test]
fn rootless_builder_inside_its_own_user_namespace_sees_the_steps_ids() {
    if !have_root("rootless_builder_inside_its_own_user_namespace_sees_the_steps_ids") {
        return;
    }
    let ufx = UserFixture::new();
    let fx = &ufx.fx;
    let owned = fx.upper.join("owned");
    let spec = fx.sh("touch /owned && chown 100:101 /owned && chmod 600 /owned && id -u");
    let (code, out, err) = ufx.run_as_user(
        &spec,
        &["--rootless-userns", "--stat", owned.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!("out: 0\nstat: 100:101 {}\n", owned.display()),
        "{err}"
    );
    let map = IdMapPlan::for_host(test_user(), false).map;
    let md = std::fs::metadata(&owned).unwrap();
    assert_eq!(
        (Some(md.uid()), Some(md.gid())),
        (map.uid_to_host(100), map.gid_to_host(101))
    );
}
