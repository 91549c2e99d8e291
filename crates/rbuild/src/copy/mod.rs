//! COPY and ADD with BuildKit's semantics, staged into a tree that becomes the step's layer:
//! sources relative to the context (or a stage's / image's root), globs, a directory's contents
//! copied rather than the directory, trailing-slash destination rules, `--chown`, `--chmod`,
//! `--parents`, `--exclude`, heredoc sources, and for ADD local archives extracted and
//! `http://` URLs fetched.

mod archive;
pub mod chmod;
pub mod owner;
mod remote;
pub mod staging;

use crate::dockerignore::{glob_match, go_clean, has_glob, IgnoreMatcher};
use crate::image_state::normalize_workdir;
use chmod::Chmod;
use rbuild_dockerfile::CopySource;
use rbuild_fs::{FileMeta, FsError, Kind, Root, Visit, WalkEntry};
use staging::{EntryMeta, Staging};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where sources are read from.
pub struct SourceRoot<'a> {
    /// The tree sources are relative to: every path is resolved inside it, a symlink followed
    /// only inside it.
    pub root: &'a Root,
    /// How errors name it (`build context`, `stage build`...).
    pub label: String,
    /// `.dockerignore` (context sources only).
    pub ignore: Option<&'a IgnoreMatcher>,
    /// Keep the sources' owners when no `--chown` is given (`--from` and archives do; context
    /// files become root's).
    pub keep_owner: bool,
    /// With `keep_owner`: the owners the image's layers give its paths (relative to the
    /// root), used instead of the files' when the builder could not give files their owners
    /// (it is not root).
    pub owners: Option<&'a rbuild_layer::OwnerMap>,
}

impl SourceRoot<'_> {
    /// Whether `.dockerignore` hides `rel` (relative to the root).
    fn hides(&self, rel: &Path) -> bool {
        rel != Path::new(".")
            && self
                .ignore
                .is_some_and(|i| !i.is_empty() && i.is_ignored(&rel.to_string_lossy()))
    }

    /// Whether the walk must skip `rel` (below a source), by `.dockerignore` and `--exclude`
    /// (`inner` is `rel` relative to the source being copied).
    pub(crate) fn skips(
        &self,
        excludes: &IgnoreMatcher,
        rel: &Path,
        inner: &Path,
        is_dir: bool,
    ) -> bool {
        if !excludes.is_empty()
            && (excludes.is_ignored(&inner.to_string_lossy())
                || excludes.is_ignored(&rel.to_string_lossy()))
        {
            return true;
        }
        self.hides(rel)
            && !(is_dir
                && self
                    .ignore
                    .is_some_and(|i| i.may_reinclude_below(&rel.to_string_lossy())))
    }
}

/// One COPY or ADD, after expansion.
pub struct CopyRequest<'a> {
    /// `COPY` or `ADD`.
    pub keyword: &'static str,
    /// Sources in order.
    pub sources: &'a [CopySource],
    /// Destination as written.
    pub dest: &'a str,
    /// The stage's working directory.
    pub workdir: String,
    /// `--chown`, resolved.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, parsed.
    pub chmod: Option<Chmod>,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: IgnoreMatcher,
    /// ADD: extract local archives.
    pub unpack: bool,
    /// ADD `--checksum` for a URL.
    pub checksum: Option<String>,
    /// The build time, for entries with no time of their own.
    pub time: i64,
    /// How ADD URLs are fetched: the build's registry options (TLS, certificates, retries,
    /// timeouts), never its credentials; `None` for the defaults.
    pub url_options: Option<rbuild_registry::RegistryOptions>,
}

