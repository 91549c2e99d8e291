//! The build context: a directory, a tar (optionally compressed) file, or a tar stream
//! (`tar://stdin`), narrowed to `context_sub_path`, with `.dockerignore` applied. Ignored files
//! are invisible to every step.

use crate::dockerignore::IgnoreMatcher;
use crate::error::BuildError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the context comes from.
pub enum ContextSource {
    /// A directory (the default, `.`).
    Dir(PathBuf),
    /// A tar file, plain or gzip/zstd-compressed (`tar://path`).
    Tar(PathBuf),
    /// A tar stream (`tar://stdin`, or any reader an embedder passes).
    Reader(Box<dyn Read + Send>),
    /// A git repository, fetched with the `git` binary into the build's work area.
    Git(crate::GitContext),
}

impl std::fmt::Debug for ContextSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextSource::Dir(p) => write!(f, "Dir({})", p.display()),
            ContextSource::Tar(p) => write!(f, "Tar({})", p.display()),
            ContextSource::Reader(_) => f.write_str("Reader(..)"),
            ContextSource::Git(g) => write!(f, "Git({})", g.shown_url()),
        }
    }
}

impl ContextSource {
    /// Kaniko's `--context` forms: `tar://stdin`, `tar://PATH`, `dir://PATH`, a git repository
    /// ([`crate::GitContext::parse`]) or a plain path.
    pub fn parse(spec: &str) -> ContextSource {
        if let Some(git) = crate::GitContext::parse(spec) {
            ContextSource::Git(git)
        } else if spec == "tar://stdin" {
            ContextSource::Reader(Box::new(std::io::stdin()))
        } else if let Some(path) = spec.strip_prefix("tar://") {
            ContextSource::Tar(PathBuf::from(path))
        } else if let Some(path) = spec.strip_prefix("dir://") {
            ContextSource::Dir(PathBuf::from(path))
        } else {
            ContextSource::Dir(PathBuf::from(spec))
        }
    }

    fn describe(&self) -> PathBuf {
        match self {
            ContextSource::Dir(p) | ContextSource::Tar(p) => p.clone(),
            ContextSource::Reader(_) => PathBuf::from("tar://stdin"),
            ContextSource::Git(g) => PathBuf::from(g.shown_url()),
        }
    }
}

/// An opened build context.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    fs: rbuild_fs::Root,
    ignore: IgnoreMatcher,
    _extracted: Option<tempfile::TempDir>,
    /// Digests of sources already read, by patterns and excludes: the cache keys and the
    /// provenance's context digest read the context once.
    digests:
        std::sync::Mutex<std::collections::HashMap<String, crate::input_digest::SourcesDigest>>,
}

