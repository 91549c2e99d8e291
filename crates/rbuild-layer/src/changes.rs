//! A change set: which paths of a tree a layer adds or replaces, deletes, or makes opaque.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::LayerError;

/// What happened to one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// Added or modified: the layer carries the path as it is now in the source tree.
    Upsert,
    /// Deleted: the layer carries a whiteout `.wh.<name>`.
    Delete,
    /// A directory (present in the source tree) that hides everything below it in the layers
    /// beneath: the layer carries the directory and an opaque marker `.wh..wh..opq`.
    OpaqueDir,
}

/// The changes one layer carries, keyed by clean relative paths (no `.`, `..` or root).
///
/// Iteration is in the order of path components compared as bytes, so parents come before
/// their children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    entries: BTreeMap<PathBuf, Change>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `change` for `path` (replacing an earlier one for the same path).
    ///
    /// Fails when `path` is empty, absolute or has `.` or `..` components.
    pub fn insert(&mut self, path: impl AsRef<Path>, change: Change) -> Result<(), LayerError> {
        let path = clean_relative(path.as_ref())?;
        self.entries.insert(path, change);
        Ok(())
    }

    /// The change recorded for `path`, if any.
    pub fn get(&self, path: impl AsRef<Path>) -> Option<Change> {
        self.entries.get(path.as_ref()).copied()
    }

    /// The number of changed paths.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The changes, parents before children.
    pub fn iter(&self) -> btree_map::Iter<'_, PathBuf, Change> {
        self.entries.iter()
    }

    /// Every path under `root` (not `root` itself) as an [`Change::Upsert`]: the change set that
    /// writes a whole tree as a layer. Symbolic links are listed, never followed.
    pub fn whole_tree(root: &Path) -> Result<ChangeSet, LayerError> {
        let mut set = ChangeSet::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let read = fs::read_dir(&dir).map_err(|e| LayerError::io("listing", &dir, e))?;
            for entry in read {
                let entry = entry.map_err(|e| LayerError::io("listing", &dir, e))?;
                let child = rel.join(entry.file_name());
                let file_type = entry
                    .file_type()
                    .map_err(|e| LayerError::io("inspecting", root.join(&child), e))?;
                if file_type.is_dir() {
                    stack.push(child.clone());
                }
                set.entries.insert(child, Change::Upsert);
            }
        }
        Ok(set)
    }
}

impl<'a> IntoIterator for &'a ChangeSet {
    type Item = (&'a PathBuf, &'a Change);
    type IntoIter = btree_map::Iter<'a, PathBuf, Change>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// `path` as a clean relative path: only normal components, at least one.
pub(crate) fn clean_relative(path: &Path) -> Result<PathBuf, LayerError> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(LayerError::InvalidPath {
                    path: path.to_owned(),
                    reason: "has a `..` component",
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(LayerError::InvalidPath {
                    path: path.to_owned(),
                    reason: "is absolute",
                })
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(LayerError::InvalidPath {
            path: path.to_owned(),
            reason: "is empty (the root itself)",
        });
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_puts_parents_before_children_in_component_byte_order() {
        let mut set = ChangeSet::new();
        for p in ["a.b", "a/b", "a", "a-b", "b/c/d", "b"] {
            set.insert(p, Change::Upsert).unwrap();
        }
        let order: Vec<_> = set.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(order, ["a", "a/b", "a-b", "a.b", "b", "b/c/d"]);
    }

    #[test]
    fn unclean_paths_are_rejected() {
        let mut set = ChangeSet::new();
        assert!(set.insert("../x", Change::Upsert).is_err());
        assert!(set.insert("/etc/passwd", Change::Upsert).is_err());
        assert!(set.insert(".", Change::Upsert).is_err());
        set.insert("./a/./b", Change::Delete).unwrap();
        assert_eq!(set.get("a/b"), Some(Change::Delete));
    }
}
