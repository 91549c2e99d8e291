//! The library inside an async program (issue 16 item 7): `examples/build_and_push.rs` built
//! and run inside tokio runtimes of both flavours, and `Builder::build` and `Remote` called
//! straight from an async task (no `spawn_blocking`), which used to panic with "Cannot start
//! a runtime from within a runtime" at push time.

#[allow(dead_code)]
#[path = "../examples/build_and_push.rs"]
mod example;

use rbuild::oci::Reference;
use rbuild::registry::{CredentialChain, RegistryOptions};
use rbuild::{BuildRequest, Builder, ContextSource, Remote};
use rbuild_testkit::{RegistryAuth, TestRegistry};
use std::path::PathBuf;

fn context(dir: &std::path::Path) -> PathBuf {
    let context = dir.join("ctx");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("a.txt"), "from an async program\n").unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY a.txt /a.txt\n",
    )
    .unwrap();
    context
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_builds_and_pushes_inside_a_multi_thread_runtime() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let destination = format!("{}/example/app:v1", registry.host());
    let digest =
        example::build_and_push(context(dir.path()), &destination, &dir.path().join("store"))
            .await
            .unwrap();
    assert!(digest.starts_with("sha256:"));
    assert!(registry.has_tag("example/app", "v1"));
}

#[tokio::test(flavor = "current_thread")]
async fn build_and_remote_called_straight_from_an_async_task() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let destination = Reference::parse(&format!("{}/direct/app:v2", registry.host())).unwrap();
    let remote = Remote::new(RegistryOptions::default(), CredentialChain::empty()).unwrap();
    remote
        .check_push_permissions(std::slice::from_ref(&destination))
        .unwrap();
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_remote(&remote);
    let outcome = builder
        .build(BuildRequest {
            context: ContextSource::Dir(context(dir.path())),
            destinations: vec![destination],
            ..BuildRequest::default()
        })
        .unwrap();
    assert_eq!(outcome.pushed.len(), 1);
    assert!(registry.has_tag("direct/app", "v2"));
    // The remote (and its runtime) dropped inside this runtime: no panic either.
    drop(builder);
    drop(remote);
    tokio::task::yield_now().await;
}
