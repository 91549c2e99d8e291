use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn basic(user: &str, pass: &str) -> Credential {
    Credential::Basic {
        username: user.into(),
        password: Secret::new(pass),
    }
}

/// A real helper program (shell script) that answers from a fixed table and records stores.
fn install_helper(dir: &Path, name: &str) {
    let script = format!(
        r#"#!/bin/sh
read server
case "$1" in
  get)
    case "$server" in
      helped.example:5000) echo '{{"ServerURL":"helped.example:5000","Username":"hu","Secret":"hs"}}' ;;
      token.example) echo '{{"ServerURL":"token.example","Username":"<token>","Secret":"refresh"}}' ;;
      *) echo "credentials not found in native keychain"; exit 1 ;;
    esac ;;
  store) echo "$server" > "{dir}/stored-{name}" ;;
esac
"#,
        dir = dir.display()
    );
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn auths_forms_and_docker_hub_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(
        &cfg,
        r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
            "http://plain.example:5000/v2/": {"username": "u", "password": "p"},
            "idt.example": {"identitytoken": "refresh-me"},
            "rt.example": {"registrytoken": "bearer-me"},
            "empty.example": {}
        }}"#,
    );
    let chain = CredentialChain::empty().with_config_file(&cfg);
    for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
        let found = chain.lookup(hub).unwrap().unwrap();
        assert_eq!(found.credential, basic("hub", "hubpass"));
        assert!(found.source.contains("config.json"), "{}", found.source);
    }
    assert_eq!(
        chain
            .lookup("plain.example:5000")
            .unwrap()
            .unwrap()
            .credential,
        basic("u", "p")
    );
    assert_eq!(
        chain.lookup("idt.example").unwrap().unwrap().credential,
        Credential::IdentityToken(Secret::new("refresh-me"))
    );
    assert_eq!(
        chain.lookup("rt.example").unwrap().unwrap().credential,
        Credential::RegistryToken(Secret::new("bearer-me"))
    );
    assert!(chain.lookup("empty.example").unwrap().is_none());
    assert!(
        chain.lookup("plain.example").unwrap().is_none(),
        "port matters"
    );
}

#[test]
fn helpers_come_before_auths_and_fall_back_when_not_found() {
    let dir = tempfile::tempdir().unwrap();
    install_helper(dir.path(), "fake");
    let cfg = dir.path().join("config.json");
    write(
        &cfg,
        r#"{"credsStore": "fake",
            "credHelpers": {"token.example": "fake"},
            "auths": {"helped.example:5000": {"auth": "eDp5"}, "other.example": {"auth": "b3RoZXI6cHc="}}}"#,
    );
    let chain = CredentialChain::empty()
        .with_config_file(&cfg)
        .with_helper_dir(dir.path());
    let found = chain.lookup("helped.example:5000").unwrap().unwrap();
    assert_eq!(found.credential, basic("hu", "hs"));
    assert!(found.source.contains("credsStore"), "{}", found.source);
    let found = chain.lookup("token.example").unwrap().unwrap();
    assert_eq!(
        found.credential,
        Credential::IdentityToken(Secret::new("refresh"))
    );
    assert!(found.source.contains("credHelpers"), "{}", found.source);
    // The helper has nothing for this one: the auths entry is used.
    assert_eq!(
        chain.lookup("other.example").unwrap().unwrap().credential,
        basic("other", "pw")
    );
}

#[test]
fn missing_helper_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(&cfg, r#"{"credsStore": "does-not-exist-rbuild"}"#);
    let err = CredentialChain::empty()
        .with_config_file(&cfg)
        .lookup("x.example")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("docker-credential-does-not-exist-rbuild is not installed"),
        "{err}"
    );
}

#[test]
fn file_order_and_ci_variables_are_last() {
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("auth.json");
    let docker_dir = dir.path().join("docker");
    write(
        &auth_file,
        r#"{"auths": {"first.example": {"auth": "YTpi"}}}"#,
    );
    write(
        &docker_dir.join("config.json"),
        r#"{"auths": {"first.example": {"auth": "YzpkCg=="}, "gitlab.example": {"auth": "ZXhwbGljaXQ6cHc="}}}"#,
    );
    let vars = |name: &str| -> Option<String> {
        match name {
            "REGISTRY_AUTH_FILE" => Some(auth_file.display().to_string()),
            "DOCKER_CONFIG" => Some(docker_dir.display().to_string()),
            "HOME" => Some("/nonexistent".into()),
            "CI_REGISTRY" => Some("gitlab.example".into()),
            "CI_REGISTRY_USER" => Some("gitlab-ci-token".into()),
            "CI_REGISTRY_PASSWORD" => Some("job-token".into()),
            _ => None,
        }
    };
    let chain = CredentialChain::from_vars(vars);
    assert_eq!(chain.files().len(), 2);
    assert_eq!(
        chain.lookup("first.example").unwrap().unwrap().credential,
        basic("a", "b")
    );
    // An explicit entry beats the CI variables.
    assert_eq!(
        chain.lookup("gitlab.example").unwrap().unwrap().credential,
        basic("explicit", "pw")
    );
    let chain_without_entry = CredentialChain::from_vars(|name| match name {
        "CI_REGISTRY" => Some("gitlab.example".into()),
        "CI_REGISTRY_USER" => Some("gitlab-ci-token".into()),
        "CI_REGISTRY_PASSWORD" => Some("job-token".into()),
        _ => None,
    });
    let found = chain_without_entry
        .lookup("gitlab.example")
        .unwrap()
        .unwrap();
    assert_eq!(found.credential, basic("gitlab-ci-token", "job-token"));
    assert!(chain_without_entry
        .lookup("other.example")
        .unwrap()
        .is_none());
}