impl BuildContext {
    /// Opens `source`; a tar is extracted (safely: no entry may escape) under `scratch`.
    pub fn open(
        source: ContextSource,
        sub_path: Option<&str>,
        scratch: &Path,
    ) -> Result<BuildContext, BuildError> {
        let shown = source.describe();
        let bad = |reason: String| BuildError::Context {
            path: shown.clone(),
            reason,
        };
        let mut sub_path = sub_path.map(str::to_owned);
        let (base, extracted) = match source {
            ContextSource::Dir(dir) => (dir, None),
            ContextSource::Git(git) => {
                let temp = tempfile::Builder::new()
                    .prefix("git-context-")
                    .tempdir_in(scratch)
                    .map_err(|e| bad(e.to_string()))?;
                git.fetch_into(temp.path()).map_err(&bad)?;
                // `#REF:SUBDIR` first, then --context-sub-path inside it.
                if let Some(subdir) = &git.subdir {
                    sub_path = Some(match sub_path.filter(|s| !s.is_empty()) {
                        Some(inner) => format!("{subdir}/{inner}"),
                        None => subdir.clone(),
                    });
                }
                (temp.path().to_path_buf(), Some(temp))
            }
            ContextSource::Tar(path) => {
                let file = std::fs::File::open(&path).map_err(|e| bad(e.to_string()))?;
                let temp = extract(file, scratch).map_err(&bad)?;
                (temp.path().to_path_buf(), Some(temp))
            }
            ContextSource::Reader(reader) => {
                let temp = extract(reader, scratch).map_err(&bad)?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let base = rbuild_fs::Root::open(&base).map_err(|e| match e {
            rbuild_fs::FsError::Io { source, .. }
                if source.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                bad("not a directory".into())
            }
            rbuild_fs::FsError::Io { source, .. } => bad(source.to_string()),
            other => bad(other.to_string()),
        })?;
        // The sub-path is resolved inside the context: a symlink in it is followed as it would
        // be with the context as `/`, never to the host's directories.
        let fs = match sub_path.as_deref().filter(|s| !s.is_empty()) {
            None => base,
            Some(sub) => {
                let cleaned = crate::dockerignore::go_clean(sub.trim_start_matches('/'));
                if cleaned.starts_with("..") {
                    return Err(bad(format!("context sub-path {sub:?} leaves the context")));
                }
                base.open_subdir(&cleaned).map_err(|e| {
                    bad(format!(
                        "context sub-path {sub:?} is not a directory in the context: {e}"
                    ))
                })?
            }
        };
        Ok(BuildContext {
            root: fs.path().to_path_buf(),
            fs,
            ignore: IgnoreMatcher::default(),
            _extracted: extracted,
            digests: Default::default(),
        })
    }

    /// The digest of what `patterns` name in the context after `.dockerignore`, leaving out
    /// `excludes` (`COPY --exclude`): names, types, modes and contents, as COPY's cache key
    /// reads them ([`crate::input_digest::sources_digest`]). Computed once per build for the
    /// same patterns and excludes.
    pub(crate) fn sources_digest(
        &self,
        patterns: &[String],
        excludes: &[String],
    ) -> Result<crate::input_digest::SourcesDigest, String> {
        let memo_key = format!("{}\u{1}{}", patterns.join("\0"), excludes.join("\0"));
        let memo = || self.digests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = memo().get(&memo_key) {
            return Ok(d.clone());
        }
        let excludes = IgnoreMatcher::parse(&excludes.join("\n")).map_err(|e| e.to_string())?;
        let root = crate::copy::SourceRoot {
            root: &self.fs,
            label: "build context".into(),
            ignore: Some(&self.ignore),
            keep_owner: false,
            owners: None,
        };
        let digest = crate::input_digest::sources_digest(&root, patterns, &excludes)?;
        memo().insert(memo_key, digest.clone());
        Ok(digest)
    }

    /// The context's tree: every path of a step is resolved inside it.
    pub fn fs_root(&self) -> &rbuild_fs::Root {
        &self.fs
    }

    /// The context's root directory on disk.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Loads the ignore file for `dockerfile` (a path inside or outside the context, if the
    /// Dockerfile is a file): `<Dockerfile>.dockerignore` first, then `.dockerignore` at the
    /// context root.
    pub fn load_ignore(&mut self, dockerfile: Option<&Path>) -> Result<(), BuildError> {
        // `<Dockerfile>.dockerignore` and `.dockerignore` inside the context are read inside it
        // (a symlink there cannot name a host file); a Dockerfile outside the context is the
        // operator's, and so is its ignore file.
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_os_string();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(self.root.join(".dockerignore"));
        let mut text = None;
        for file in candidates {
            match self.read_text(&file) {
                Ok(t) => {
                    text = Some((t, file));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BuildError::io("read", file)(e)),
            }
        }
        if let Some((text, file)) = text {
            self.ignore = IgnoreMatcher::parse(&text).map_err(|source| BuildError::Ignore {
                file: file.clone(),
                source,
            })?;
            tracing::debug!(file = %file.display(), patterns = self.ignore.patterns().len(), "ignore file");
        }
        Ok(())
    }

    /// The text of the file at `path`: relative to the context or below its root, read
    /// inside the context (symlinks followed only there); elsewhere, the operator's path.
    pub(crate) fn read_text(&self, path: &Path) -> std::io::Result<String> {
        let rel = match path.strip_prefix(&self.root) {
            Ok(rel) => rel,
            Err(_) if path.is_relative() => path,
            Err(_) => return std::fs::read_to_string(path),
        };
        let mut file = self.fs.open_file(rel).map_err(|e| match e {
            rbuild_fs::FsError::Io { source, .. } => source,
            other => std::io::Error::other(other),
        })?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text)
    }

    /// The ignore patterns in force.
    pub fn ignore(&self) -> &IgnoreMatcher {
        &self.ignore
    }

    /// Whether `rel` (relative to the root) is hidden by `.dockerignore`.
    pub fn is_ignored(&self, rel: &str) -> bool {
        !self.ignore.is_empty() && self.ignore.is_ignored(rel)
    }
}

fn extract(reader: impl Read, scratch: &Path) -> Result<tempfile::TempDir, String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let temp = tempfile::Builder::new()
        .prefix("context-")
        .tempdir_in(scratch)
        .map_err(|e| e.to_string())?;
    let options = rbuild_layer::ApplyOptions {
        expected_diff_id: None,
        set_owners: false,
    };
    rbuild_layer::apply_layer(reader, temp.path(), &options)
        .map_err(|e| format!("extracting the context tar: {e}"))?;
    Ok(temp)
}
