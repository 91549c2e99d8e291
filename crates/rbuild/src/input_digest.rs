//! The digest of what a COPY/ADD reads (DESIGN.md §1): for every source, after
//! `.dockerignore`, each path's name, type, mode, owner (where kept) and content, never its
//! mtime. It feeds the step's cache key, so a touched but unchanged file keeps the cache.

use crate::copy::{find_sources, follow_source, names_a_directory, SourceRoot};
use rbuild_fs::{FsError, Kind, Visit};
use rbuild_oci::{Digest, Sha256Hasher};
use rbuild_plan::KeyEncoder;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The digest of a step's sources, and the digest of each path read (for the description of
/// its key, [`rbuild_plan::KeyInputs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesDigest {
    /// The digest of everything read.
    pub digest: Digest,
    /// Each path read (directories included) with the digest of its type, mode, owner (where
    /// kept) and content; empty when there were more than
    /// [`rbuild_plan::MAX_DESCRIBED_FILES`].
    pub files: BTreeMap<String, Digest>,
}

/// The digest of the files `patterns` name under `root`, leaving out what `excludes`
/// (`COPY --exclude`) leaves out. Every path is read inside the root, with the one walker
/// COPY uses.
pub fn sources_digest(
    root: &SourceRoot<'_>,
    patterns: &[String],
    excludes: &crate::IgnoreMatcher,
) -> Result<SourcesDigest, String> {
    let mut encoder = KeyEncoder::new("sources");
    let mut files = BTreeMap::new();
    for pattern in patterns {
        encoder.field("pattern", pattern.as_bytes());
        for rel in find_sources(pattern, root)? {
            hash_source(
                &mut encoder,
                &mut files,
                root,
                &rel,
                names_a_directory(pattern),
                excludes,
            )
            .map_err(|e| format!("{}: {e}", root.label))?;
        }
    }
    if files.len() > rbuild_plan::MAX_DESCRIBED_FILES {
        files.clear();
    }
    Ok(SourcesDigest {
        digest: encoder.finish(),
        files,
    })
}

/// Hashes one source and everything below it; the named source is followed when it is a
/// symlink (inside the root), as COPY does.
fn hash_source(
    encoder: &mut KeyEncoder,
    files: &mut BTreeMap<String, Digest>,
    root: &SourceRoot<'_>,
    rel: &Path,
    must_follow: bool,
    excludes: &crate::IgnoreMatcher,
) -> Result<(), FsError> {
    let follow = follow_source(root.root, rel, must_follow)?;
    rbuild_fs::walk(root.root, rel, follow, &mut |entry| {
        let full = if entry.rel.as_os_str().is_empty() {
            rel.to_path_buf()
        } else if rel == Path::new(".") {
            entry.rel.to_path_buf()
        } else {
            rel.join(entry.rel)
        };
        let is_dir = entry.meta.is_dir();
        if !entry.rel.as_os_str().is_empty() && root.skips(excludes, &full, entry.rel, is_dir) {
            return Ok(Visit::SkipChildren);
        }
        encoder.field("path", full.as_os_str().as_bytes());
        // The same fields again, for this path alone.
        let mut entry_encoder = KeyEncoder::new("source-entry");
        let mut both = |tag: &str, data: &[u8]| {
            encoder.field(tag, data);
            entry_encoder.field(tag, data);
        };
        both("mode", format!("{:o}", entry.meta.mode).as_bytes());
        if root.keep_owner {
            let owner = format!("{}:{}", entry.meta.uid, entry.meta.gid);
            both("owner", owner.as_bytes());
        }
        match entry.meta.kind {
            Kind::Symlink => {
                let target = entry.read_link()?;
                both("symlink", target.as_os_str().as_bytes());
            }
            Kind::File => {
                let mut hasher = Sha256Hasher::new();
                let mut file = entry.open_file()?;
                std::io::copy(&mut file, &mut hasher).map_err(|source| FsError::Io {
                    op: "read",
                    path: full.clone(),
                    source,
                })?;
                both("content", hasher.finish().0.as_str().as_bytes());
            }
            Kind::Dir | Kind::Special => {}
        }
        if files.len() <= rbuild_plan::MAX_DESCRIBED_FILES {
            let name = full.to_string_lossy().into_owned();
            files.insert(name, entry_encoder.finish());
        }
        Ok::<_, FsError>(Visit::Continue)
    })
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
        let fs_root = rbuild_fs::Root::open(dir.path()).unwrap();
        let root = SourceRoot {
            root: &fs_root,
            label: "ctx".into(),
            ignore: Some(&ignore),
            keep_owner: false,
            owners: None,
        };
        let pats = vec!["d".to_string()];
        let first = sources_digest(&root, &pats, &IgnoreMatcher::default()).unwrap();
        assert_eq!(
            first.files.keys().collect::<Vec<_>>(),
            ["d", "d/a"],
            "every path read, by name"
        );
        std::fs::write(dir.path().join("d/x.log"), "2").unwrap();
        let t = filetime::FileTime::from_unix_time(12345, 0);
        filetime::set_file_mtime(dir.path().join("d/a"), t).unwrap();
        assert_eq!(
            sources_digest(&root, &pats, &IgnoreMatcher::default()).unwrap(),
            first,
            "ignored file and mtime do not count"
        );
        std::fs::write(dir.path().join("d/a"), "b").unwrap();
        let changed = sources_digest(&root, &pats, &IgnoreMatcher::default()).unwrap();
        assert_ne!(changed.digest, first.digest);
        assert_eq!(changed.files["d"], first.files["d"]);
        assert_ne!(changed.files["d/a"], first.files["d/a"]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("d/a"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(
            sources_digest(&root, &pats, &IgnoreMatcher::default())
                .unwrap()
                .digest,
            changed.digest
        );
        assert!(
            sources_digest(&root, &["missing".to_string()], &IgnoreMatcher::default()).is_err()
        );
    }
}