/// Stages everything `request` copies from `root` into `staging`. Errors are one line,
/// starting with `COPY failed:` / `ADD failed:` where the source is at fault.
pub fn stage_copy(
    request: &CopyRequest<'_>,
    root: &SourceRoot<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let kw = request.keyword;
    // A relative destination is taken from WORKDIR, as WORKDIR itself is.
    let dest_abs = normalize_workdir(&request.workdir, request.dest);
    let dest_slash = request.dest.ends_with('/') || request.dest == "." || request.dest.is_empty();
    if request.sources.len() > 1 && !dest_slash {
        return Err(format!(
            "When using {kw} with more than one source file, the destination must be a directory and end with a /"
        ));
    }
    let dest_abs = staging.resolve(&dest_abs).map_err(|e| e.to_string())?;
    if request.checksum.is_some() {
        // BuildKit's dispatchCopy (dockerfile2llb/convert.go) checks this before any copy.
        match request.sources {
            [CopySource::Path(src)]
                if src.starts_with("http://") || src.starts_with("https://") || is_git_url(src) => {
            }
            [_] => {
                return Err(format!(
                    "{kw} failed: checksum requires HTTP(S) or Git sources"
                ))
            }
            _ => {
                return Err(format!(
                    "{kw} failed: checksum can't be specified for multiple sources"
                ))
            }
        }
    }
    for source in request.sources {
        match source {
            CopySource::Heredoc(doc) => {
                let target = if dest_slash || staging.is_dir_in_stage(&dest_abs) {
                    dest_abs.join(&doc.name)
                } else {
                    dest_abs.clone()
                };
                let mode = request
                    .chmod
                    .as_ref()
                    .map_or(0o644, |c| c.apply(0o644, false));
                let (uid, gid) = request.chown.unwrap_or((0, 0));
                let content = doc.chomped_content();
                staging
                    .put_file(
                        &target,
                        &mut content.as_bytes(),
                        EntryMeta {
                            mode,
                            uid,
                            gid,
                            mtime: (request.time, 0),
                        },
                    )
                    .map_err(|e| e.to_string())?;
            }
            CopySource::Path(src) if is_git_url(src) => {
                if kw != "ADD" {
                    return Err("source can't be a git ref for COPY".into());
                }
                return Err(format!(
                    "ADD failed: git repositories as sources are not supported yet: {src}"
                ));
            }
            CopySource::Path(src) if src.starts_with("http://") || src.starts_with("https://") => {
                if kw != "ADD" {
                    return Err("source can't be a URL for COPY".into());
                }
                let dest = dest_abs.to_string_lossy();
                remote::add_url(src, request, &dest, dest_slash, staging)?;
            }
            CopySource::Path(src) => {
                let matches = find_sources(src, root).map_err(|e| format!("{kw} failed: {e}"))?;
                let many = matches.len() > 1;
                for rel in matches {
                    let source = OneSource {
                        rel: &rel,
                        must_follow: names_a_directory(src),
                        many,
                        dest_abs: &dest_abs,
                        dest_slash,
                    };
                    copy_source(&source, request, root, staging).map_err(|e| match e {
                        WalkFail::Fs(e) => format!("{kw} failed: {}: {e}", root.label),
                        WalkFail::Message(m) => m,
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// Why copying one source stopped.
enum WalkFail {
    /// Reading the source tree failed.
    Fs(FsError),
    /// Anything else, already a full message.
    Message(String),
}

impl From<FsError> for WalkFail {
    fn from(e: FsError) -> Self {
        WalkFail::Fs(e)
    }
}

impl From<crate::error::BuildError> for WalkFail {
    fn from(e: crate::error::BuildError) -> Self {
        WalkFail::Message(e.to_string())
    }
}

/// One matched source path and where its copy goes.
struct OneSource<'p> {
    /// The path relative to the source root (`a/./b` keeps `--parents`' pivot).
    rel: &'p Path,
    /// Whether the pattern ends with `/` (a symlink must then lead to something).
    must_follow: bool,
    /// Whether the pattern matched more than one path.
    many: bool,
    /// The resolved destination.
    dest_abs: &'p Path,
    /// Whether the destination is a directory by its spelling.
    dest_slash: bool,
}

/// Copies one source (a file, symlink or whole directory) with the walker; the named source
/// itself is followed when it is a symlink (inside its root), a dangling one copied as is.
fn copy_source(
    source: &OneSource<'_>,
    request: &CopyRequest<'_>,
    root: &SourceRoot<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), WalkFail> {
    let rel = source.rel;
    let follow = follow_source(root.root, rel, source.must_follow).map_err(|e| {
        if e.is_not_found() {
            WalkFail::Message(format!(
                "{} failed: file not found in {}: {}/ (a symlink to nothing inside it)",
                request.keyword,
                root.label,
                rel.display()
            ))
        } else {
            WalkFail::Fs(e)
        }
    })?;
    let kept = request.parents.then(|| kept_parents(rel));
    let mut top_target = PathBuf::new();
    // Where the source really is in its root, for the recorded owners.
    let real_start = match root.owners {
        Some(_) => root.root.resolve(rel, follow)?,
        None => PathBuf::new(),
    };
    let owned = |entry: &WalkEntry<'_>| {
        let mut meta = entry.meta;
        if let Some(owners) = root.owners {
            let real = real_start.join(entry.rel);
            let real = if entry.rel.as_os_str().is_empty() {
                real_start.clone()
            } else {
                real
            };
            if let Some(&(uid, gid)) = owners.get(&real) {
                meta.uid = uid;
                meta.gid = gid;
            }
        }
        meta
    };
    rbuild_fs::walk(root.root, rel, follow, &mut |entry: &WalkEntry<'_>| {
        let meta = owned(entry);
        if entry.rel.as_os_str().is_empty() {
            let top = Top {
                source,
                kept: kept.as_deref(),
                meta: &meta,
            };
            return copy_top(&top, entry, &mut top_target, request, root, staging);
        }
        let full_rel = join_rel(rel, entry.rel);
        let is_dir = entry.meta.is_dir();
        if root.skips(&request.excludes, &full_rel, entry.rel, is_dir) {
            return Ok(Visit::SkipChildren);
        }
        let target = top_target.join(entry.rel);
        if is_dir {
            staging.refuse_image_link(&top_target, entry.rel)?;
            staging.ensure_dir(&target)?;
            staging.set_dir_meta(&target, dir_meta(&meta, request, root))?;
        } else {
            copy_entry(entry, &meta, &target, request, root, staging)?;
        }
        Ok(Visit::Continue)
    })
}

/// The source itself, as [`copy_top`] copies it.
struct Top<'t> {
    source: &'t OneSource<'t>,
    /// `--parents`: the part of the path kept.
    kept: Option<&'t Path>,
    /// Its metadata, owners as the image records them.
    meta: &'t FileMeta,
}

/// Whether the named source `rel` is followed: yes when it leads somewhere inside the root; a
/// dangling (or looping) symlink is copied as itself, unless the pattern ended with `/`.
pub(crate) fn follow_source(root: &Root, rel: &Path, must_follow: bool) -> Result<bool, FsError> {
    match root.metadata(rel) {
        Ok(_) => Ok(true),
        Err(e) if must_follow => Err(e),
        Err(e) if e.is_not_found() || matches!(e, FsError::TooManyLinks { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a source pattern names a directory by its spelling (`dir/`, `dir/.`).
pub(crate) fn names_a_directory(pattern: &str) -> bool {
    pattern.ends_with('/') || pattern.ends_with("/.")
}

/// The source itself: a directory's contents go into the destination, anything else to the
/// destination or a name in it.
fn copy_top(
    top: &Top<'_>,
    entry: &WalkEntry<'_>,
    top_target: &mut PathBuf,
    request: &CopyRequest<'_>,
    root: &SourceRoot<'_>,
    staging: &mut Staging<'_>,
) -> Result<Visit, WalkFail> {
    let (source, kept) = (top.source, top.kept);
    if entry.meta.is_dir() {
        *top_target = match kept {
            Some(k) if k != Path::new(".") && !k.as_os_str().is_empty() => source.dest_abs.join(k),
            _ => source.dest_abs.to_path_buf(),
        };
        // A missing destination is made like its missing parents: 0755 (or the --chmod
        // mode) and root's (or the --chown owner's), never with the source directory's own
        // metadata (fsutil copy.go prepareTargetDir: MkdirAll(dest, 0755, chown) before the
        // copy, which then leaves an existing target's metadata alone).
        staging.ensure_dir(&*top_target)?;
        return Ok(Visit::Continue);
    }
    let base = source.rel.file_name().unwrap_or(source.rel.as_os_str());
    let target = match kept {
        Some(k) => source.dest_abs.join(k),
        None if source.dest_slash || source.many || staging.is_dir_in_stage(source.dest_abs) => {
            source.dest_abs.join(base)
        }
        None => source.dest_abs.to_path_buf(),
    };
    if request.unpack && entry.meta.is_file() {
        let file = entry.open_file()?;
        // The archive code reads by path: the open file's own, never a second resolution.
        use std::os::fd::AsRawFd;
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if archive::is_archive(&by_fd) {
            let dest = source.dest_abs.to_string_lossy();
            let named = source.rel.display().to_string();
            archive::add_archive(&by_fd, &dest, request, staging)
                .map_err(|m| WalkFail::Message(m.replace(&by_fd.display().to_string(), &named)))?;
            return Ok(Visit::Continue);
        }
    }
    copy_entry(entry, top.meta, &target, request, root, staging)?;
    Ok(Visit::Continue)
}

/// `inner` below the source `rel` (`.` is the root itself).
fn join_rel(rel: &Path, inner: &Path) -> PathBuf {
    if rel == Path::new(".") || rel.as_os_str().is_empty() {
        inner.to_path_buf()
    } else if inner.as_os_str().is_empty() {
        rel.to_path_buf()
    } else {
        rel.join(inner)
    }
}

/// The owner of a copied entry: `--chown`, else the source's where kept, else root.
fn owner_of(meta: &FileMeta, request: &CopyRequest<'_>, root: &SourceRoot<'_>) -> (u32, u32) {
    match request.chown {
        Some(o) => o,
        None if root.keep_owner => (meta.uid, meta.gid),
        None => (0, 0),
    }
}

fn dir_meta(meta: &FileMeta, request: &CopyRequest<'_>, root: &SourceRoot<'_>) -> EntryMeta {
    let (uid, gid) = owner_of(meta, request, root);
    let mode = request
        .chmod
        .as_ref()
        .map_or(meta.permissions(), |c| c.apply(meta.mode, true));
    EntryMeta {
        mode,
        uid,
        gid,
        mtime: (meta.mtime, meta.mtime_nsec),
    }
}

/// BuildKit's notion of a git source: `git@…`, `git://…`, `github.com/…`, or a URL whose path
/// ends in `.git` (before an optional `#ref:subdir` fragment).
fn is_git_url(src: &str) -> bool {
    let without_fragment = src.split_once('#').map_or(src, |(url, _)| url);
    src.starts_with("git@")
        || src.starts_with("git://")
        || src.starts_with("github.com/")
        || (src.contains("://") && without_fragment.ends_with(".git"))
}

/// `a/./b/c` keeps `b/c` (BuildKit's `--parents` pivot); otherwise the whole relative path.
fn kept_parents(rel: &Path) -> PathBuf {
    let bytes = rel.as_os_str().as_bytes();
    match bytes.windows(3).position(|w| w == b"/./") {
        Some(i) => PathBuf::from(OsStr::from_bytes(&bytes[i + 3..])),
        None => rel.to_path_buf(),
    }
}

/// The source paths `pattern` names under `root` (relative, cleaned), ignored ones left out.
/// A directory that cannot be listed while matching a glob is an error, not a non-match.
pub(crate) fn find_sources(pattern: &str, root: &SourceRoot<'_>) -> Result<Vec<PathBuf>, String> {
    let pivot = pattern.contains("/./");
    let mut rel = go_clean(pattern.trim_start_matches('/'));
    while let Some(rest) = rel.strip_prefix("../") {
        rel = rest.to_string();
    }
    if rel == ".." {
        rel = ".".into();
    }
    let not_found = || {
        format!(
            "file not found in {}: {}",
            root.label,
            pattern.trim_start_matches("./")
        )
    };
    if !has_glob(&rel) {
        match root.root.symlink_metadata(&rel) {
            Ok(_) if !root.hides(Path::new(&rel)) => {}
            Ok(_) => return Err(not_found()),
            Err(e) if is_missing(&e) => return Err(not_found()),
            Err(e) => return Err(format!("{}: {e}", root.label)),
        }
        if pivot {
            if let Some((head, tail)) = pattern.trim_start_matches('/').split_once("/./") {
                return Ok(vec![PathBuf::from(format!(
                    "{}/./{}",
                    go_clean(head),
                    go_clean(tail)
                ))]);
            }
        }
        return Ok(vec![PathBuf::from(rel)]);
    }
    let mut current = vec![PathBuf::new()];
    for part in rel.split('/') {
        let mut next = Vec::new();
        for dir in &current {
            if !has_glob(part) {
                let candidate = dir.join(part);
                match root.root.symlink_metadata(&candidate) {
                    Ok(_) => next.push(candidate),
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(format!("{}: {e}", root.label)),
                }
                continue;
            }
            let names = match root.root.read_dir(dir) {
                Ok(names) => names,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(format!("{}: {e}", root.label)),
            };
            for name in names {
                if glob_match(part, &name.to_string_lossy()).map_err(|e| e.to_string())? {
                    next.push(dir.join(name));
                }
            }
        }
        current = next;
    }
    // BuildKit: a wildcard that matches nothing is a source not found.
    let found: Vec<PathBuf> = current.into_iter().filter(|r| !root.hides(r)).collect();
    if found.is_empty() {
        return Err(not_found());
    }
    Ok(found)
}

/// Not there, or below something that is not a directory: no match rather than an error.
fn is_missing(e: &FsError) -> bool {
    match e {
        FsError::Io { source, .. } => {
            source.kind() == std::io::ErrorKind::NotFound
                || source.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
        }
        _ => false,
    }
}

/// Stages one non-directory entry: a symlink as a symlink, a regular file with its content
/// and extended attributes; devices, fifos and sockets are skipped, as BuildKit skips them.
fn copy_entry(
    entry: &WalkEntry<'_>,
    meta: &FileMeta,
    target: &Path,
    request: &CopyRequest<'_>,
    root: &SourceRoot<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), WalkFail> {
    let (uid, gid) = owner_of(meta, request, root);
    let mtime = (meta.mtime, meta.mtime_nsec);
    match meta.kind {
        Kind::Symlink => {
            let link = entry.read_link()?;
            let meta = EntryMeta {
                mode: 0o777,
                uid,
                gid,
                mtime,
            };
            staging.put_symlink(target, &link, meta)?;
            Ok(())
        }
        Kind::Special | Kind::Dir => {
            tracing::debug!(path = %entry.rel.display(), "special file skipped by COPY");
            Ok(())
        }
        Kind::File => {
            let mode = request
                .chmod
                .as_ref()
                .map_or(meta.permissions(), |c| c.apply(meta.mode, false));
            let mut file = entry.open_file()?;
            let xattrs = kept_xattrs(&file, entry.rel);
            let meta = EntryMeta {
                mode,
                uid,
                gid,
                mtime,
            };
            staging.put_file(target, &mut file, meta)?;
            if !xattrs.is_empty() {
                for (name, error) in staging.set_xattrs(target, &xattrs)? {
                    // A `trusted.*` or `security.*` name without the privilege, a file system
                    // without xattrs: BuildKit's copy goes on too.
                    tracing::warn!(
                        path = %entry.rel.display(),
                        xattr = %name.to_string_lossy(),
                        %error,
                        "extended attribute not copied"
                    );
                }
            }
            Ok(())
        }
    }
}

/// The one extended attribute a BuildKit layer carries (see [`rbuild_layer::LAYER_XATTR`]:
/// containerd's tar writer, which BuildKit's `util/overlay` `WriteUpperdir` and its walking
/// differ feed, writes `security.capability` and no other), so the `user.*`, `trusted.*` and
/// other xattrs fsutil transfers and copies never reach the image.
pub use rbuild_layer::LAYER_XATTR;

/// Copies the xattr a layer keeps ([`LAYER_XATTR`]) from `from` to `to` (for archive entries,
/// extracted into a directory of our own). One that cannot be set here (no privilege, a file
/// system without xattrs) is skipped with a warning rather than failing the ADD, as BuildKit's
/// `docopy` does with its xattr error handler.
pub(crate) fn copy_layer_xattrs(from: &Path, to: &Path) {
    let value = match xattr::get(from, LAYER_XATTR) {
        Ok(Some(value)) => value,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(path = %from.display(), error = %e, "no xattrs read");
            return;
        }
    };
    if let Err(e) = xattr::set(to, LAYER_XATTR, &value) {
        tracing::warn!(
            path = %from.display(),
            xattr = LAYER_XATTR,
            error = %e,
            "extended attribute not copied"
        );
    }
}

/// The xattrs of a copied file that its layer keeps: [`LAYER_XATTR`] alone.
fn kept_xattrs(file: &std::fs::File, rel: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    match rbuild_fs::read_xattrs(file) {
        Ok(all) => all
            .into_iter()
            .filter(|(name, _)| name.as_bytes() == LAYER_XATTR.as_bytes())
            .collect(),
        Err(e) => {
            tracing::debug!(path = %rel.display(), error = %e, "no xattrs read");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod git_url_tests {
    use super::is_git_url;

    #[test]
    fn git_sources_are_recognised_with_or_without_a_fragment() {
        for url in [
            "git@github.com:moby/buildkit.git",
            "git://example.com/repo",
            "https://example.com/project.git",
            "http://127.0.0.1:9/project.git#main",
            "https://example.com/project.git#v1.0:docs",
            "github.com/moby/buildkit",
        ] {
            assert!(is_git_url(url), "{url}");
        }
        for url in [
            "https://example.com/file.tar.gz",
            "https://example.com/a.git.txt#x",
        ] {
            assert!(!is_git_url(url), "{url}");
        }
    }
}
