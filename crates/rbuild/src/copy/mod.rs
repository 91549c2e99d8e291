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
use staging::{EntryMeta, Staging};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Where sources are read from.
pub struct SourceRoot<'a> {
    /// The directory sources are relative to.
    pub dir: &'a Path,
    /// How errors name it (`build context`, `stage build`...).
    pub label: String,
    /// `.dockerignore` (context sources only).
    pub ignore: Option<&'a IgnoreMatcher>,
    /// Keep the sources' owners when no `--chown` is given (`--from` and archives do; context
    /// files become root's).
    pub keep_owner: bool,
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
    let dest_abs = staging.resolve(&dest_abs);
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
                    format!("{}/{}", dest_abs.trim_end_matches('/'), doc.name)
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
                remote::add_url(src, request, &dest_abs, dest_slash, staging)?;
            }
            CopySource::Path(src) => {
                let matches = find_sources(src, root).map_err(|e| format!("{kw} failed: {e}"))?;
                let many = matches.len() > 1;
                for rel in matches {
                    let on_disk = source_path(root.dir, &rel);
                    let meta = fs::symlink_metadata(&on_disk)
                        .map_err(|e| format!("{kw} failed: {rel}: {e}"))?;
                    // The named source itself is followed when it is a symlink.
                    let (on_disk, meta) = if meta.file_type().is_symlink() {
                        match staging::resolve_in_root(root.dir, &format!("/{rel}")) {
                            Some(p) => {
                                let p = root.dir.join(p.trim_start_matches('/'));
                                match fs::metadata(&p) {
                                    Ok(m) => (p, m),
                                    Err(_) => (on_disk, meta),
                                }
                            }
                            None => (on_disk, meta),
                        }
                    } else {
                        (on_disk, meta)
                    };
                    let kept = if request.parents {
                        kept_parents(&rel)
                    } else {
                        None
                    };
                    if meta.is_dir() {
                        let target = match &kept {
                            Some(k) if k != "." => {
                                format!("{}/{k}", dest_abs.trim_end_matches('/'))
                            }
                            _ => dest_abs.clone(),
                        };
                        // A missing destination is made like its missing parents: 0755 (or
                        // the --chmod mode) and root's (or the --chown owner's), never with
                        // the source directory's own metadata (fsutil copy.go
                        // prepareTargetDir: MkdirAll(dest, 0755, chown) before the copy,
                        // which then leaves an existing target's metadata alone).
                        staging.ensure_dir(&target).map_err(|e| e.to_string())?;
                        copy_tree(&on_disk, &rel, &target, request, root, staging)?;
                        continue;
                    }
                    let base = rel.rsplit('/').next().unwrap_or(&rel).to_string();
                    let target = match &kept {
                        Some(k) => format!("{}/{k}", dest_abs.trim_end_matches('/')),
                        None if dest_slash || many || staging.is_dir_in_stage(&dest_abs) => {
                            format!("{}/{base}", dest_abs.trim_end_matches('/'))
                        }
                        None => dest_abs.clone(),
                    };
                    if request.unpack && meta.is_file() && archive::is_archive(&on_disk) {
                        archive::add_archive(&on_disk, &dest_abs, request, staging)?;
                        continue;
                    }
                    copy_entry(&on_disk, &meta, &target, request, root, staging)?;
                }
            }
        }
    }
    Ok(())
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
fn kept_parents(rel: &str) -> Option<String> {
    Some(match rel.split_once("/./") {
        Some((_, kept)) => kept.to_string(),
        None => rel.to_string(),
    })
}

