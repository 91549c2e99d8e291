//! The provenance and SBOM documents of a built image, and where they go: into the store,
//! attached to every destination (OCI 1.1 referrers, or BuildKit's attestation index with
//! `--attest-format=buildkit`), and into the OCI layout when one is written.

use super::scans::LayerScanResult;
use super::{BuildInputs, RequestDetails};
use crate::error::BuildError;
use crate::remote::Remote;
use crate::request::{AttestFormat, BuildOutcome};
use rbuild_attest::{
    artifact, buildkit_index, provenance_statement, spdx_document, spdx_statement, Attachment,
    AttestationRecord, ImageFiles, ProvenanceInput, SbomInput, IN_TOTO_MEDIA_TYPE,
    SLSA_PROVENANCE_V1, SPDX_MEDIA_TYPE, SPDX_PREDICATE,
};
use rbuild_oci::{Descriptor, Digest, MediaType};
use rbuild_store::Store;

/// Everything [`attach`] needs.
pub(super) struct AttachRequest<'a> {
    pub(super) store: &'a Store,
    pub(super) remote: Option<&'a Remote>,
    pub(super) outcome: &'a BuildOutcome,
    pub(super) details: &'a RequestDetails,
    pub(super) inputs: &'a BuildInputs,
    pub(super) scans: &'a [LayerScanResult],
    pub(super) provenance: bool,
    /// `Some(files)` when an SBOM is asked for, `files` whether it lists unowned files.
    pub(super) sbom: Option<bool>,
    pub(super) format: AttestFormat,
    /// Whether the documents go into the OCI layout too.
    pub(super) to_layout: bool,
    pub(super) started: &'a str,
}

/// The builder's id in provenance.
const BUILDER_ID: &str = "https://example.invalid/rbuild";

