//! Git build contexts, fetched with the `git` binary: BuildKit's `URL#REF:SUBDIR`
//! (`https://host/repo.git#v1.2:services/api`) and Kaniko's `git://HOST/REPO#REF[#COMMIT]`
//! (Kaniko fetches a `git://` context over `$GIT_PULL_METHOD`, `https` by default; `http`
//! and, in rbuild, `git` — the git protocol itself, as a `git daemon` serves it — are the other
//! values). Kaniko's `--git` options: `branch`, `single-branch`, `recurse-submodules`,
//! `insecure-skip-tls`.
//!
//! The repository is hostile input: the URL and the ref are passed after `--` (a value starting
//! with `-` is never an option of git), the `ext::` transport and file-protocol submodules are
//! refused, no terminal prompt is shown, and the checkout's `.git` is removed before the build
//! reads the tree (as BuildKit drops it). Credentials inside a URL never reach a message.

use std::path::Path;
use std::process::{Command, Stdio};

/// A git repository as a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitContext {
    /// The URL git fetches from (`https://…`, `http://…`, `git://…`, `ssh://…`, `git@…`,
    /// `file://…`).
    pub url: String,
    /// The branch, tag, ref or commit to check out (default: the remote's HEAD).
    pub reference: Option<String>,
    /// A commit the checkout must be at (Kaniko's second `#` fragment).
    pub commit: Option<String>,
    /// The directory of the repository to use as the context.
    pub subdir: Option<String>,
    /// Kaniko's `--git` options.
    pub options: GitOptions,
}

/// Kaniko's `--git KEY=VALUE` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitOptions {
    /// `branch=`: the ref to check out when the URL names none.
    pub branch: Option<String>,
    /// `single-branch=`: fetch only that ref (rbuild always fetches one ref; kept for
    /// completeness).
    pub single_branch: bool,
    /// `recurse-submodules=`: also check out the submodules.
    pub recurse_submodules: bool,
    /// `insecure-skip-tls=`: do not verify the server's TLS certificate.
    pub insecure_skip_tls: bool,
}

impl GitContext {
    /// The git context a `--context` value names, if it names one: `git://…` (Kaniko's form),
    /// `git@…`, `ssh://…`, or an `http(s)://` / `file://` URL whose path ends in `.git`
    /// (BuildKit's rule), each with an optional `#REF[:SUBDIR]` or `#REF#COMMIT`.
    pub fn parse(spec: &str) -> Option<GitContext> {
        let (url, fragment) = match spec.split_once('#') {
            Some((url, fragment)) => (url, Some(fragment)),
            None => (spec, None),
        };
        let is_git = spec.starts_with("git://")
            || spec.starts_with("git@")
            || spec.starts_with("ssh://")
            || (["https://", "http://", "file://"]
                .iter()
                .any(|s| url.starts_with(s))
                && url.trim_end_matches('/').ends_with(".git"));
        if !is_git || url.is_empty() {
            return None;
        }
        let url = match url.strip_prefix("git://") {
            Some(rest) => {
                let method = std::env::var("GIT_PULL_METHOD")
                    .ok()
                    .filter(|m| ["https", "http", "git"].contains(&m.as_str()))
                    .unwrap_or_else(|| "https".into());
                format!("{method}://{rest}")
            }
            None => url.to_string(),
        };
        let mut context = GitContext {
            url,
            reference: None,
            commit: None,
            subdir: None,
            options: GitOptions::default(),
        };
        if let Some(fragment) = fragment {
            let mut parts = fragment.splitn(2, '#');
            let first = parts.next().unwrap_or_default();
            context.commit = parts.next().filter(|c| !c.is_empty()).map(str::to_owned);
            let (reference, subdir) = match first.split_once(':') {
                Some((r, s)) => (r, Some(s)),
                None => (first, None),
            };
            context.reference = Some(reference).filter(|r| !r.is_empty()).map(str::to_owned);
            context.subdir = subdir.filter(|s| !s.is_empty()).map(str::to_owned);
        }
        Some(context)
    }

