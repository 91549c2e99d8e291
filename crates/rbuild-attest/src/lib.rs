//! `rbuild-attest`: what rbuild tells about an image besides the image itself.
//!
//! - [`BuildRecord`] (filled by [`RecordCollector`] from progress events): steps per stage
//!   with their times, states, phases and cache-miss reasons; the final image's layers with
//!   their sizes, largest files and whiteouts; pushes; attestations. It serialises to the
//!   JSON report ([`BuildRecord::to_json`]) and renders to a self-contained HTML page
//!   ([`render_html`]: inline CSS and SVG, light and dark themes, no script, no network).
//! - [`scan_layer`]: one streaming pass over a layer blob (gzip, zstd or plain) gathers all
//!   of that, plus file hashes and package databases for the SBOM when asked; its result
//!   depends only on the blob, so callers keep it by digest.
//! - [`provenance_statement`]: an in-toto statement with a SLSA v1 provenance predicate;
//!   build args with secret-like names ([`is_secret_like`]) are redacted.
//! - [`spdx_document`]: SPDX 2.3 JSON of the final image ([`ImageFiles`]): packages from
//!   dpkg, apk and rpm databases (read as data, never executed), and every file no package
//!   owns with its sha256.
//! - [`artifact`] and [`buildkit_index`]: the documents as OCI 1.1 artifact manifests whose
//!   `subject` is the image, or in BuildKit's attestation-manifest form.
//!
//! This crate writes nothing and prints nothing: it makes bytes; the caller stores and pushes
//! them.
//!
//! ```
//! use rbuild_attest::{render_html, RecordCollector, StepDone, StepState};
//!
//! let mut c = RecordCollector::new("rbuild 0.1.0", "2026-01-01T00:00:00Z");
//! c.stage_started(0, None, 0);
//! c.step_started(0, 2, "COPY", 10);
//! c.step_finished(StepDone { stage: 0, line: 2, state: StepState::Built, duration_us: 900,
//!     layer: None, cache_key: None }, 910);
//! let record = c.finish("2026-01-01T00:00:01Z", 1_000);
//! assert!(render_html(&record).contains("<svg"));
//! ```

mod artifact;
mod error;
mod html;
mod image_files;
mod layer_scan;
pub mod packages;
mod provenance;
mod record;
mod redact;
mod sbom;

pub use artifact::{
    artifact, buildkit_index, empty_config, spdx_statement, Attachment, EMPTY_CONFIG,
    EMPTY_MEDIA_TYPE, IN_TOTO_MEDIA_TYPE, PREDICATE_ANNOTATION, SPDX_MEDIA_TYPE, SPDX_PREDICATE,
};
pub use error::AttestError;
pub use html::render_html;
pub use image_files::ImageFiles;
pub use layer_scan::{
    scan_layer, scan_written_tar, ChunkReader, FoundDatabase, LayerScan, ScanOptions, ScannedFile,
    MAX_HASHED_FILES, TOP_FILES,
};
pub use provenance::{
    provenance_statement, ProvenanceInput, BUILD_TYPE, SLSA_PROVENANCE_V1, STATEMENT_TYPE,
};
pub use record::{
    AttestationRecord, BuildRecord, FileSize, ImageRecord, LayerRecord, PushedRecord,
    RecordCollector, StageRecord, StepDone, StepRecord, StepState, RECORD_SCHEMA,
};
pub use redact::{is_secret_like, redacted_value, REDACTED};
pub use sbom::{spdx_document, SbomInput};

/// How many whiteouts of one layer the report lists (the count is always complete).
pub const MAX_LISTED_WHITEOUTS: usize = 200;
