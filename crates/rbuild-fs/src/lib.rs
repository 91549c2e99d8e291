//! Paths inside a root, always.
//!
//! Everything a build reads from a user-controlled tree (the context, a stage's or an image's
//! filesystem, an extracted archive) and everything it writes into a tree it stages is
//! resolved inside that tree's root, component by component, by the kernel
//! (`openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`): a symlink is followed only inside the
//! root it belongs to, as BuildKit resolves COPY sources, and `..` stops at the root. Paths are
//! bytes (`OsStr`): a name need not be UTF-8.
//!
//! - [`Root`]: open, stat, list, read links, create and remove entries, set metadata;
//! - [`walk`]: the one walker, for COPY, ADD, cache keys and `RUN --mount` copies;
//! - [`resolve_in_root`]: the same resolution in user space, for a view made of two trees.
//!
//! ```
//! # fn main() -> Result<(), rbuild_fs::FsError> {
//! let dir = tempfile::tempdir().unwrap();
//! std::os::unix::fs::symlink("/etc", dir.path().join("etclink")).unwrap();
//! let root = rbuild_fs::Root::open(dir.path())?;
//! // `etclink/hostname` is `/etc/hostname` inside the root, which does not exist there.
//! assert!(root.open_file("etclink/hostname").unwrap_err().is_not_found());
//! let mut seen = Vec::new();
//! rbuild_fs::walk(&root, "".as_ref(), true, &mut |e| {
//!     seen.push(e.rel.to_path_buf());
//!     Ok::<_, rbuild_fs::FsError>(rbuild_fs::Visit::Continue)
//! })?;
//! assert_eq!(seen, ["".into(), std::path::PathBuf::from("etclink")]);
//! # Ok(()) }
//! ```

mod error;
mod meta;
mod resolve;
mod root;
mod walk;

pub use error::FsError;
pub use meta::{FileMeta, Kind};
pub use resolve::{resolve_in_root, Node, MAX_SYMLINKS};
pub use root::{read_xattrs, set_meta_of, Root, SetMeta};
pub use walk::{walk, Visit, WalkEntry};
