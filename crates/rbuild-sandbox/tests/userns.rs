//! Steps in user namespaces over an overlay, run as root (identity id map).

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use rbuild_sandbox::{EtcFiles, Isolation, Mount, MountKind, Network};

#[test]
fn echo_and_exit_code() {
    if !have_root("echo_and_exit_code") {
        return;
    }
    let fx = Fixture::new();
    let sb = sandbox(Isolation::Userns);
    let ran = run(
        &sb,
        &fx.sh(
            "echo hello; echo oops >&2; id -u; hostname; grep CapEff /proc/self/status; exit 42",
        ),
    );
    assert_eq!(ran.status.code, 42, "{ran:?}");
    // Root in the step holds Docker's default capabilities, no more.
    assert_eq!(ran.stdout, "hello\n0\nrbuild\nCapEff:\t00000000a80425fb\n");
    assert_eq!(ran.stderr, "oops\n");
    assert!(
        fx.upper_entries().is_empty(),
        "a step that writes nothing changes nothing: {:?}",
        fx.upper_entries()
    );
}

#[test]
fn chown_and_user_ids_land_in_the_upper_dir() {
    if !have_root("chown_and_user_ids_land_in_the_upper_dir") {
        return;
    }
    let fx = Fixture::new();
    let sb = sandbox(Isolation::Userns);
    let ran = run(
        &sb,
        &fx.sh("touch /owned && chown 100:101 /owned && mkdir -m 1777 /shared"),
    );
    assert_eq!(ran.status.code, 0, "{ran:?}");
    let mut spec = fx.sh("touch /shared/by-app && id -u && id -g && id -G && echo $HOME");
    spec.user = "app".into();
    let ran = run(&sb, &spec);
    assert_eq!(ran.status.code, 0, "{ran:?}");
    assert_eq!(ran.stdout, "1000\n1000\n1000 50\n/home/app\n");
    let owned = std::fs::metadata(fx.upper.join("owned")).unwrap();
    let map = sb.id_map();
    assert_eq!(
        (
            map.uid_to_container(owned.uid()),
            map.gid_to_container(owned.gid())
        ),
        (Some(100), Some(101))
    );
    // Real root's steps run in a shifted range: never host root, never the step's ids as
    // they are on the host.
    assert_eq!(
        (owned.uid(), owned.gid()),
        (map.uid_to_host(100).unwrap(), map.gid_to_host(101).unwrap())
    );
    assert!(owned.uid() > 65_535 && map.uid_to_container(0).is_none());
    let by_app = std::fs::metadata(fx.upper.join("shared/by-app")).unwrap();
    assert_eq!(
        (
            map.uid_to_container(by_app.uid()),
            map.gid_to_container(by_app.gid())
        ),
        (Some(1000), Some(1000))
    );
}

