//! Issue 16 item 2 through the binary: git contexts from a local bare repository over
//! `file://` and from a loopback `git daemon` (`git://`), BuildKit's `#REF:SUBDIR`, Kaniko's
//! `--git branch=`, a hostile ref that tries to smuggle a git option, and the remote contexts
//! rbuild refuses with one line.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use rbuild_testkit::ImageTree;

const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `dir/repo.git`: a bare repository whose `v1` tag has `services/api/version.txt` = v1 and
/// whose `main` has v2 (both with a Dockerfile copying the whole context).
fn bare_repository(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    fs::create_dir_all(work.join("services/api")).unwrap();
    git(&work, &["init", "-q", "-b", "main", "."]);
    fs::write(
        work.join("services/api/Dockerfile"),
        "FROM scratch\nCOPY . /ctx/\n",
    )
    .unwrap();
    fs::write(work.join("README"), "top level\n").unwrap();
    for version in ["v1", "v2"] {
        fs::write(
            work.join("services/api/version.txt"),
            format!("{version}\n"),
        )
        .unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", version]);
        if version == "v1" {
            git(&work, &["tag", "v1"]);
        }
    }
    git(dir, &["clone", "-q", "--bare", "work", "repo.git"]);
    dir.join("repo.git")
}

fn rbuild(dir: &Path, context: &str, extra: &[&str]) -> Output {
    Command::new(RBUILD)
        .arg("--context")
        .arg(context)
        .arg("--cache-dir")
        .arg(dir.join("store"))
        .args(["--no-push", "--tar-path"])
        .arg(dir.join("out.tar"))
        .args(extra)
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .output()
        .unwrap()
}

fn built_tree(dir: &Path, output: &Output) -> ImageTree {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    ImageTree::from_docker_archive(&dir.join("out.tar")).unwrap()
}

#[test]
fn file_url_with_ref_and_subdir_and_git_branch_flag() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare_repository(dir.path());
    let url = format!("file://{}", repo.display());

    let tree = built_tree(
        dir.path(),
        &rbuild(dir.path(), &format!("{url}#v1:services/api"), &[]),
    );
    assert_eq!(tree.text_of("/ctx/version.txt").as_deref(), Some("v1\n"));
    assert!(
        tree.get("/ctx/.git").is_none(),
        "the checkout's .git is in the image"
    );
    assert!(
        tree.get("/ctx/README").is_none(),
        "the subdir is the context"
    );

    // Kaniko's way: the ref from --git, the directory from --context-sub-path.
    let tree = built_tree(
        dir.path(),
        &rbuild(
            dir.path(),
            &url,
            &[
                "--git",
                "branch=main",
                "--context-sub-path",
                "services/api",
                "--dockerfile",
                "Dockerfile",
            ],
        ),
    );
    assert_eq!(tree.text_of("/ctx/version.txt").as_deref(), Some("v2\n"));
}

#[test]
fn a_ref_never_becomes_a_git_option() {
    let dir = tempfile::tempdir().unwrap();
    let repo = bare_repository(dir.path());
    let marker = dir.path().join("pwned");
    let context = format!(
        "file://{}#--upload-pack=touch {}",
        repo.display(),
        marker.display()
    );
    let output = rbuild(dir.path(), &context, &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("build context file://"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!marker.exists(), "the ref ran a command");
}

/// A `git daemon` serving `base` on a loopback port; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself (not `git daemon`, which would leave it running when killed).
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8_lossy(&exec_path.stdout).trim().to_owned();
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .spawn()
            .expect("git daemon (Debian's git package)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn git_url_from_a_loopback_git_daemon() {
    let dir = tempfile::tempdir().unwrap();
    bare_repository(dir.path());
    let daemon = GitDaemon::start(dir.path());
    let context = format!("git://127.0.0.1:{}/repo.git#v1:services/api", daemon.port);
    let output = Command::new(RBUILD)
        .arg("--context")
        .arg(&context)
        .arg("--cache-dir")
        .arg(dir.path().join("store"))
        .args(["--no-push", "--tar-path"])
        .arg(dir.path().join("out.tar"))
        // Kaniko fetches git:// contexts over GIT_PULL_METHOD (https by default); `git` is
        // the git protocol of a git daemon.
        .env("GIT_PULL_METHOD", "git")
        .env("DOCKER_CONFIG", dir.path().join("docker-config"))
        .output()
        .unwrap();
    let tree = built_tree(dir.path(), &output);
    assert_eq!(tree.text_of("/ctx/version.txt").as_deref(), Some("v1\n"));
}

#[test]
fn bucket_and_blob_contexts_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (context, what) in [
        ("s3://bucket/ctx.tar.gz", "S3"),
        ("gs://bucket/ctx.tar.gz", "Google Cloud Storage"),
        (
            "azblob://account/container/ctx.tar.gz",
            "Azure Blob Storage",
        ),
        (
            "https://account.blob.core.windows.net/c/ctx.tar.gz",
            "Azure Blob Storage",
        ),
    ] {
        let output = rbuild(dir.path(), context, &[]);
        assert_eq!(output.status.code(), Some(1), "{context}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(&format!("{what} contexts are not supported")),
            "{stderr}"
        );
    }
}
