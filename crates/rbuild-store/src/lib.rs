//! rbuild's local content store: an [OCI image layout] on disk (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), shared by the layer writer, the registry client and the engine.
//!
//! - Blobs land only whole and verified: a [`BlobWriter`] hashes into a temp file inside the
//!   store and [`BlobWriter::commit`] checks digest and size, fsyncs and renames. Concurrent
//!   writers of the same blob, in threads or processes, cannot corrupt it.
//! - Images are named entries of `index.json` (`org.opencontainers.image.ref.name`), updated
//!   atomically under a `flock`: [`Store::put_image`], [`Store::get_image`],
//!   [`Store::list_images`], [`Store::remove_image`].
//! - Sinks: [`Store::export_oci_layout`] and [`Store::export_docker_archive`].
//! - The step cache: [`Store::put_cache_record`] / [`Store::get_cache_record`] map a build
//!   step's cache key to the blobs it produced.
//! - [`Store::gc`] removes what neither `index.json`, a cache record nor a running build's
//!   [`Lease`] reaches; [`Store::prune`] removes step-cache records first (all, or the least
//!   recently used until the store fits a size).
//!
//! Besides the layout, the directory holds `.rbuild-lock`, `.rbuild-ingest/` (temp files) and
//! `.rbuild-cache/` (step-cache records); OCI tools ignore them. Images with Docker media types
//! are kept as they are (their digests are what registries know), but containers/image and
//! umoci only see OCI-typed entries of a layout: [`Store::export_oci_layout`] converts.
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md
//!
//! ```
//! use rbuild_oci::{Descriptor, ImageConfig, Manifest, MediaType};
//! use rbuild_store::Store;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("layout")).unwrap();
//! let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
//! let config = store.put_blob(&config.to_canonical_json(), MediaType::OciConfig).unwrap();
//! let manifest = Manifest {
//!     schema_version: 2,
//!     media_type: Some(MediaType::OciManifest),
//!     artifact_type: None,
//!     config,
//!     layers: vec![],
//!     subject: None,
//!     annotations: Default::default(),
//! };
//! store.put_image("example:v1", &manifest.to_canonical_json(), MediaType::OciManifest).unwrap();
//! let (_descriptor, back, image_config) = store.get_image("example:v1").unwrap();
//! assert_eq!(back, manifest);
//! assert_eq!(image_config.os, "linux");
//! ```

mod blob_writer;
mod cache;
mod docker_archive;
mod error;
mod export_oci;
mod fs_sync;
mod gc;
mod images;
mod lease;
mod lock;
mod prune;
mod ref_name;
mod store;

pub use blob_writer::BlobWriter;
pub use cache::CacheRecord;
pub use error::StoreError;
pub use gc::{GcReport, DEFAULT_GC_GRACE};
pub use lease::Lease;
pub use prune::{PruneOptions, PruneReport};
pub use ref_name::check_ref_name;
pub use store::Store;
