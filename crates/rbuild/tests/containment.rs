//! Issue #12, items 1 and 2 and the non-UTF-8 audit: hostile contexts, archives and images
//! never make a build write or read outside its roots. Every test keeps a canary directory
//! outside the roots (it must stay exactly as it was) holding a secret whose access time is
//! set to 0 (a read would move it: the file system is mounted `relatime`) and whose bytes
//! must not appear in any blob of the store.

mod common;

use common::{put_busybox, write_files};
use rbuild::oci::Reference;
use rbuild::registry::{CredentialChain, RegistryOptions};
use rbuild::{
    BuildError, BuildRequest, Builder, ContextSource, DockerfileSource, Remote, StepStatus,
};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const SECRET: &[u8] = b"HOST-SECRET-c0ffee-7d1e";

struct Scene {
    _dir: tempfile::TempDir,
    context: PathBuf,
    outside: PathBuf,
    builder: Builder,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    let outside = dir.path().join("outside");
    fs::create_dir(&context).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::create_dir(outside.join("sub")).unwrap();
    fs::write(outside.join("sub/more"), "more").unwrap();
    fs::write(outside.join("secret"), SECRET).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o750)).unwrap();
    let epoch = filetime::FileTime::from_unix_time(0, 0);
    filetime::set_file_atime(outside.join("secret"), epoch).unwrap();
    let builder = Builder::new(dir.path().join("store")).unwrap();
    put_busybox(builder.store(), "docker.io/library/busybox:latest");
    Scene {
        _dir: dir,
        context,
        outside,
        builder,
    }
}

impl Scene {
    fn request(&self, dockerfile: &str) -> BuildRequest {
        BuildRequest {
            context: ContextSource::Dir(self.context.clone()),
            dockerfile: DockerfileSource::Text(dockerfile.to_string()),
            source_date_epoch: Some(1_700_000_000),
            ..BuildRequest::default()
        }
    }

    /// The canary is as it was: same names, same mode, the secret neither read nor written,
    /// and no blob of the store carries its bytes.
    fn assert_untouched(&self) {
        let mut names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["secret", "sub"],
            "nothing created outside the roots"
        );
        let names: Vec<_> = fs::read_dir(self.outside.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["more"]);
        let meta = fs::metadata(&self.outside).unwrap();
        assert_eq!(
            meta.mode() & 0o7777,
            0o750,
            "the outside directory was not chmod-ed"
        );
        assert_eq!(meta.uid(), 0);
        let secret = fs::metadata(self.outside.join("secret")).unwrap();
        assert_eq!(secret.atime(), 0, "the host's secret was read");
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), SECRET);
        // That read was ours: back to 0 for the next check.
        let epoch = filetime::FileTime::from_unix_time(0, 0);
        filetime::set_file_atime(self.outside.join("secret"), epoch).unwrap();
        assert_no_blob_holds(self.builder.store().root(), SECRET);
    }

    /// `outside` as a path inside an image (its host path without the leading `/`).
    fn outside_in_image(&self) -> String {
        self.outside
            .to_str()
            .unwrap()
            .trim_start_matches('/')
            .to_string()
    }
}

/// Every blob under `store` (gzip blobs decompressed) is searched for `needle`.
fn assert_no_blob_holds(store: &Path, needle: &[u8]) {
    let dir = store.join("blobs/sha256");
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let raw = fs::read(&path).unwrap();
        let mut plain = Vec::new();
        if raw.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut plain)
                .unwrap();
        } else {
            plain = raw;
        }
        assert!(
            !plain.windows(needle.len()).any(|w| w == needle),
            "blob {} holds the host's secret",
            path.display()
        );
    }
}

/// The raw entry names of a layer blob, `/`-trimmed.
fn layer_names(store: &rbuild::store::Store, digest: &rbuild::oci::Digest) -> Vec<Vec<u8>> {
    let bytes = store.read_blob(digest).unwrap();
    let data: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(&bytes[..]))
    } else {
        Box::new(&bytes[..])
    };
    let mut archive = tar::Archive::new(data);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.path_bytes().to_vec();
            let trimmed = name.strip_suffix(b"/").unwrap_or(&name).to_vec();
            trimmed
        })
        .collect()
}

