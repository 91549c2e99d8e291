//! Issue 16 item 1 through the binary: every Kaniko 1.24 (and fork) flag is accepted, the
//! README's flag table is `--help`'s list, the last of a repeated flag wins, bad values are
//! errors, `KANIKO_REGISTRY_MIRROR` is read and a Dockerfile path may be relative to the
//! working directory.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use rbuild_testkit::{BusyboxImage, RegistryAuth, TestRegistry};

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

fn rbuild(dir: &Path, args: &[&str]) -> Output {
    Command::new(RBUILD)
        .current_dir(dir)
        .arg("--cache-dir")
        .arg(dir.join("store"))
        .args(args)
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env_remove("KANIKO_REGISTRY_MIRROR")
        .output()
        .expect("run rbuild")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "rbuild failed:\n{}",
        stderr(output)
    );
}

/// A directory with a `FROM scratch` context in `ctx/` (no RUN: no sandbox needed).
fn scratch_context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("ctx")).unwrap();
    fs::write(dir.path().join("ctx/a.txt"), "a\n").unwrap();
    fs::write(
        dir.path().join("ctx/Dockerfile"),
        "FROM scratch\nCOPY a.txt /a.txt\n",
    )
    .unwrap();
    dir
}

/// The `--flag` names of a text (`-x, --name` or `--name`).
fn flag_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.len() > 1 {
            names.insert(format!("--{name}"));
        }
    }
    names
}

#[test]
fn readme_flag_table_is_the_help_list() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let start = readme
        .find("### Flags (Kaniko's names)")
        .expect("flag section");
    let section = &readme[start..];
    let end = section
        .find("\nExit code:")
        .expect("end of the flag section");
    let first_cells: String = section[..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let table = flag_names(&first_cells);

    let help = Command::new(RBUILD).arg("--help").output().unwrap();
    assert_ok(&help);
    let help_text = String::from_utf8_lossy(&help.stdout);
    let option_lines: String = help_text
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut listed = flag_names(&option_lines);
    listed.remove("--help");
    listed.remove("--version");
    // Hidden from --help, refused with a line of its own.
    listed.insert("--bucket".into());
    assert_eq!(
        table.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "README rows that --help does not list"
    );
    assert_eq!(
        listed.difference(&table).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "--help flags missing from the README table"
    );
    assert!(table.len() >= 60, "{} flags", table.len());
}

#[test]
fn every_kaniko_and_fork_flag_is_accepted_and_no_ops_say_so() {
    let dir = scratch_context();
    let output = rbuild(
        dir.path(),
        &[
            "--context=ctx",
            "--no-push",
            "--dryrun",
            "--verbosity",
            "info",
            "--verbosity",
            "debug",
            "--ignore-path=/var/mail",
            "--kaniko-dir=/kaniko",
            "--log-timestamp",
            "--skip-unused-stages",
            "--image-fs-extract-retry=3",
            "--no-push-cache",
            "--skip-push-permission-check",
            "--push-ignore-immutable-tag-errors",
            "--skip-default-registry-fallback",
            "--force-build-metadata",
            "--git=branch=main",
            "--customPlatform=linux/amd64",
            "--snapshotMode=redo",
            "--whitelist-var-run=false",
            "--annotation=org.example.a=b",
            "--credential-helpers=ecr",
            "--pre-cleanup",
            "--materialize",
            "--preserve-context",
            "--use-new-run",
            "--compressed-caching=false",
            "--cleanup",
            "--force",
            "--tarPath=out.tar",
        ],
    );
    assert_ok(&output);
    let err = stderr(&output);
    for flag in [
        "--ignore-path",
        "--kaniko-dir",
        "--skip-unused-stages",
        "--image-fs-extract-retry",
        "--force-build-metadata",
        "--snapshot-mode",
        "--credential-helpers",
        "--pre-cleanup",
    ] {
        assert!(
            err.contains(&format!("{flag} has no effect in rbuild")),
            "no debug note for {flag} (the last --verbosity, debug, must win):\n{err}"
        );
    }
    assert!(
        err.contains("--dryrun: 1 stage(s), 1 step(s) planned"),
        "{err}"
    );
    // --log-timestamp: the note line starts with a time.
    let note = err.lines().find(|l| l.contains("--dryrun:")).unwrap();
    assert!(
        note.starts_with("20") && note.as_bytes()[10] == b'T',
        "{note}"
    );
    assert!(
        !dir.path().join("out.tar").exists(),
        "a dry run writes nothing"
    );
}

#[test]
fn bad_values_of_accepted_flags_are_errors() {
    let dir = scratch_context();
    for (args, wanted) in [
        (
            &["--compression", "zstd", "--compression-level", "20"][..],
            "zstd takes 1 to 19",
        ),
        (&["--compression-level", "12"][..], "gzip takes 1 to 9"),
        (&["--verbosity", "bogus"][..], "bogus"),
        (&["--snapshot-mode=bogus"][..], "bogus"),
        (&["--git", "bogus=1"][..], "unknown option"),
        (
            &["--bucket", "my-bucket"][..],
            "Google Cloud Storage contexts are not supported",
        ),
    ] {
        let mut all = vec!["--context=ctx", "--no-push"];
        all.extend_from_slice(args);
        let output = rbuild(dir.path(), &all);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(
            stderr(&output).contains(wanted),
            "{args:?}:\n{}",
            stderr(&output)
        );
        assert!(!dir.path().join("store").join("index.json").exists() || args[0] != "--bucket");
    }
}

#[test]
fn dockerfile_path_relative_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let api = dir.path().join("services/api");
    fs::create_dir_all(&api).unwrap();
    fs::write(api.join("a.txt"), "a\n").unwrap();
    fs::write(api.join("Dockerfile"), "FROM scratch\nCOPY a.txt /a.txt\n").unwrap();
    let output = rbuild(
        dir.path(),
        &[
            "--context",
            "services/api",
            "--dockerfile",
            "services/api/Dockerfile",
            "--no-push",
            "--tar-path",
            "out.tar",
        ],
    );
    assert_ok(&output);
    assert!(dir.path().join("out.tar").metadata().unwrap().len() > 0);
}

#[test]
fn kaniko_registry_mirror_is_read() {
    if !BusyboxImage::available_or_skip() {
        return;
    }
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    BusyboxImage::build()
        .unwrap()
        .push_to(&registry, "library/busybox:latest")
        .unwrap();
    let dir = scratch_context();
    fs::write(
        dir.path().join("ctx/Dockerfile"),
        "FROM busybox\nCOPY a.txt /a.txt\n",
    )
    .unwrap();
    let output = Command::new(RBUILD)
        .current_dir(dir.path())
        .args(["--context=ctx", "--no-push", "--cache-dir=store"])
        .env("DOCKER_CONFIG", dir.path().join("docker-config"))
        .env("KANIKO_REGISTRY_MIRROR", registry.host())
        .output()
        .unwrap();
    assert_ok(&output);
    assert!(
        registry
            .access_log()
            .contains("/v2/library/busybox/manifests/latest"),
        "the mirror was not asked:\n{}",
        registry.access_log()
    );
}
