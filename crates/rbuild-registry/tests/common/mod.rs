//! Shared helpers for the tests against real registries.
#![allow(dead_code)]

use std::time::Duration;

use rbuild_oci::Reference;
use rbuild_registry::{CredentialChain, MemoryBlobs, RegistryClient, RegistryOptions, RetryPolicy};
use rbuild_testkit::{TestImage, TestLayer};

/// Options with fast retries, so fault tests stay quick.
pub fn fast_options() -> RegistryOptions {
    RegistryOptions {
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        },
        read_timeout: Duration::from_secs(2),
        ..RegistryOptions::default()
    }
}

pub fn anonymous_client() -> RegistryClient {
    RegistryClient::new(fast_options(), CredentialChain::empty())
}

pub fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

/// A small image with three layers, each unique to `seed`.
pub fn small_image(seed: u64) -> TestImage {
    TestImage::build(&[
        TestLayer::file("etc/hello", format!("hello {seed}\n")),
        TestLayer::random("bin/tool", 300_000, seed),
        TestLayer::file("etc/bye", format!("bye {seed}\n")),
    ])
    .unwrap()
}

/// The image's blobs in a memory source.
pub fn blobs_of(image: &TestImage) -> MemoryBlobs {
    let blobs = MemoryBlobs::new();
    for (_, data) in &image.blobs {
        blobs.insert(data.clone());
    }
    blobs
}

/// Pushes `image` (blobs from memory) to `destinations` with `client`; panics on failure.
pub async fn push(
    client: &RegistryClient,
    image: &TestImage,
    destinations: &[Reference],
) -> Vec<rbuild_registry::PushOutcome> {
    client
        .push_image(
            &image.manifest_bytes,
            &image.media_type,
            &blobs_of(image),
            destinations,
        )
        .await
        .unwrap()
}

/// Writes a Docker config.json with one `auths` entry and returns the chain reading it.
pub fn config_with_login(
    dir: &std::path::Path,
    host: &str,
    user: &str,
    password: &str,
) -> CredentialChain {
    let path = dir.join("config.json");
    rbuild_registry::write_login(
        &path,
        host,
        user,
        &rbuild_registry::Secret::new(password),
        None,
    )
    .unwrap();
    CredentialChain::empty().with_config_file(path)
}
