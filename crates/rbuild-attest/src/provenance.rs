//! SLSA v1 provenance (<https://slsa.dev/provenance/v1>) in an in-toto v1 statement: what was
//! built (the image's digest), from what (Dockerfile digest, context digest, base images by
//! digest, build args with secret-like values redacted), by what (builder id and version),
//! when, and with which reproducibility settings.

use crate::redact::redacted_value;
use crate::AttestError;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA v1 provenance predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// This builder's build type (what `externalParameters` means).
pub const BUILD_TYPE: &str = "https://example.invalid/rbuild/build-types/dockerfile/v1";

/// What the provenance says.
#[derive(Debug, Clone)]
pub struct ProvenanceInput {
    /// The builder's id (a URI).
    pub builder_id: String,
    /// The builder's version.
    pub builder_version: String,
    /// The image's name (destination or store name).
    pub subject_name: String,
    /// The image manifest's digest.
    pub subject_digest: rbuild_oci::Digest,
    /// The Dockerfile's name.
    pub dockerfile_name: String,
    /// The Dockerfile's digest.
    pub dockerfile_digest: rbuild_oci::Digest,
    /// The digest of the context sent (after `.dockerignore`), when there was one.
    pub context_digest: Option<rbuild_oci::Digest>,
    /// `--build-arg`s as given (secret-like values are redacted here).
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// Ids of `--secret`s (never their values).
    pub secret_ids: Vec<String>,
    /// Base images (and other images read), by reference and digest.
    pub materials: Vec<(String, rbuild_oci::Digest)>,
    /// How RUN steps were isolated.
    pub isolation: Option<String>,
    /// Reproducibility settings (`sourceDateEpoch`, `compression`, ...).
    pub reproducibility: BTreeMap<String, Value>,
    /// Start and finish, RFC 3339.
    pub started: String,
    /// Finish, RFC 3339.
    pub finished: String,
    /// An id of this build.
    pub invocation_id: String,
}

#[derive(Serialize)]
struct Statement<'a> {
    #[serde(rename = "_type")]
    kind: &'a str,
    subject: Vec<Value>,
    #[serde(rename = "predicateType")]
    predicate_type: &'a str,
    predicate: Value,
}

/// The provenance statement as JSON.
pub fn provenance_statement(input: &ProvenanceInput) -> Result<Vec<u8>, AttestError> {
    let args: BTreeMap<&str, &str> = input
        .build_args
        .iter()
        .map(|(k, v)| (k.as_str(), redacted_value(k, v)))
        .collect();
    let materials: Vec<Value> = input
        .materials
        .iter()
        .map(|(reference, digest)| {
            json!({
                "uri": format!("pkg:docker/{reference}"),
                "name": reference,
                "digest": { digest.algorithm(): digest.encoded() },
            })
        })
        .collect();
    let mut external = json!({
        "dockerfile": {
            "name": input.dockerfile_name,
            "digest": { input.dockerfile_digest.algorithm(): input.dockerfile_digest.encoded() },
        },
        "buildArgs": args,
        "labels": input.labels,
        "secrets": input.secret_ids,
    });
    if let Some(context) = &input.context_digest {
        external["context"] = json!({ "digest": { context.algorithm(): context.encoded() } });
    }
    if let Some(target) = &input.target {
        external["target"] = json!(target);
    }
    if let Some(platform) = &input.platform {
        external["platform"] = json!(platform);
    }
    let statement = Statement {
        kind: STATEMENT_TYPE,
        subject: vec![json!({
            "name": input.subject_name,
            "digest": { input.subject_digest.algorithm(): input.subject_digest.encoded() },
        })],
        predicate_type: SLSA_PROVENANCE_V1,
        predicate: json!({
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {
                    "reproducibility": input.reproducibility,
                    "isolation": input.isolation,
                },
                "resolvedDependencies": materials,
            },
            "runDetails": {
                "builder": {
                    "id": input.builder_id,
                    "version": { "rbuild": input.builder_version },
                },
                "metadata": {
                    "invocationId": input.invocation_id,
                    "startedOn": input.started,
                    "finishedOn": input.finished,
                },
            },
        }),
    };
    serde_json::to_vec_pretty(&statement).map_err(|source| AttestError::Encode {
        what: "provenance",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_oci::Digest;

    #[test]
    fn statement_has_subject_materials_and_no_secret_values() {
        let input = ProvenanceInput {
            builder_id: "https://example.invalid/rbuild".into(),
            builder_version: "0.1.0".into(),
            subject_name: "r/app:1".into(),
            subject_digest: Digest::sha256_of(b"image"),
            dockerfile_name: "Dockerfile".into(),
            dockerfile_digest: Digest::sha256_of(b"FROM scratch"),
            build_args: [
                ("VERSION".to_string(), "1.2".to_string()),
                ("NPM_TOKEN".to_string(), "hunter2-token".to_string()),
            ]
            .into(),
            materials: vec![("r/busybox:1".into(), Digest::sha256_of(b"base"))],
            context_digest: None,
            target: None,
            platform: None,
            labels: BTreeMap::new(),
            secret_ids: vec!["npm".into()],
            isolation: None,
            reproducibility: BTreeMap::new(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: "2026-01-01T00:00:01Z".into(),
            invocation_id: "x".into(),
        };
        let bytes = provenance_statement(&input).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("hunter2"));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["predicateType"], SLSA_PROVENANCE_V1);
        assert_eq!(
            v["subject"][0]["digest"]["sha256"],
            Digest::sha256_of(b"image").encoded()
        );
        let ext = &v["predicate"]["buildDefinition"]["externalParameters"];
        assert_eq!(ext["buildArgs"]["VERSION"], "1.2");
        assert_eq!(ext["buildArgs"]["NPM_TOKEN"], crate::REDACTED);
        assert_eq!(
            v["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"],
            Digest::sha256_of(b"base").encoded()
        );
    }
}