fn all_names(builder: &Builder, outcome: &rbuild::BuildOutcome) -> Vec<Vec<u8>> {
    outcome
        .manifest
        .layers
        .iter()
        .flat_map(|l| layer_names(builder.store(), &l.digest))
        .collect()
}

fn has(names: &[Vec<u8>], path: &str) -> bool {
    names.iter().any(|n| n == path.as_bytes())
}

/// Issue #12 item 1: `s1/a -> OUTSIDE` staged by the first source, `s2/a/pwned` by the second.
#[test]
fn a_symlink_staged_by_one_source_is_followed_inside_the_image_only() {
    let s = scene();
    fs::create_dir_all(s.context.join("s1")).unwrap();
    symlink(&s.outside, s.context.join("s1/a")).unwrap();
    write_files(
        &s.context,
        &[
            ("s2/a/pwned", "pwned\n", 0o644),
            ("s2/a/secret", "over\n", 0o644),
        ],
    );
    for base in ["scratch", "busybox"] {
        let dockerfile = format!("FROM {base}\nCOPY s1/ s2/ /dest/\n");
        let outcome = s.builder.build(s.request(&dockerfile)).unwrap();
        s.assert_untouched();
        let names = all_names(&s.builder, &outcome);
        assert!(has(&names, "dest/a"), "the link itself is copied");
        // Followed as inside the container: the file lands at OUTSIDE inside the image.
        assert!(
            has(&names, &format!("{}/pwned", s.outside_in_image())),
            "{base}"
        );
    }
}

