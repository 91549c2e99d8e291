//! Credentials never appear in tracing events, error messages or `Debug` output, even at
//! trace level and on failure paths.

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use common::*;
use rbuild_registry::{CredentialChain, RegistryClient, RegistryOptions};
use rbuild_testkit::{RegistryAuth, TestRegistry, TokenIssuerConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event and span field as text.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = self.0.lock().unwrap();
        span.record(&mut Fields(&mut text));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = self.0.lock().unwrap();
        text.push('\n');
        event.record(&mut Fields(&mut text));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn passwords_and_tokens_stay_out_of_logs_and_errors() {
    let Some(basic) = TestRegistry::start_or_skip(RegistryAuth::Htpasswd {
        username: "alice".into(),
        password: "pw-basic-s3cr3t".into(),
    }) else {
        return;
    };
    let Some(token) = TestRegistry::start_or_skip(RegistryAuth::Token(TokenIssuerConfig {
        password: "pw-token-s3cr3t".into(),
        ..TokenIssuerConfig::default()
    })) else {
        return;
    };
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());

    let dir = tempfile::tempdir().unwrap();
    let image = small_image(40);
    let options = RegistryOptions {
        ca_certificates: vec![(basic.host(), basic.tls().unwrap().ca_cert.clone())],
        ..fast_options()
    };
    let mut seen = String::new();
    for (i, (password, registry)) in [
        ("pw-basic-s3cr3t", &basic),
        ("wrong-basic-s3cr3t", &basic),
        ("pw-token-s3cr3t", &token),
        ("wrong-token-s3cr3t", &token),
    ]
    .into_iter()
    .enumerate()
    {
        let user = if registry.token_issuer().is_some() {
            "tokenuser"
        } else {
            "alice"
        };
        let chain: CredentialChain = config_with_login(
            &dir.path().join(i.to_string()),
            &registry.host(),
            user,
            password,
        );
        let _ = write!(seen, "{chain:?}");
        let client = RegistryClient::new(options.clone(), chain);
        let _ = write!(seen, "{client:?}");
        let destination = reference(&format!("{}/team/app:v1", registry.host()));
        match client
            .push_image(
                &image.manifest_bytes,
                &image.media_type,
                &blobs_of(&image),
                &[destination],
            )
            .await
        {
            Ok(out) => {
                let _ = write!(seen, "{out:?}");
            }
            Err(e) => {
                let _ = write!(seen, "{e} {e:?}");
            }
        }
    }
    let logged = recorder.0.lock().unwrap().clone();
    assert!(
        logged.contains("obtained registry token"),
        "the recorder saw the client's events: {logged}"
    );
    assert!(seen.contains("were rejected"), "a failure path ran: {seen}");
    for text in [&logged, &seen] {
        assert!(!text.contains("s3cr3t"), "a password leaked: {text}");
        assert!(
            !text.contains("Basic YWxp"),
            "a Basic header leaked: {text}"
        );
        assert!(!text.contains("eyJ"), "a JWT leaked: {text}");
    }
}