    /// The URL with any credentials in it replaced (for messages).
    pub fn shown_url(&self) -> String {
        rbuild_registry::redact_url(&self.url)
    }

    /// Fetches the repository at its ref into `dir` (an empty directory) and removes its
    /// `.git`. The error is one line (git's last, credentials redacted); the caller names the
    /// repository.
    pub(crate) fn fetch_into(&self, dir: &Path) -> Result<(), String> {
        let shown = self.shown_url();
        let git = |args: &[&str]| -> Result<(), String> {
            let mut command = Command::new("git");
            command
                .arg("-c")
                .arg("protocol.ext.allow=never")
                .arg("-c")
                .arg("protocol.file.allow=user")
                .arg("-c")
                .arg("advice.detachedHead=false");
            if self.options.insecure_skip_tls {
                command.arg("-c").arg("http.sslVerify=false");
            }
            let output = command
                .args(args)
                .current_dir(dir)
                .env("GIT_TERMINAL_PROMPT", "0")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run git ({e}); install git"))?;
            if output.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no message");
            // git may quote the URL, credentials included.
            let last = last.replace(&self.url, &shown);
            Err(format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or_default(),
                rbuild_oci::truncate_for_message(&last, 300)
            ))
        };
        git(&["init", "-q", "."])?;
        git(&["remote", "add", "origin", "--", &self.url])?;
        let wanted = self
            .reference
            .clone()
            .or_else(|| self.options.branch.clone())
            .unwrap_or_else(|| "HEAD".into());
        let shallow = git(&["fetch", "-q", "--depth", "1", "--", "origin", &wanted]);
        if let Err(e) = shallow {
            // A commit id some servers do not serve by itself: fetch everything.
            if !is_hex(&wanted) {
                return Err(e);
            }
            git(&["fetch", "-q", "--", "origin"])?;
            git(&["checkout", "-q", &wanted, "--"])?;
        } else {
            git(&["checkout", "-q", "FETCH_HEAD", "--"])?;
        }
        if let Some(commit) = &self.commit {
            let at = git(&["merge-base", "--is-ancestor", commit, "HEAD"]);
            if at.is_err() {
                git(&["fetch", "-q", "--", "origin", commit])
                    .or_else(|_| git(&["fetch", "-q", "--unshallow", "--", "origin"]))?;
            }
            git(&["checkout", "-q", commit, "--"])?;
        }
        if self.options.recurse_submodules {
            git(&[
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth",
                "1",
            ])?;
        }
        std::fs::remove_dir_all(dir.join(".git"))
            .map_err(|e| format!("cannot remove the checkout's .git: {e}"))?;
        tracing::info!(url = %shown, reference = %wanted, "git context fetched");
        Ok(())
    }
}

fn is_hex(text: &str) -> bool {
    text.len() >= 7 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_and_kaniko_forms_parse() {
        let c = GitContext::parse("https://example.com/org/repo.git#v1.2:services/api").unwrap();
        assert_eq!(c.url, "https://example.com/org/repo.git");
        assert_eq!(c.reference.as_deref(), Some("v1.2"));
        assert_eq!(c.subdir.as_deref(), Some("services/api"));
        let c =
            GitContext::parse("git://example.com/org/repo.git#refs/heads/main#abc1234").unwrap();
        assert!(c.url.ends_with("://example.com/org/repo.git"), "{}", c.url);
        assert_eq!(c.reference.as_deref(), Some("refs/heads/main"));
        assert_eq!(c.commit.as_deref(), Some("abc1234"));
        let c = GitContext::parse("file:///srv/repo.git").unwrap();
        assert_eq!((c.reference, c.subdir), (None, None));
        for not_git in [
            ".",
            "dir://x",
            "tar://x.tar",
            "https://example.com/ctx.tar.gz",
            "/srv/repo.git",
        ] {
            assert!(GitContext::parse(not_git).is_none(), "{not_git}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let c = GitContext::parse("https://user:s3cret@example.com/r.git").unwrap();
        assert!(!c.shown_url().contains("s3cret"), "{}", c.shown_url());
    }
}