#[test]
fn the_step_cannot_see_the_host_and_etc_files_stay_out_of_the_upper_dir() {
    if !have_root("the_step_cannot_see_the_host_and_etc_files_stay_out_of_the_upper_dir") {
        return;
    }
    let fx = Fixture::new();
    let creds = fx.tmp.path().join("credentials.json");
    std::fs::write(&creds, "{\"auths\":{\"r\":{\"auth\":\"c2VjcmV0\"}}}").unwrap();
    let hosts = fx.tmp.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost sandbox-host\n").unwrap();
    let resolv = fx.tmp.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.53\n").unwrap();
    let sb = sandbox(Isolation::Userns);
    let mut spec = fx.sh(&format!(
        "cat {creds} 2>/dev/null && echo LEAK; \
         ls {tmp} 2>/dev/null && echo LEAK; \
         ls /work /usr/bin 2>/dev/null && echo LEAK; \
         cat /etc/hosts; cat /etc/resolv.conf; \
         echo 'nameserver 6.6.6.6' > /etc/resolv.conf || echo resolv-ro; \
         echo x >> /etc/hosts || echo hosts-ro; \
         ls /proc/1/root/ >/dev/null; grep -c rbuild-host /proc/self/mountinfo; true",
        creds = creds.display(),
        tmp = fx.tmp.path().display()
    ));
    spec.etc = EtcFiles {
        hosts: Some(hosts),
        resolv_conf: Some(resolv.clone()),
        hostname: None,
    };
    let ran = run(&sb, &spec);
    assert_eq!(ran.status.code, 0, "{ran:?}");
    assert!(
        !ran.stdout.contains("LEAK") && !ran.stdout.contains("auths"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("sandbox-host"), "{ran:?}");
    assert!(ran.stdout.contains("nameserver 127.0.0.53\n"), "{ran:?}");
    assert!(
        ran.stdout.contains("resolv-ro") && ran.stdout.contains("hosts-ro"),
        "{ran:?}"
    );
    assert!(
        ran.stdout.ends_with("0\n"),
        "no trace of the host root in mountinfo: {ran:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "nameserver 127.0.0.53\n"
    );
    // The missing /etc/resolv.conf needed a mount point: it is gone again, and /etc (copied up
    // to hold it) is left empty with the lower layer's mtime, i.e. unchanged.
    assert!(
        fx.upper_entries().iter().all(|e| e == "etc"),
        "{:?}",
        fx.upper_entries()
    );
    if fx.upper.join("etc").exists() {
        assert_eq!(std::fs::read_dir(fx.upper.join("etc")).unwrap().count(), 0);
        let (up, low) = (
            std::fs::metadata(fx.upper.join("etc")).unwrap(),
            std::fs::metadata(fx.lower.join("etc")).unwrap(),
        );
        assert_eq!(
            (
                up.mtime(),
                up.mtime_nsec(),
                up.mode(),
                sb.id_map().uid_to_container(up.uid())
            ),
            (low.mtime(), low.mtime_nsec(), low.mode(), Some(low.uid()))
        );
    }
}

#[test]
fn background_processes_die_with_the_step_and_signals_give_128_plus_n() {
    if !have_root("background_processes_die_with_the_step_and_signals_give_128_plus_n") {
        return;
    }
    let fx = Fixture::new();
    let sb = sandbox(Isolation::Userns);
    let ran = run(
        &sb,
        &fx.sh("sleep 1001 & sleep 1002 </dev/null >/dev/null 2>&1 & echo started"),
    );
    assert_eq!((ran.status.code, ran.stdout.as_str()), (0, "started\n"));
    assert!(
        pids_with_cmdline("sleep 1001").is_empty() && pids_with_cmdline("sleep 1002").is_empty()
    );
    let ran = run(&sb, &fx.sh("kill -9 $$"));
    assert_eq!(ran.status.code, 137);
    let ran = run(&sb, &fx.sh("echo $$; ps -o pid,comm | wc -l"));
    assert_eq!(
        ran.stdout.lines().next(),
        Some("2"),
        "the step is pid 2 under our init: {ran:?}"
    );
}

#[test]
fn a_killed_helper_leaves_no_process_and_no_mount() {
    if !have_root("a_killed_helper_leaves_no_process_and_no_mount") {
        return;
    }
    let fx = Fixture::new();
    let spec_file = fx.tmp.path().join("spec.json");
    let spec = fx.sh("sleep 1003 & echo ready; sleep 1004");
    std::fs::write(&spec_file, serde_json::to_string(&spec).unwrap()).unwrap();
    let mut driver = std::process::Command::new(HELPER)
        .args(["run", spec_file.to_str().unwrap(), "--isolation", "userns"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(driver.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "out: ready\n");
    let helpers: Vec<u32> = pids_with_cmdline(rbuild_sandbox::HELPER_MARKER)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .unwrap_or_default()
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(driver.id())
        })
        .collect();
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helpers[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = driver.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(driver.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("error:"), "{err}");
    // The init dies with its parent (PDEATHSIG) and takes the PID namespace with it.
    for _ in 0..200 {
        if pids_with_cmdline("sleep 1003").is_empty() && pids_with_cmdline("sleep 1004").is_empty()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        pids_with_cmdline("sleep 1003").is_empty() && pids_with_cmdline("sleep 1004").is_empty()
    );
    let scratch = fx.scratch.to_string_lossy().into_owned();
    assert!(host_mount_points().iter().all(|m| !m.starts_with(&scratch)));
    // The upper dir of a killed step is discarded by the engine: it may hold mount points.
}

#[test]
fn deleting_gives_a_whiteout_and_replacing_a_dir_gives_an_opaque_dir() {
    if !have_root("deleting_gives_a_whiteout_and_replacing_a_dir_gives_an_opaque_dir") {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.lower.join("data/sub")).unwrap();
    std::fs::write(fx.lower.join("data/a"), "a").unwrap();
    std::fs::write(fx.lower.join("etc/old"), "old").unwrap();
    let sb = sandbox(Isolation::Userns);
    let ran = run(
        &sb,
        &fx.sh("rm /etc/old && rm -rf /data && mkdir /data && echo n > /data/new"),
    );
    assert_eq!(ran.status.code, 0, "{ran:?}");
    let wh = std::fs::symlink_metadata(fx.upper.join("etc/old")).unwrap();
    assert!(wh.file_type().is_char_device(), "{wh:?}");
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        xattr(&fx.upper.join("data"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        std::fs::read_to_string(fx.upper.join("data/new")).unwrap(),
        "n\n"
    );
    assert!(!fx.upper.join("data/a").exists());
}

#[test]
fn many_lowers_with_long_paths_stack_in_order() {
    if !have_root("many_lowers_with_long_paths_stack_in_order") {
        return;
    }
    let fx = Fixture::new();
    let mut lowers = vec![fx.lower.clone()];
    let long = "a-rather-long-directory-name-as-a-content-store-would-use-for-a-layer-sha256";
    for i in 0..100 {
        let l = fx.tmp.path().join(format!("{long}-{i:03}"));
        std::fs::create_dir_all(l.join("layers")).unwrap();
        std::fs::write(l.join("layers").join(format!("{i}")), "").unwrap();
        std::fs::write(l.join("top"), format!("{i}")).unwrap();
        lowers.push(l);
    }
    let mut spec = fx.sh("cat /top; ls /layers | wc -l");
    spec.root = rbuild_sandbox::RootFs::Overlay {
        lowers,
        upper: fx.upper.clone(),
    };
    let ran = run(&sandbox(Isolation::Userns), &spec);
    assert_eq!(
        (ran.status.code, ran.stdout.as_str()),
        (0, "99100\n"),
        "{ran:?}"
    );
}

#[test]
fn every_mount_type_and_none_of_them_in_the_upper_dir() {
    if !have_root("every_mount_type_and_none_of_them_in_the_upper_dir") {
        return;
    }
    let fx = Fixture::new();
    let t = fx.tmp.path();
    let cache = t.join("cache");
    std::fs::create_dir(&cache).unwrap();
    let ctx = t.join("context");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("src.txt"), "from context\n").unwrap();
    let secret = t.join("token");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let mut spec = fx.sh(
        "echo cached > /var/cache/app/hit && stat -c '%u %g %a' /var/cache/app; \
         cat /ctx/src.txt; echo x > /ctx/new 2>/dev/null || echo ctx-ro; \
         echo w > /rw/new && cat /rw/new /rw/src.txt; \
         echo t > /scratchpad/t && cat /scratchpad/t; \
         stat -c '%u %g %a' /run/secrets/token; test \"$(cat /run/secrets/token)\" = s3cr3t-value && echo secret-ok; \
         su app -c 'cat /run/secrets/token' >/dev/null 2>&1 || echo app-cannot-read; \
         cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '",
    );
    let m = |target: &str, kind| Mount {
        target: target.into(),
        kind,
    };
    spec.mounts = vec![
        m(
            "/var/cache/app",
            MountKind::Cache {
                source: cache.clone(),
                uid: 1000,
                gid: 50,
                mode: 0o750,
                fresh: true,
            },
        ),
        m(
            "/ctx",
            MountKind::Bind {
                source: ctx.clone(),
                readwrite: false,
            },
        ),
        m(
            "/rw",
            MountKind::Bind {
                source: ctx.clone(),
                readwrite: true,
            },
        ),
        m(
            "/scratchpad",
            MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        ),
        m(
            "/run/secrets/token",
            MountKind::Secret {
                content: rbuild_sandbox::SecretBytes(std::fs::read(&secret).unwrap()),
                uid: 0,
                gid: 0,
                mode: 0o400,
            },
        ),
    ];
    spec.network = Network::None;
    let ran = run(&sandbox(Isolation::Userns), &spec);
    assert_eq!(ran.status.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout,
        "1000 50 750\nfrom context\nctx-ro\nw\nfrom context\nt\n0 0 400\nsecret-ok\napp-cannot-read\nlo\n"
    );
    assert_eq!(
        std::fs::read_to_string(cache.join("hit")).unwrap(),
        "cached\n"
    );
    assert!(!ctx.join("new").exists(), "rw bind writes are discarded");
    // Mount points the sandbox created (/var/cache/app, /ctx, /rw, /scratchpad, /run/secrets…)
    // are gone; nothing else was written.
    assert!(fx.upper_entries().is_empty(), "{:?}", fx.upper_entries());
}

#[test]
fn workdir_is_created_root_owned_and_kept_and_exec_form_uses_the_image_path() {
    if !have_root("workdir_is_created_root_owned_and_kept_and_exec_form_uses_the_image_path") {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.sh("");
    spec.argv = vec!["pwd".into()];
    spec.cwd = "/app/src".into();
    spec.user = "app".into();
    spec.env = vec!["PATH=/nowhere:/bin".into()];
    let sb = sandbox(Isolation::Userns);
    let ran = run(&sb, &spec);
    assert_eq!(
        (ran.status.code, ran.stdout.as_str()),
        (0, "/app/src\n"),
        "{ran:?}"
    );
    let md = std::fs::metadata(fx.upper.join("app/src")).unwrap();
    assert_eq!(
        (sb.id_map().uid_to_container(md.uid()), md.mode() & 0o7777),
        (Some(0), 0o755)
    );
    spec.argv = vec!["no-such-tool".into()];
    let err = sandbox(Isolation::Userns)
        .run(&spec, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"no-such-tool\": executable file not found in $PATH"),
        "{err}"
    );
    spec.user = "ghost".into();
    let err = sandbox(Isolation::Userns).run(&spec, |_| {}).unwrap_err();
    assert!(
        matches!(err, rbuild_sandbox::SandboxError::User(_)),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("unable to find user \"ghost\""), "{err}");
}

#[test]
fn single_id_fallback_runs_as_root_but_cannot_chown() {
    if !have_root("single_id_fallback_runs_as_root_but_cannot_chown") {
        return;
    }
    let fx = Fixture::new();
    let sb = rbuild_sandbox::Sandbox::builder()
        .helper(HELPER)
        .isolation(Isolation::Userns)
        .force_single_id(true)
        .build()
        .unwrap();
    let ran = run(
        &sb,
        &fx.sh("id -u; touch /f; chown 100:101 /f 2>/dev/null || echo chown-failed"),
    );
    assert_eq!(
        (ran.status.code, ran.stdout.as_str()),
        (0, "0\nchown-failed\n"),
        "{ran:?}"
    );
    let mut spec = fx.sh("true");
    spec.user = "1000".into();
    let err = sb.run(&spec, |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("uid 1000 does not exist in this user namespace (the step's ids are 0-0;"),
        "{err}"
    );
}

#[test]
fn a_dead_builder_takes_its_steps_with_it() {
    if !have_root("a_dead_builder_takes_its_steps_with_it") {
        return;
    }
    let fx = Fixture::new();
    let spec_file = fx.tmp.path().join("spec.json");
    std::fs::write(
        &spec_file,
        serde_json::to_string(&fx.sh("echo ready; sleep 1007")).unwrap(),
    )
    .unwrap();
    let mut driver = std::process::Command::new(HELPER)
        .args(["run", spec_file.to_str().unwrap(), "--isolation", "userns"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(driver.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "out: ready\n");
    driver.kill().unwrap();
    driver.wait().unwrap();
    // No timing assumption: EOF on the step's output means every holder of the pipe is gone.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    for _ in 0..200 {
        if pids_with_cmdline(rbuild_sandbox::HELPER_MARKER)
            .iter()
            .all(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map_or(true, |s| s.contains(") Z"))
            })
            && pids_with_cmdline("sleep 1007").is_empty()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(pids_with_cmdline("sleep 1007").is_empty());
}

#[test]
fn cancelling_a_step_kills_all_its_processes() {
    if !have_root("cancelling_a_step_kills_all_its_processes") {
        return;
    }
    let fx = Fixture::new();
    let sb = sandbox(Isolation::Userns);
    let cancel = rbuild_sandbox::CancelHandle::new();
    let mut seen = Vec::new();
    let err = sb
        .run_cancellable(
            &fx.sh("sleep 1008 & echo ready; sleep 1009"),
            &cancel,
            |l| {
                seen.push(String::from_utf8_lossy(l.bytes).into_owned());
                cancel.cancel();
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, rbuild_sandbox::SandboxError::Cancelled),
        "{err}"
    );
    assert_eq!(seen, vec!["ready".to_owned()]);
    assert!(
        pids_with_cmdline("sleep 1008").is_empty() && pids_with_cmdline("sleep 1009").is_empty()
    );
}

#[test]
fn the_builders_environment_does_not_reach_the_step() {
    if !have_root("the_builders_environment_does_not_reach_the_step") {
        return;
    }
    let fx = Fixture::new();
    let spec_file = fx.tmp.path().join("spec.json");
    let mut spec = fx.sh("env; cat /proc/1/environ /proc/1/cmdline; ls /proc/1/fd/ | wc -l; cat /proc/1/maps | head -1; echo end");
    spec.env = vec!["VISIBLE=yes".into()];
    std::fs::write(&spec_file, serde_json::to_string(&spec).unwrap()).unwrap();
    let out = std::process::Command::new(HELPER)
        .args(["run", spec_file.to_str().unwrap(), "--isolation", "userns"])
        .env("REGISTRY_PASSWORD", "hunter2-do-not-leak")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("VISIBLE=yes") && text.contains("out: end"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn the_step_gets_a_minimal_dev() {
    if !have_root("the_step_gets_a_minimal_dev") {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.sh(
        "ls /dev | tr '\\n' ' '; echo; echo x > /dev/null && head -c 5 /dev/urandom | wc -c; \
         echo s > /dev/shm/s && cat /dev/shm/s; test -c /dev/pts/ptmx && echo pts; \
         mknod /dev/sda b 8 0 2>/dev/null && head -c1 /dev/sda >/dev/null 2>&1 || echo no-disks",
    );
    spec.user = String::new();
    let ran = run(&sandbox(Isolation::Userns), &spec);
    assert_eq!(ran.status.code, 0, "{ran:?}");
    assert_eq!(
        ran.stdout,
        "fd full null ptmx pts random shm stderr stdin stdout urandom zero \n5\ns\npts\nno-disks\n"
    );
}

#[test]
fn a_materialised_rootfs_works_in_userns_mode_too() {
    if !have_root("a_materialised_rootfs_works_in_userns_mode_too") {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.sh("echo data > /made && rm /etc/hosts && echo $$");
    spec.root = rbuild_sandbox::RootFs::Dir(fx.lower.clone());
    let ran = run(&sandbox(Isolation::Userns), &spec);
    assert_eq!(
        (ran.status.code, ran.stdout.as_str()),
        (0, "2\n"),
        "{ran:?}"
    );
    assert_eq!(
        std::fs::read_to_string(fx.lower.join("made")).unwrap(),
        "data\n"
    );
    assert!(!fx.lower.join("etc/hosts").exists());
    for stub in ["proc", "dev", "sys"] {
        assert!(
            !fx.lower.join(stub).exists(),
            "mount point /{stub} left in the rootfs"
        );
    }
}

#[test]
fn a_hostile_passwd_cannot_exhaust_the_step_setup() {
    if !have_root("a_hostile_passwd_cannot_exhaust_the_step_setup") {
        return;
    }
    // Issue #12: `/etc/passwd -> /dev/zero` made USER resolution read without end.
    let fx = Fixture::new();
    std::fs::remove_file(fx.lower.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", fx.lower.join("etc/passwd")).unwrap();
    let mut spec = fx.sh("id -u");
    spec.user = "app".into();
    let err = sandbox(Isolation::Userns)
        .run(&spec, |_| {})
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "USER \"app\": the image's /etc/passwd: not a regular file"
    );
    // Too large: refused before it is read whole.
    std::fs::remove_file(fx.lower.join("etc/passwd")).unwrap();
    let f = std::fs::File::create(fx.lower.join("etc/passwd")).unwrap();
    f.set_len(rbuild_sandbox::user::MAX_ACCOUNT_FILE + 1)
        .unwrap();
    let err = sandbox(Isolation::Userns)
        .run(&spec, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/etc/passwd: larger than 4194304 bytes"),
        "{err}"
    );
}
