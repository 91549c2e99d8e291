//! The vocabulary of OCI and Docker images that every other rbuild crate speaks.
//!
//! - [`Digest`] (`sha256:<hex>`), with [`DigestWriter`] and [`Sha256Hasher`] to compute one while
//!   streaming;
//! - [`MediaType`] for OCI and Docker v2 schema 2 documents and layers, with [`Compression`];
//! - [`Reference`], parsed with Docker's normalisation (`alpine` →
//!   `docker.io/library/alpine:latest`);
//! - [`Descriptor`], [`Manifest`], [`Index`] (and [`AnyManifest`] for either), [`Platform`]
//!   with containerd's matching rules;
//! - [`ImageConfig`], which keeps Docker's `Healthcheck`, `OnBuild`, `Shell` and `ArgsEscaped`;
//! - [`canonical_json`] for deterministic output, and `validate()` on every document;
//! - size limits ([`MAX_MANIFEST_BYTES`], [`MAX_CONFIG_BYTES`]) checked before decoding, and
//!   [`truncate_for_message`] for quoting untrusted input in errors.
//!
//! The types are plain serde structs of our own rather than `oci-spec`'s: one set of types for
//! OCI and Docker documents, keeping the Docker-only config fields, reading Docker's `null`
//! lists as empty, and no builder boilerplate.
//!
//! ```
//! use rbuild_oci::{Descriptor, Digest, ImageConfig, Manifest, MediaType, Reference};
//!
//! let r = Reference::parse("alpine").unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/alpine:latest");
//!
//! let config = ImageConfig {
//!     architecture: "amd64".into(),
//!     os: "linux".into(),
//!     ..Default::default()
//! };
//! config.validate().unwrap();
//! let config_bytes = config.to_canonical_json();
//! let manifest = Manifest {
//!     schema_version: 2,
//!     media_type: Some(MediaType::OciManifest),
//!     artifact_type: None,
//!     config: Descriptor::of_bytes(MediaType::OciConfig, &config_bytes),
//!     layers: vec![],
//!     subject: None,
//!     annotations: Default::default(),
//! };
//! let bytes = manifest.to_canonical_json();
//! assert_eq!(Manifest::from_json(&bytes).unwrap(), manifest);
//! assert_eq!(Digest::sha256_of(&bytes).algorithm(), "sha256");
//! ```

mod canonical;
mod config;
mod descriptor;
mod digest;
mod error;
mod limits;
mod manifest;
mod media_type;
mod message;
mod null_default;
mod platform;
mod reference;

pub use canonical::canonical_json;
pub use config::{ContainerConfig, EmptyObject, HealthConfig, History, ImageConfig, RootFs};
pub use descriptor::Descriptor;
pub use digest::{Digest, DigestWriter, Sha256Hasher};
pub use error::OciError;
pub use limits::{check_document_size, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
pub use manifest::{AnyManifest, Index, Manifest};
pub use media_type::{Compression, MediaType};
pub use message::{truncate_for_message, MAX_MESSAGE_CHARS, MAX_MESSAGE_INPUT_CHARS};
pub use platform::Platform;
pub use reference::{Reference, DOCKER_HUB};

/// Annotation key naming an image in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