fn tar_with(entries: &[(&str, Option<&Path>, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, link, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match link {
            Some(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, name, target).unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, *data).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// Issue #12 item 1, from archive contents alone.
#[test]
fn archives_cannot_write_through_a_link_another_archive_staged() {
    let s = scene();
    fs::write(
        s.context.join("symonly.tar"),
        tar_with(&[("a", Some(&s.outside), b"")]),
    )
    .unwrap();
    fs::write(
        s.context.join("dironly.tar"),
        tar_with(&[("a/pwned", None, b"pwned\n")]),
    )
    .unwrap();
    for base in ["scratch", "busybox"] {
        let dockerfile = format!("FROM {base}\nADD symonly.tar dironly.tar /x/\n");
        let outcome = s.builder.build(s.request(&dockerfile)).unwrap();
        s.assert_untouched();
        let names = all_names(&s.builder, &outcome);
        assert!(has(&names, "x/a"), "the link is staged");
        // The second archive's `a/pwned` follows it inside the image, as in a container.
        assert!(
            has(&names, &format!("{}/pwned", s.outside_in_image())),
            "{base}"
        );
    }
}

/// Issue #12 item 2: symlinks in a non-final component, globs, and the named source itself.
#[test]
fn host_files_are_never_read_through_context_symlinks() {
    let s = scene();
    symlink(&s.outside, s.context.join("etclink")).unwrap();
    symlink("../outside", s.context.join("rellink")).unwrap();
    for copy in [
        "COPY etclink/secret /x",
        "COPY rellink/secret /x",
        "COPY etclink/* /z/",
        "COPY etclink/ /y/",
        "COPY etclink/sub/more /m",
    ] {
        let err = s
            .builder
            .build(s.request(&format!("FROM scratch\n{copy}\n")))
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("not found") || message.contains("No such file"),
            "{copy}: {message}"
        );
        s.assert_untouched();
    }
}

/// Issue #12 item 2: `--context-sub-path` through a symlink is resolved inside the context.
#[test]
fn context_sub_path_through_a_symlink_stays_in_the_context() {
    let s = scene();
    symlink(&s.outside, s.context.join("etcsub")).unwrap();
    let mut request = s.request("FROM scratch\nCOPY secret /x\n");
    request.context_sub_path = Some("etcsub".into());
    let err = s.builder.build(request).unwrap_err();
    assert!(matches!(err, BuildError::Context { .. }), "{err}");
    s.assert_untouched();
    // A link that stays inside the context is followed there.
    write_files(&s.context, &[("real/f", "inside\n", 0o644)]);
    symlink("/real", s.context.join("inner")).unwrap();
    let mut request = s.request("FROM scratch\nCOPY f /f\n");
    request.context_sub_path = Some("inner".into());
    let outcome = s.builder.build(request).unwrap();
    assert!(has(&all_names(&s.builder, &outcome), "f"));
}

/// Issue #12 item 2: the cache key walk (before any step runs) does not follow a link to a
/// host directory either.
#[test]
fn cache_key_walk_through_a_symlink_stays_inside() {
    let s = scene();
    symlink(&s.outside, s.context.join("usrlink")).unwrap();
    write_files(&s.context, &[("ok/f", "f", 0o644)]);
    let err = s
        .builder
        .build(s.request("FROM scratch\nCOPY ok /ok\nCOPY usrlink/ /x\n"))
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    s.assert_untouched();
}

fn non_utf8(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// The audit: `caf\xe9.txt` through COPY (whole tree and glob), ADD, `.dockerignore` and the
/// cache key.
#[test]
fn non_utf8_names_through_copy_add_dockerignore_and_cache_keys() {
    let s = scene();
    fs::write(s.context.join(non_utf8(b"caf\xe9.txt")), "caf\n").unwrap();
    fs::create_dir(s.context.join("d")).unwrap();
    fs::write(s.context.join("d").join(non_utf8(b"caf\xe9.log")), "log\n").unwrap();
    fs::write(s.context.join("d").join(non_utf8(b"n\xff")), "n\n").unwrap();
    fs::write(s.context.join(".dockerignore"), "**/*.log\n").unwrap();
    let dockerfile = "FROM scratch\nCOPY . /all/\nCOPY caf* /glob/\nADD caf* /added/\nCOPY --exclude=d/n* d /excl/\n";
    let first = s.builder.build(s.request(dockerfile)).unwrap();
    let names = all_names(&s.builder, &first);
    let name = |p: &[u8]| names.iter().any(|n| n == p);
    assert!(name(b"all/caf\xe9.txt"), "{names:?}");
    assert!(name(b"all/d/n\xff"));
    assert!(
        !name(b"all/d/caf\xe9.log"),
        ".dockerignore matches a non-UTF-8 name"
    );
    assert!(name(b"glob/caf\xe9.txt"));
    assert!(name(b"added/caf\xe9.txt"));
    assert!(!name(b"excl/n\xff"), "--exclude matches a non-UTF-8 name");
    let again = s.builder.build(s.request(dockerfile)).unwrap();
    assert!(
        again
            .steps
            .iter()
            .filter(|r| r.keyword != "FROM")
            .all(|r| r.status == StepStatus::Cached),
        "{:?}",
        again.steps
    );
    // The cache key sees the non-UTF-8 file's content, and not the ignored one's.
    fs::write(
        s.context.join("d").join(non_utf8(b"caf\xe9.log")),
        "changed\n",
    )
    .unwrap();
    let ignored_changed = s.builder.build(s.request(dockerfile)).unwrap();
    assert_eq!(ignored_changed.digest, first.digest);
    fs::write(s.context.join(non_utf8(b"caf\xe9.txt")), "changed\n").unwrap();
    let changed = s.builder.build(s.request(dockerfile)).unwrap();
    assert_eq!(
        changed.steps[0].status,
        StepStatus::Built,
        "{:?}",
        changed.steps
    );
    s.assert_untouched();
}

/// Issue #12 items 1 and 2 from a hostile image pulled from the registry: `/l -> /`,
/// `/s1/a -> OUTSIDE`, `/s2/a/pwned`.
#[test]
fn copy_from_a_hostile_image_stays_in_its_root() {
    let Some(registry) =
        rbuild_testkit::TestRegistry::start_or_skip(rbuild_testkit::RegistryAuth::None)
    else {
        return;
    };
    let s = scene();
    let remote = Remote::new(RegistryOptions::default(), CredentialChain::empty()).unwrap();
    // The hostile image, built from a context of links and pushed.
    let evil_ctx = s.context.join("evil");
    fs::create_dir_all(evil_ctx.join("s1")).unwrap();
    symlink("/", evil_ctx.join("l")).unwrap();
    symlink(&s.outside, evil_ctx.join("s1/a")).unwrap();
    write_files(&evil_ctx, &[("s2/a/pwned", "pwned\n", 0o644)]);
    let evil = Reference::parse(&format!("{}/evil/image:1", registry.host())).unwrap();
    let seeder = Builder::new(s.context.parent().unwrap().join("seed-store"))
        .unwrap()
        .with_remote(&remote);
    seeder
        .build(BuildRequest {
            context: ContextSource::Dir(evil_ctx.clone()),
            dockerfile: DockerfileSource::Text("FROM scratch\nCOPY . /\n".into()),
            destinations: vec![evil.clone()],
            ..BuildRequest::default()
        })
        .unwrap();
    fs::remove_dir_all(&evil_ctx).unwrap();

    let builder = Builder::new(s.context.parent().unwrap().join("store2"))
        .unwrap()
        .with_remote(&remote);
    let outcome = builder
        .build(s.request(&format!(
            "FROM scratch\nCOPY --from={evil} /s1/ /s2/ /dest/\n"
        )))
        .unwrap();
    let names = all_names(&builder, &outcome);
    assert!(has(&names, &format!("{}/pwned", s.outside_in_image())));
    for copy in [
        format!("COPY --from={evil} /l{}/secret /x", s.outside.display()),
        format!("COPY --from={evil} /s1/a/secret /x"),
        format!(
            "COPY --from={evil} /l/../../{}/secret /x",
            s.outside_in_image()
        ),
    ] {
        let err = builder
            .build(s.request(&format!("FROM scratch\n{copy}\n")))
            .unwrap_err();
        assert!(err.to_string().contains("not found"), "{copy}: {err}");
    }
    s.assert_untouched();
    assert_no_blob_holds(builder.store().root(), SECRET);
}

/// The Dockerfile and its ignore files named relative to the context are read inside it: a
/// symlink to a host file is not followed there (and its bytes never reach an error message).
#[test]
fn dockerfile_and_ignore_files_are_read_inside_the_context() {
    let s = scene();
    fs::write(s.context.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    fs::write(s.context.join("f"), "f\n").unwrap();
    symlink(
        s.outside.join("secret"),
        s.context.join("Dockerfile.dockerignore"),
    )
    .unwrap();
    symlink(s.outside.join("secret"), s.context.join("Evil")).unwrap();
    let mut request = s.request("");
    request.dockerfile = DockerfileSource::Path("Dockerfile".into());
    s.builder.build(request).unwrap();
    s.assert_untouched();
    let mut request = s.request("");
    request.dockerfile = DockerfileSource::Path("Evil".into());
    let err = s.builder.build(request).unwrap_err();
    assert!(matches!(err, BuildError::Dockerfile { .. }), "{err}");
    assert!(!err.to_string().contains("HOST-SECRET"), "{err}");
    s.assert_untouched();
}

/// ADD extracts archive entries with names that are not UTF-8 as they are (they were mangled
/// by a lossy conversion before).
#[test]
fn non_utf8_names_inside_an_added_archive_are_kept() {
    let s = scene();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    header.as_ustar_mut().unwrap().name[..10].copy_from_slice(b"dir/caf\xe9.t");
    header.set_cksum();
    tar.append(&header, &b"caf\n"[..]).unwrap();
    fs::write(s.context.join("names.tar"), tar.into_inner().unwrap()).unwrap();
    let outcome = s
        .builder
        .build(s.request("FROM scratch\nADD names.tar /x/\n"))
        .unwrap();
    let names = all_names(&s.builder, &outcome);
    assert!(names.iter().any(|n| n == b"x/dir/caf\xe9.t"), "{names:?}");
    s.assert_untouched();
}
