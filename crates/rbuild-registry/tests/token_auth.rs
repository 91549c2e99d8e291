//! Token auth: the registry's `auth: token` mode with the test kit's token issuer.

mod common;

use common::*;
use rbuild_oci::Platform;
use rbuild_registry::{CredentialChain, MemoryBlobs, RegistryClient, RegistryError};
use rbuild_testkit::{RegistryAuth, TestRegistry, TokenIssuerConfig};

fn token(config: TokenIssuerConfig) -> RegistryAuth {
    RegistryAuth::Token(config)
}

fn logged_in(registry: &TestRegistry, dir: &std::path::Path, password: &str) -> RegistryClient {
    RegistryClient::new(
        fast_options(),
        config_with_login(dir, &registry.host(), "tokenuser", password),
    )
}

#[tokio::test]
async fn push_pull_and_one_token_per_scope() {
    let Some(registry) = TestRegistry::start_or_skip(token(TokenIssuerConfig::default())) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = logged_in(&registry, dir.path(), "tokenpass");
    let image = small_image(20);
    let first = reference(&format!("{}/team/app:v1", registry.host()));
    let second = reference(&format!("{}/team/copy:v1", registry.host()));
    let outcomes = push(&client, &image, &[first.clone(), second]).await;
    assert_eq!(outcomes[1].mounted(), 4);

    let issuer = registry.token_issuer().unwrap();
    let requests = issuer.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.granted && r.user.as_deref() == Some("tokenuser")),
        "{requests:#?}"
    );
    // The second destination's blobs were pushed with one token covering the mount source.
    assert!(
        requests.iter().any(|r| r.scopes
            == vec![
                "repository:team/app:pull".to_owned(),
                "repository:team/copy:pull,push".to_owned()
            ]),
        "{requests:#?}"
    );
    // Tokens are cached: far fewer token requests than registry requests.
    let token_requests = requests.len();
    assert!(token_requests <= 4, "{requests:#?}");

    let store = MemoryBlobs::new();
    let pulled = client
        .pull_image(&first, &Platform::parse("linux/amd64").unwrap(), &store)
        .await
        .unwrap();
    assert_eq!(pulled.digest, image.digest());
    assert_eq!(
        issuer.requests().len(),
        token_requests + 1,
        "one pull-scope token for the pull"
    );
}

#[tokio::test]
async fn identity_token_is_exchanged_with_the_oauth2_post() {
    let config = TokenIssuerConfig {
        identity_token: Some("refresh-123".into()),
        ..TokenIssuerConfig::default()
    };
    let Some(registry) = TestRegistry::start_or_skip(token(config)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"auths": {{"{}": {{"identitytoken": "refresh-123"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let client = RegistryClient::new(
        fast_options(),
        CredentialChain::empty().with_config_file(&path),
    );
    let image = small_image(21);
    push(
        &client,
        &image,
        &[reference(&format!("{}/team/app:v1", registry.host()))],
    )
    .await;
    let requests = registry.token_issuer().unwrap().requests();
    assert!(
        requests.iter().all(|r| r.method == "POST" && r.granted),
        "{requests:#?}"
    );
    assert!(registry.has_tag("team/app", "v1"));
}

#[tokio::test]
async fn wrong_password_and_missing_credentials_at_the_token_server() {
    let Some(registry) = TestRegistry::start_or_skip(token(TokenIssuerConfig::default())) else {
        return;
    };
    let image = small_image(22);
    let destination = reference(&format!("{}/team/app:v1", registry.host()));
    let dir = tempfile::tempdir().unwrap();
    let err = logged_in(&registry, dir.path(), "wrong")
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            std::slice::from_ref(&destination),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::Auth { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        text.starts_with(&format!(
            "401 from {} for push to team/app: the token server http://127.0.0.1:",
            registry.host()
        )),
        "{text}"
    );
    assert!(
        text.contains("rejected the credentials from auths"),
        "{text}"
    );
    // Not retried: one token request per attempt, no storm.
    assert!(registry.token_issuer().unwrap().requests().len() <= 2);

    let err = RegistryClient::new(fast_options(), CredentialChain::empty())
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            &[destination],
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "refused anonymous access; no credentials for {} (no config.json",
            registry.host()
        )),
        "{err}"
    );
    assert!(!registry.has_tag("team/app", "v1"));
}

#[tokio::test]
async fn expired_tokens_are_reported_not_retried_forever() {
    let config = TokenIssuerConfig {
        token_lifetime_secs: -600,
        ..TokenIssuerConfig::default()
    };
    let Some(registry) = TestRegistry::start_or_skip(token(config)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let err = logged_in(&registry, dir.path(), "tokenpass")
        .fetch_manifest(&reference(&format!("{}/team/app:v1", registry.host())))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::Auth { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        text.contains("the registry refused the token from http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("invalid_token: expired or not trusted"),
        "{text}"
    );
    assert!(registry.token_issuer().unwrap().requests().len() <= 2);
}

#[tokio::test]
async fn busy_token_server_is_retried() {
    let config = TokenIssuerConfig {
        unavailable_first: 2,
        ..TokenIssuerConfig::default()
    };
    let Some(registry) = TestRegistry::start_or_skip(token(config)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = small_image(24);
    logged_in(&registry, dir.path(), "tokenpass")
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(&image),
            &[reference(&format!("{}/team/app:v1", registry.host()))],
        )
        .await
        .unwrap();
    assert!(registry.has_tag("team/app", "v1"));
}
