//! The digest of what a COPY/ADD reads (DESIGN.md §1): for every source, after
//! `.dockerignore`, each path's name, type, mode, owner (where kept) and content, never its
//! mtime. It feeds the step's cache key, so a touched but unchanged file keeps the cache.

use crate::copy::{find_sources, source_path, SourceRoot};
use rbuild_oci::{Digest, Sha256Hasher};
use rbuild_plan::KeyEncoder;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The digest of the files `patterns` name under `root`.
pub fn sources_digest(root: &SourceRoot<'_>, patterns: &[String]) -> Result<Digest, String> {
    let mut encoder = KeyEncoder::new("sources");
    for pattern in patterns {
        encoder.field("pattern", pattern.as_bytes());
        for rel in find_sources(pattern, root)? {
            let path = source_path(root.dir, &rel);
            // The named source is followed when it is a symlink, as COPY does.
            let meta = fs::metadata(&path)
                .or_else(|_| fs::symlink_metadata(&path))
                .map_err(|e| format!("{rel}: {e}"))?;
            hash_entry(&mut encoder, root, &rel, &path, &meta)?;
        }
    }
    Ok(encoder.finish())
}

fn hash_entry(
    encoder: &mut KeyEncoder,
    root: &SourceRoot<'_>,
    rel: &str,
    path: &Path,
    meta: &fs::Metadata,
) -> Result<(), String> {
    encoder.field("path", rel.as_bytes());
    encoder.field("mode", format!("{:o}", meta.mode()).as_bytes());
    if root.keep_owner {
        encoder.field("owner", format!("{}:{}", meta.uid(), meta.gid()).as_bytes());
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|e| format!("{rel}: {e}"))?;
        encoder.field("symlink", target.to_string_lossy().as_bytes());
    } else if ft.is_file() {
        let mut hasher = Sha256Hasher::new();
        let mut file = fs::File::open(path).map_err(|e| format!("{rel}: {e}"))?;
        std::io::copy(&mut file, &mut hasher).map_err(|e| format!("{rel}: {e}"))?;
        encoder.field("content", hasher.finish().0.as_str().as_bytes());
    } else if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .map_err(|e| format!("{rel}: {e}"))?
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
            let child = path.join(&name);
            let child_meta =
                fs::symlink_metadata(&child).map_err(|e| format!("{child_rel}: {e}"))?;
            let ignored = root
                .ignore
                .is_some_and(|i| !i.is_empty() && i.is_ignored(&child_rel));
            if ignored
                && !(child_meta.is_dir()
                    && root
                        .ignore
                        .is_some_and(|i| i.may_reinclude_below(&child_rel)))
            {
                continue;
            }
            hash_entry(encoder, root, &child_rel, &child, &child_meta)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerignore::IgnoreMatcher;

    #[test]
    fn content_mode_matter_mtime_and_ignored_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/a"), "a").unwrap();
        std::fs::write(dir.path().join("d/x.log"), "1").unwrap();
        let ignore = IgnoreMatcher::parse("*.log\n**/*.log\n").unwrap();
        let root = SourceRoot {
            dir: dir.path(),
            label: "ctx".into(),
            ignore: Some(&ignore),
            keep_owner: false,
        };
        let pats = vec!["d".to_string()];
        let first = sources_digest(&root, &pats).unwrap();
        std::fs::write(dir.path().join("d/x.log"), "2").unwrap();
        let t = filetime::FileTime::from_unix_time(12345, 0);
        filetime::set_file_mtime(dir.path().join("d/a"), t).unwrap();
        assert_eq!(
            sources_digest(&root, &pats).unwrap(),
            first,
            "ignored file and mtime do not count"
        );
        std::fs::write(dir.path().join("d/a"), "b").unwrap();
        let changed = sources_digest(&root, &pats).unwrap();
        assert_ne!(changed, first);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("d/a"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(sources_digest(&root, &pats).unwrap(), changed);
        assert!(sources_digest(&root, &["missing".to_string()]).is_err());
    }
}