#[test]
fn bad_files_name_file_line_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(&cfg, "{\n  \"auths\": {\n    \"x\": [}\n}");
    let err = CredentialChain::empty()
        .with_config_file(&cfg)
        .lookup("x")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&format!("{}:3:", cfg.display())), "{err}");

    write(&cfg, r#"{"auths": {"x.example": {"auth": "!!!"}}}"#);
    let err = CredentialChain::empty()
        .with_config_file(&cfg)
        .lookup("x.example")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"x.example\"") && err.contains("base64"),
        "{err}"
    );
    write(
        &cfg,
        r#"{"auths": {"x.example": {"auth": "bm9jb2xvbg=="}}}"#,
    );
    let err = CredentialChain::empty()
        .with_config_file(&cfg)
        .lookup("x.example")
        .unwrap_err()
        .to_string();
    assert!(err.contains("user:password"), "{err}");
}

#[test]
fn login_writes_auth_entry_and_keeps_other_content() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("d/config.json");
    write(
        &cfg,
        r#"{"auths": {"keep.example": {"auth": "YTpi"}}, "psFormat": "table"}"#,
    );
    write_login(&cfg, "127.0.0.1:5001", "bob", &Secret::new("s3cret"), None).unwrap();
    write_login(&cfg, "docker.io", "hubuser", &Secret::new("hubpw"), None).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["psFormat"], "table");
    assert_eq!(value["auths"]["127.0.0.1:5001"]["auth"], "Ym9iOnMzY3JldA==");
    assert!(value["auths"][DOCKER_HUB_AUTH_KEY]["auth"].is_string());
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let chain = CredentialChain::empty().with_config_file(&cfg);
    assert_eq!(
        chain.lookup("127.0.0.1:5001").unwrap().unwrap().credential,
        basic("bob", "s3cret")
    );
    assert_eq!(
        chain.lookup("keep.example").unwrap().unwrap().credential,
        basic("a", "b")
    );
}

#[test]
fn login_goes_through_the_configured_helper() {
    let dir = tempfile::tempdir().unwrap();
    install_helper(dir.path(), "fake");
    let cfg = dir.path().join("config.json");
    write(&cfg, r#"{"credsStore": "fake"}"#);
    write_login(
        &cfg,
        "reg.example",
        "u",
        &Secret::new("p"),
        Some(dir.path()),
    )
    .unwrap();
    let stored = std::fs::read_to_string(dir.path().join("stored-fake")).unwrap();
    assert!(stored.contains("reg.example"), "{stored}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        !text.contains("\"auth\""),
        "password must not land in the file: {text}"
    );
    assert!(text.contains("reg.example"));
}

#[test]
fn hostname_normalisation() {
    assert_eq!(
        registry_hostname("https://index.docker.io/v1/"),
        "docker.io"
    );
    assert_eq!(
        registry_hostname("HTTP://Reg.Example:5000/v2/"),
        "reg.example:5000"
    );
    assert_eq!(registry_hostname("ghcr.io"), "ghcr.io");
}

#[test]
fn explicit_credentials_come_first() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    write(&cfg, r#"{"auths": {"reg.example": {"auth": "YTpi"}}}"#);
    let chain = CredentialChain::empty()
        .with_config_file(&cfg)
        .with_credential("https://reg.example/", basic("flag", "pw"));
    let found = chain.lookup("reg.example").unwrap().unwrap();
    assert_eq!(found.credential, basic("flag", "pw"));
    assert!(!format!("{found:?}").contains("\"pw\""), "{found:?}");
}

#[test]
fn a_broken_config_file_is_named_with_its_place_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    write(&path, "{\n  \"auths\": {\n");
    let chain = CredentialChain::empty().with_config_file(path.clone());
    let e = chain.lookup("r.example").unwrap_err();
    assert!(std::error::Error::source(&e).is_none());
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:0: invalid credentials file: EOF while parsing an object",
            path.display()
        )
    );

    let unreadable = dir.path().join("dir-config.json");
    std::fs::create_dir(&unreadable).unwrap();
    let chain = CredentialChain::empty().with_config_file(unreadable.clone());
    let e = chain.lookup("r.example").unwrap_err();
    assert!(std::error::Error::source(&e).is_none());
    assert_eq!(e.to_string().matches("Is a directory").count(), 1, "{e}");
}
