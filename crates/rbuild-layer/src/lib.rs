//! Layers for rbuild: find what a build step changed, write it as a deterministic OCI layer,
//! and apply layers onto a directory safely.
//!
//! - **Finding changes**: [`changes_from_overlay_upper`] reads an overlayfs upper directory
//!   (whiteout devices and opaque xattrs become layer markers); [`TreeScan::scan`] before and
//!   after a step plus [`diff`] compare metadata only (inode, size, mtime and ctime in ns, mode,
//!   owner, link count, xattrs), never file contents. Both give a [`ChangeSet`].
//! - **Writing**: [`LayerWriter::write`] turns a change set over a source tree into a PAX tar as
//!   BuildKit writes them (entries sorted by path components, parents first, hardlinks kept,
//!   non-overlay xattrs kept as `SCHILY.xattr.*`, sockets skipped, numeric owners only, mtimes
//!   clamped to `SOURCE_DATE_EPOCH` when given), compressed with gzip (zlib-rs), zstd or not at
//!   all. The diffID, the blob digest and both sizes come out of the same streaming pass; the
//!   tar is produced on one thread and compressed on others (gzip pigz-style on every core,
//!   with output independent of the thread count), with a few 256 KiB chunks in flight, so
//!   memory stays bounded whatever the layer's size.
//! - **Applying**: [`apply_layer`] extracts a (compressed or not) layer onto a directory with
//!   whiteouts, opaque directories, hardlinks, symlinks, xattrs, modes, owners where permitted and
//!   mtimes, and refuses any entry that would reach outside the target: `..` or absolute names,
//!   a symlink in a parent position, a hardlink to outside or through a symlink, a whiteout of
//!   `.` or `..`. Device nodes that cannot be created without privilege are skipped and reported.
//!   Absolute names and `..` components are refused rather than re-rooted (containerd re-roots
//!   them inside the target, Docker refuses only escapes): no well-formed layer has them, and a
//!   leading `./` is accepted. The `tar` crate reads PAX and GNU long-name entries whole, so
//!   those are capped at 1 MiB before it sees them (a gzip bomb cannot fill memory).
//!   [`apply_image_layer`] applies a base image's layer and also checks it against the image:
//!   its media type against its first bytes, its uncompressed sha256 against the config's
//!   diffID.
//!
//! ```
//! use rbuild_layer::{apply_layer, ApplyOptions, LayerOptions, LayerWriter};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let source = tempfile::tempdir()?;
//! std::fs::create_dir(source.path().join("etc"))?;
//! std::fs::write(source.path().join("etc/motd"), "hello\n")?;
//!
//! let options = LayerOptions { source_date_epoch: Some(0), ..LayerOptions::default() };
//! let mut blob = Vec::new();
//! let info = LayerWriter::new(options).write_tree(source.path(), &mut blob)?;
//! assert_eq!(info.size, blob.len() as u64);
//!
//! let target = tempfile::tempdir()?;
//! let applied = apply_layer(
//!     &blob[..],
//!     target.path(),
//!     &ApplyOptions { expected_diff_id: Some(info.diff_id.clone()), ..ApplyOptions::default() },
//! )?;
//! assert_eq!(applied.entries, 2);
//! assert_eq!(std::fs::read_to_string(target.path().join("etc/motd"))?, "hello\n");
//! # Ok(())
//! # }
//! ```

mod apply;
mod changes;
mod chunk_sink;
mod error;
mod merge;
mod meta_limit;
mod overlay;
mod parallel_gzip;
mod profile;
mod safe_path;
mod scan;
mod tar_header;
mod tar_stream;
mod write;
mod xattrs;

pub use apply::{
    apply_image_layer, apply_layer, check_layer_media_type, decompressed, layer_compression,
    ApplyOptions, ApplyReport, ImageLayer,
};
pub use changes::{Change, ChangeSet};
pub use error::LayerError;
pub use merge::{merge_overlay_upper, MergeReport};
pub use overlay::changes_from_overlay_upper;
pub use profile::WriteProfile;
pub use rbuild_oci::Compression;
pub use scan::{diff, FileMeta, TreeScan};
pub use tar_stream::OwnerMap;
pub use write::{docker_media_type, media_type, LayerInfo, LayerOptions, LayerWriter};
pub use xattrs::{is_overlay_xattr, Xattrs, LAYER_XATTR};
