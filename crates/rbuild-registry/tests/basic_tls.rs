//! htpasswd Basic auth over TLS with a CA generated in the test.

mod common;

use common::*;
use rbuild_oci::Platform;
use rbuild_registry::{
    CredentialChain, MemoryBlobs, RegistryClient, RegistryError, RegistryOptions,
};
use rbuild_testkit::{skopeo, RegistryAuth, TestRegistry};

fn htpasswd() -> RegistryAuth {
    RegistryAuth::Htpasswd {
        username: "alice".into(),
        password: "wonderland".into(),
    }
}

fn trusting(registry: &TestRegistry) -> RegistryOptions {
    RegistryOptions {
        ca_certificates: vec![(registry.host(), registry.tls().unwrap().ca_cert.clone())],
        ..fast_options()
    }
}

#[tokio::test]
async fn push_and_pull_with_basic_auth_over_tls() {
    let Some(registry) = TestRegistry::start_or_skip(htpasswd()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let chain = config_with_login(dir.path(), &registry.host(), "alice", "wonderland");
    let client = RegistryClient::new(trusting(&registry), chain);
    let image = small_image(10);
    let destination = reference(&format!("{}/team/app:v1", registry.host()));
    push(&client, &image, std::slice::from_ref(&destination)).await;
    let store = MemoryBlobs::new();
    let pulled = client
        .pull_image(
            &destination,
            &Platform::parse("linux/amd64").unwrap(),
            &store,
        )
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest());
    assert_eq!(store.len(), 4);

    // skopeo, trusting the same CA, sees the image.
    if skopeo::available_or_skip() {
        let cert_dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            &registry.tls().unwrap().ca_cert,
            cert_dir.path().join("ca.crt"),
        )
        .unwrap();
        let access = skopeo::Access {
            creds: Some("alice:wonderland"),
            cert_dir: Some(cert_dir.path()),
        };
        let info = skopeo::inspect(&format!("{}/team/app:v1", registry.host()), &access).unwrap();
        assert_eq!(info["Digest"], image.digest().to_string());
        assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn missing_and_wrong_credentials_give_clear_errors_without_retrying() {
    let Some(registry) = TestRegistry::start_or_skip(htpasswd()) else {
        return;
    };
    let image = small_image(11);
    let destination = reference(&format!("{}/team/app:v1", registry.host()));

    let dir = tempfile::tempdir().unwrap();
    let empty_config = dir.path().join("empty/config.json");
    let client = RegistryClient::new(
        trusting(&registry),
        CredentialChain::empty().with_config_file(&empty_config),
    );
    let err = client
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            std::slice::from_ref(&destination),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Auth { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        err.to_string().split(" (").next().unwrap(),
        format!(
            "401 from {host} for push to team/app: no credentials in {} for {host}",
            empty_config.display(),
            host = registry.host()
        )
    );

    let before = registry.requests().len();
    let chain = config_with_login(dir.path(), &registry.host(), "alice", "not-the-password");
    let client = RegistryClient::new(trusting(&registry), chain);
    let err = client
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            &[destination],
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "401 from {} for push to team/app: the credentials from auths",
            registry.host()
        )),
        "{text}"
    );
    assert!(text.contains("were rejected"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(!format!("{err:?}").contains("not-the-password"));
    // No retry storm: one anonymous probe, one request with the credentials per blob at most.
    let attempts = registry.requests().len() - before;
    assert!(
        attempts <= 2 + 2 * image.blobs.len(),
        "{attempts} requests for a rejected password"
    );
    assert!(!registry.has_tag("team/app", "v1"));
}

#[tokio::test]
async fn unknown_ca_is_a_tls_error_naming_the_fix() {
    let Some(registry) = TestRegistry::start_or_skip(htpasswd()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let chain = config_with_login(dir.path(), &registry.host(), "alice", "wonderland");
    // Default options: loopback may fall back to plain HTTP, but never after a certificate error.
    let client = RegistryClient::new(fast_options(), chain);
    let err = client
        .fetch_manifest(&reference(&format!("{}/team/app:v1", registry.host())))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "TLS with {} failed for pull of team/app:v1",
            registry.host()
        )),
        "{text}"
    );
    assert!(
        text.contains("UnknownIssuer") || text.contains("unknown issuer"),
        "{text}"
    );
    assert!(text.contains("--registry-certificate"), "{text}");

    // Skipping verification for that host works.
    let options = RegistryOptions {
        skip_tls_verify_registries: vec![registry.host()],
        ..fast_options()
    };
    let chain = config_with_login(dir.path(), &registry.host(), "alice", "wonderland");
    let err = RegistryClient::new(options, chain)
        .fetch_manifest(&reference(&format!("{}/team/app:v1", registry.host())))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "reached the registry: {err}");

    // So does declaring it insecure (Docker's insecure-registries: TLS unverified first).
    let options = RegistryOptions {
        insecure_registries: vec![registry.host()],
        ..fast_options()
    };
    let chain = config_with_login(dir.path(), &registry.host(), "alice", "wonderland");
    let err = RegistryClient::new(options, chain)
        .fetch_manifest(&reference(&format!("{}/team/app:v1", registry.host())))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "reached the registry: {err}");
}

#[tokio::test]
async fn login_check_accepts_good_and_refuses_bad_credentials() {
    let Some(registry) = TestRegistry::start_or_skip(htpasswd()) else {
        return;
    };
    let good = CredentialChain::empty().with_credential(
        &registry.host(),
        rbuild_registry::Credential::Basic {
            username: "alice".into(),
            password: "wonderland".into(),
        },
    );
    RegistryClient::new(trusting(&registry), good)
        .check_credentials(&registry.host())
        .await
        .unwrap();
    let bad = CredentialChain::empty().with_credential(
        &registry.host(),
        rbuild_registry::Credential::Basic {
            username: "alice".into(),
            password: "nope".into(),
        },
    );
    let err = RegistryClient::new(trusting(&registry), bad)
        .check_credentials(&registry.host())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err.split(" (").next().unwrap(),
        format!(
            "401 from {} for login: the credentials from the credentials given explicitly were rejected",
            registry.host()
        )
    );
}

#[tokio::test]
async fn client_certificate_is_presented_when_configured() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::ClientCertificate) else {
        return;
    };
    let tls = registry.tls().unwrap().clone();
    let image = small_image(12);
    let destination = reference(&format!("{}/team/app:v1", registry.host()));
    let options = RegistryOptions {
        client_certificates: vec![(
            registry.host(),
            tls.client_cert.clone(),
            tls.client_key.clone(),
        )],
        ..trusting(&registry)
    };
    RegistryClient::new(options, CredentialChain::empty())
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            std::slice::from_ref(&destination),
        )
        .await
        .unwrap();
    assert!(registry.has_tag("team/app", "v1"));

    // Without the client certificate the TLS handshake is refused.
    let err = RegistryClient::new(trusting(&registry), CredentialChain::empty())
        .fetch_manifest(&destination)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(
        text.starts_with(&format!(
            "TLS with {} failed for pull of team/app:v1",
            registry.host()
        )),
        "{text}"
    );
    assert!(text.contains("--registry-client-cert"), "{text}");
}