/// Makes the documents asked for and attaches them; returns what the report lists.
pub(super) fn attach(req: AttachRequest<'_>) -> Result<Vec<AttestationRecord>, BuildError> {
    if !req.provenance && req.sbom.is_none() {
        return Ok(Vec::new());
    }
    let outcome = req.outcome;
    let subject = Descriptor::of_bytes(outcome.media_type(), &outcome.manifest_bytes);
    let subject_name = req
        .details
        .destinations
        .first()
        .map(|d| d.to_string())
        .unwrap_or_else(|| outcome.image_name.clone());
    // With SOURCE_DATE_EPOCH every time is the epoch, so the documents are reproducible.
    let fixed = req
        .details
        .epoch
        .map(|e| crate::timestamp::BuildTime::fixed(e).rfc3339());
    let started = fixed.clone().unwrap_or_else(|| req.started.to_owned());
    let finished = fixed
        .clone()
        .unwrap_or_else(|| crate::timestamp::BuildTime::now().rfc3339());
    // (kind, media type of the document alone, the document, its predicate type)
    let mut documents: Vec<(&'static str, &str, Vec<u8>, &str)> = Vec::new();
    if req.provenance {
        let input = ProvenanceInput {
            builder_id: BUILDER_ID.into(),
            builder_version: env!("CARGO_PKG_VERSION").into(),
            subject_name: subject_name.clone(),
            subject_digest: outcome.digest.clone(),
            dockerfile_name: req.inputs.dockerfile_name.clone(),
            dockerfile_digest: req
                .inputs
                .dockerfile_digest
                .clone()
                .unwrap_or_else(|| Digest::sha256_of(b"")),
            context_digest: req.inputs.context_digest.clone(),
            build_args: req.details.build_args.clone(),
            target: req.details.target.clone(),
            platform: req.details.platform.clone(),
            labels: req.details.labels.clone(),
            secret_ids: req.details.secret_ids.clone(),
            materials: req.inputs.materials.clone(),
            isolation: None,
            reproducibility: req.details.reproducibility.clone(),
            invocation_id: invocation_id(fixed.is_none().then_some(&started), &outcome.digest),
            started,
            finished: finished.clone(),
        };
        documents.push((
            "provenance",
            IN_TOTO_MEDIA_TYPE,
            provenance_statement(&input)?,
            SLSA_PROVENANCE_V1,
        ));
    }
    if let Some(files) = req.sbom {
        let mut image =
            ImageFiles::from_scans(req.scans.iter().filter_map(|(_, s)| s.as_ref().ok()));
        for (layer, scan) in req.scans {
            if let Err(e) = scan {
                image.problems.push(format!("layer {}: {e}", layer.digest));
            }
        }
        let input = SbomInput {
            image_name: subject_name.clone(),
            image_digest: outcome.digest.clone(),
            created: finished.clone(),
            tool: format!("rbuild-{}", env!("CARGO_PKG_VERSION")),
            files,
        };
        documents.push((
            "sbom",
            SPDX_MEDIA_TYPE,
            spdx_document(&input, &image)?,
            SPDX_PREDICATE,
        ));
    }

    let mut records = Vec::new();
    match req.format {
        AttestFormat::Referrers => {
            let attachments: Vec<Attachment> = documents
                .into_iter()
                .map(|(kind, media_type, bytes, predicate)| {
                    let predicate = (media_type == IN_TOTO_MEDIA_TYPE).then_some(predicate);
                    artifact(kind, media_type, bytes, predicate, &subject, &finished)
                })
                .collect();
            for a in &attachments {
                store_attachment(req.store, a)?;
            }
            let mut attached: Vec<Vec<String>> = vec![Vec::new(); attachments.len()];
            if let Some(remote) = req.remote.filter(|_| !outcome.pushed.is_empty()) {
                for destination in &req.details.destinations {
                    for (a, where_) in attachments.iter().zip(&mut attached) {
                        let how =
                            remote.push_referrer_from_store(req.store, destination, &a.manifest)?;
                        where_.push(format!("{} ({how})", destination.name()));
                    }
                }
            }
            if let Some(layout) = req
                .details
                .oci_layout_path
                .as_ref()
                .filter(|_| req.to_layout)
            {
                let index = referrers_index(&attachments);
                let dest = export_blobs(req.store, layout, &attachments)?;
                dest.put_image(
                    &rbuild_registry::referrers_tag(&subject.digest),
                    &index,
                    MediaType::OciIndex,
                )
                .map_err(|e| layout_error(layout, e))?;
                for where_ in &mut attached {
                    where_.push(format!("{} (referrers tag)", layout.display()));
                }
            }
            for (a, where_) in attachments.iter().zip(attached) {
                records.push(AttestationRecord {
                    kind: a.kind.into(),
                    manifest: a.descriptor.digest.to_string(),
                    attached: where_,
                });
            }
        }
        AttestFormat::Buildkit => {
            let statements: Vec<(&str, Vec<u8>)> = documents
                .iter()
                .map(|(_, media_type, bytes, predicate)| {
                    let statement = if *media_type == IN_TOTO_MEDIA_TYPE {
                        bytes.clone()
                    } else {
                        spdx_statement(&subject_name, &outcome.digest, bytes)
                    };
                    (*predicate, statement)
                })
                .collect();
            let platform = rbuild_oci::Platform {
                architecture: outcome.config.architecture.clone(),
                os: outcome.config.os.clone(),
                os_version: None,
                os_features: Vec::new(),
                variant: outcome.config.variant.clone(),
            };
            let (attestation, index) = buildkit_index(&subject, platform, &statements);
            store_attachment(req.store, &attestation)?;
            req.store.put_blob(&index, MediaType::OciIndex)?;
            let mut attached = Vec::new();
            if let Some(remote) = req.remote.filter(|_| !outcome.pushed.is_empty()) {
                for destination in &req.details.destinations {
                    let blobs: Vec<Descriptor> =
                        attestation.blobs.iter().map(|(d, _)| d.clone()).collect();
                    remote.push_manifest_from_store(
                        req.store,
                        destination,
                        &attestation.manifest,
                        &MediaType::OciManifest,
                        &blobs,
                        true,
                    )?;
                    remote.push_manifest_from_store(
                        req.store,
                        destination,
                        &index,
                        &MediaType::OciIndex,
                        &[],
                        false,
                    )?;
                    attached.push(format!(
                        "{} (image index {})",
                        destination,
                        Digest::sha256_of(&index)
                    ));
                }
            }
            if let Some(layout) = req
                .details
                .oci_layout_path
                .as_ref()
                .filter(|_| req.to_layout)
            {
                let dest = export_blobs(req.store, layout, std::slice::from_ref(&attestation))?;
                // The layout's name of the image now names the index, as BuildKit's OCI export.
                let name = dest
                    .read_index()
                    .map_err(|e| layout_error(layout, e))?
                    .manifests
                    .iter()
                    .find(|d| d.digest == outcome.digest)
                    .and_then(|d| {
                        d.annotations
                            .get("org.opencontainers.image.ref.name")
                            .cloned()
                    })
                    .unwrap_or_else(|| "latest".into());
                dest.put_image(&name, &index, MediaType::OciIndex)
                    .map_err(|e| layout_error(layout, e))?;
                attached.push(format!("{} (image index)", layout.display()));
            }
            records.push(AttestationRecord {
                kind: documents.iter().map(|d| d.0).collect::<Vec<_>>().join("+"),
                manifest: attestation.descriptor.digest.to_string(),
                attached,
            });
        }
    }
    Ok(records)
}

/// Puts an attachment's blobs and manifest into the store.
fn store_attachment(store: &Store, a: &Attachment) -> Result<(), BuildError> {
    for (descriptor, bytes) in &a.blobs {
        store.put_blob(bytes, descriptor.media_type.clone())?;
    }
    store.put_blob(&a.manifest, MediaType::OciManifest)?;
    Ok(())
}

/// Copies attachments' blobs and manifests from the store into the OCI layout at `layout`.
fn export_blobs(
    store: &Store,
    layout: &std::path::Path,
    attachments: &[Attachment],
) -> Result<Store, BuildError> {
    let dest = Store::open(layout).map_err(|e| layout_error(layout, e))?;
    for a in attachments {
        for digest in a
            .blobs
            .iter()
            .map(|(d, _)| &d.digest)
            .chain(std::iter::once(&a.descriptor.digest))
        {
            store
                .copy_blob(&dest, digest)
                .map_err(|e| layout_error(layout, e))?;
        }
    }
    Ok(dest)
}

/// The referrers index listing `attachments` (the tag schema's form).
fn referrers_index(attachments: &[Attachment]) -> Vec<u8> {
    rbuild_oci::Index {
        schema_version: 2,
        media_type: Some(MediaType::OciIndex),
        artifact_type: None,
        manifests: attachments.iter().map(|a| a.descriptor.clone()).collect(),
        subject: None,
        annotations: Default::default(),
    }
    .to_canonical_json()
}

fn layout_error(path: &std::path::Path, e: rbuild_store::StoreError) -> BuildError {
    BuildError::Output {
        path: path.to_path_buf(),
        reason: format!("attestations: {e}"),
    }
}

/// An id for this build: its image, and its start and process unless the build is
/// reproducible (`started` is `None`).
fn invocation_id(started: Option<&String>, image: &Digest) -> String {
    let seed = match started {
        Some(started) => format!("{started}/{image}/{}", std::process::id()),
        None => format!("reproducible/{image}"),
    };
    Digest::sha256_of(seed.as_bytes()).encoded()[..32].to_owned()
}