pub(crate) fn source_path(root: &Path, rel: &str) -> std::path::PathBuf {
    if rel == "." {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// The source paths `pattern` names under `root` (relative, cleaned), ignored ones left out.
pub(crate) fn find_sources(pattern: &str, root: &SourceRoot<'_>) -> Result<Vec<String>, String> {
    let pivot = pattern.contains("/./");
    let mut rel = go_clean(pattern.trim_start_matches('/'));
    while let Some(rest) = rel.strip_prefix("../") {
        rel = rest.to_string();
    }
    if rel == ".." {
        rel = ".".into();
    }
    let hidden = |r: &str| {
        r != "."
            && root
                .ignore
                .is_some_and(|i| !i.is_empty() && i.is_ignored(r))
    };
    if !has_glob(&rel) {
        let path = source_path(root.dir, &rel);
        if fs::symlink_metadata(&path).is_err() || hidden(&rel) {
            return Err(format!(
                "file not found in {}: {}",
                root.label,
                pattern.trim_start_matches("./")
            ));
        }
        if pivot {
            if let Some((head, tail)) = pattern.trim_start_matches('/').split_once("/./") {
                return Ok(vec![format!("{}/./{}", go_clean(head), go_clean(tail))]);
            }
        }
        return Ok(vec![rel]);
    }
    let mut current = vec![String::new()];
    for part in rel.split('/') {
        let mut next = Vec::new();
        for dir in &current {
            if !has_glob(part) {
                let candidate = if dir.is_empty() {
                    part.to_string()
                } else {
                    format!("{dir}/{part}")
                };
                if fs::symlink_metadata(source_path(root.dir, &candidate)).is_ok() {
                    next.push(candidate);
                }
                continue;
            }
            let Ok(entries) = fs::read_dir(source_path(
                root.dir,
                if dir.is_empty() { "." } else { dir },
            )) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                if glob_match(part, &name).map_err(|e| e.to_string())? {
                    next.push(if dir.is_empty() {
                        name
                    } else {
                        format!("{dir}/{name}")
                    });
                }
            }
        }
        current = next;
    }
    Ok(current.into_iter().filter(|r| !hidden(r)).collect())
}

fn copy_entry(
    on_disk: &Path,
    meta: &fs::Metadata,
    target: &str,
    request: &CopyRequest<'_>,
    root: &SourceRoot<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let (uid, gid) = match request.chown {
        Some(o) => o,
        None if root.keep_owner => (meta.uid(), meta.gid()),
        None => (0, 0),
    };
    let mtime = (meta.mtime(), meta.mtime_nsec() as u32);
    let ft = meta.file_type();
    if ft.is_symlink() {
        let link = fs::read_link(on_disk).map_err(|e| format!("{}: {e}", on_disk.display()))?;
        return staging
            .put_symlink(
                target,
                &link,
                EntryMeta {
                    mode: 0o777,
                    uid,
                    gid,
                    mtime,
                },
            )
            .map_err(|e| e.to_string());
    }
    if !ft.is_file() {
        tracing::debug!(path = %on_disk.display(), "special file skipped by COPY");
        return Ok(());
    }
    let mode = request
        .chmod
        .as_ref()
        .map_or(meta.mode() & 0o7777, |c| c.apply(meta.mode(), false));
    let mut file = fs::File::open(on_disk).map_err(|e| format!("{}: {e}", on_disk.display()))?;
    staging
        .put_file(
            target,
            &mut file,
            EntryMeta {
                mode,
                uid,
                gid,
                mtime,
            },
        )
        .map_err(|e| e.to_string())?;
    copy_layer_xattrs(on_disk, &staging.path_of(target));
    Ok(())
}

/// The one extended attribute a BuildKit layer carries (see [`rbuild_layer::LAYER_XATTR`]:
/// containerd's tar writer, which BuildKit's `util/overlay` `WriteUpperdir` and its walking
/// differ feed, writes `security.capability` and no other), so the `user.*`, `trusted.*` and
/// other xattrs fsutil transfers and copies never reach the image.
pub use rbuild_layer::LAYER_XATTR;

/// Copies the xattr a layer keeps ([`LAYER_XATTR`]) from `from` to `to`. One that cannot be
/// set here (no privilege, a file system without xattrs) is skipped with a warning rather than
/// failing the COPY, as BuildKit's `docopy` does with its xattr error handler.
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

fn copy_tree(
    dir: &Path,
    rel: &str,
    target: &str,
    request: &CopyRequest<'_>,
    root: &SourceRoot<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    copy_tree_at(dir, rel, "", target, request, root, staging)
}

fn copy_tree_at(
    dir: &Path,
    rel: &str,
    inner: &str,
    target: &str,
    request: &CopyRequest<'_>,
    root: &SourceRoot<'_>,
    staging: &mut Staging<'_>,
) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let child_rel = if rel == "." {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let child_inner = if inner.is_empty() {
            name.clone()
        } else {
            format!("{inner}/{name}")
        };
        let path = dir.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !request.excludes.is_empty()
            && (request.excludes.is_ignored(&child_inner)
                || request.excludes.is_ignored(&child_rel))
        {
            continue;
        }
        let ignored = root
            .ignore
            .is_some_and(|i| !i.is_empty() && i.is_ignored(&child_rel));
        let child_target = format!("{}/{name}", target.trim_end_matches('/'));
        if meta.is_dir() {
            if ignored
                && !root
                    .ignore
                    .is_some_and(|i| i.may_reinclude_below(&child_rel))
            {
                continue;
            }
            staging
                .ensure_dir(&child_target)
                .map_err(|e| e.to_string())?;
            let (uid, gid) = match request.chown {
                Some(o) => o,
                None if root.keep_owner => (meta.uid(), meta.gid()),
                None => (0, 0),
            };
            let mode = request
                .chmod
                .as_ref()
                .map_or(meta.mode() & 0o7777, |c| c.apply(meta.mode(), true));
            staging
                .set_dir_meta(
                    &child_target,
                    EntryMeta {
                        mode,
                        uid,
                        gid,
                        mtime: (meta.mtime(), meta.mtime_nsec() as u32),
                    },
                )
                .map_err(|e| e.to_string())?;
            copy_tree_at(
                &path,
                &child_rel,
                &child_inner,
                &child_target,
                request,
                root,
                staging,
            )?;
        } else if !ignored {
            copy_entry(&path, &meta, &child_target, request, root, staging)?;
        }
    }
    Ok(())
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
