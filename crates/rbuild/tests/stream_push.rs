//! Layers of the pushed image are uploaded to the real `docker-registry` while they are
//! written (PATCH chunks, PUT with the digest after the store commit); a stream broken in the
//! middle leaves no session and no blob behind, and the push at the end still delivers the
//! image, or fails without a tag.

mod common;

use rbuild::oci::{Digest, Reference};
use rbuild::registry::{CredentialChain, RegistryOptions, RetryPolicy, TransferFn, TransferKind};
use rbuild::{BuildEvent, BuildRequest, Builder, ContextSource, DockerfileSource, Remote};
use rbuild_testkit::{Fault, FaultProxy, FaultRule, RegistryAuth, TestRegistry};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn fast_remote(max_retries: u32) -> Remote {
    let options = RegistryOptions {
        retry: RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        read_timeout: Duration::from_secs(5),
        ..RegistryOptions::default()
    };
    Remote::new(options, CredentialChain::empty()).unwrap()
}

/// A context with one 3.5 MiB random file (3 full upload chunks and a part).
fn big_context(dir: &Path, seed: u64) -> std::path::PathBuf {
    let context = dir.join("ctx");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("big"),
        rbuild_testkit::pseudo_random(3 << 20 | 1 << 19, seed),
    )
    .unwrap();
    context
}

/// Builds `COPY big /big` from a fresh store in `work` and pushes it to `host`'s team/app:v1.
fn build_and_push(
    builder: &Builder,
    work: &Path,
    seed: u64,
    host: &str,
) -> Result<rbuild::BuildOutcome, rbuild::BuildError> {
    let destination = Reference::parse(&format!("{host}/team/app:v1")).unwrap();
    builder.build(BuildRequest {
        context: ContextSource::Dir(big_context(work, seed)),
        dockerfile: DockerfileSource::Text("FROM scratch\nCOPY big /big\n".into()),
        source_date_epoch: Some(0),
        destinations: vec![destination],
        ..BuildRequest::default()
    })
}

fn blob_in_registry(registry: &TestRegistry, digest: &Digest) -> bool {
    registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest.encoded()[..2])
        .join(digest.encoded())
        .join("data")
        .is_file()
}

/// Upload sessions of `repository` whose received bytes the registry still keeps (a
/// cancelled session keeps only its empty hash state directory in Distribution).
fn open_sessions(registry: &TestRegistry, repository: &str) -> usize {
    let dir = registry
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repository)
        .join("_uploads");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("data").exists())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn layer_is_streamed_to_the_registry_before_the_push() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let remote = fast_remote(2);
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let transfers = log.clone();
    let on_transfer: TransferFn = Arc::new(move |t| {
        if t.kind == TransferKind::Uploaded {
            transfers
                .lock()
                .unwrap()
                .push(format!("uploaded {}", t.digest));
        }
    });
    remote.client().set_progress(on_transfer);
    let steps = log.clone();
    let builder = Builder::new(work.path().join("store"))
        .unwrap()
        .with_remote(&remote)
        .with_progress(Arc::new(move |e| {
            if let BuildEvent::StepFinished(report) = e {
                steps
                    .lock()
                    .unwrap()
                    .push(format!("finished line {}", report.line));
            }
        }));
    let outcome = build_and_push(&builder, work.path(), 1, &registry.host()).unwrap();
    let layer = &outcome.manifest.layers[0];
    assert!(
        layer.size > 3 << 20,
        "an incompressible layer: {}",
        layer.size
    );

    // The layer was streamed while the step wrote it (its last `PUT` may complete while
    // later steps run), and the push found it there.
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|l| *l == format!("uploaded {}", layer.digest)),
        "layer never uploaded: {log:?}"
    );
    assert!(log.iter().any(|l| l == "finished line 2"), "{log:?}");
    let pushed = &outcome.pushed[0];
    let layer_push = pushed
        .blobs
        .iter()
        .find(|(d, _)| d == &layer.digest)
        .map(|(_, p)| p.clone());
    assert_eq!(layer_push, Some(rbuild::registry::BlobPush::Existed));

    // In 1 MiB PATCHes, then one PUT with the digest.
    let requests = registry.requests();
    let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 4, "{requests:?}");
    assert!(patches.iter().all(|r| r.status == 202));
    assert!(blob_in_registry(&registry, &layer.digest));
    assert!(registry.has_tag("team/app", "v1"));
    assert_eq!(open_sessions(&registry, "team/app"), 0);

    // What the registry holds is the store's blob, byte for byte.
    let stored = std::fs::read(
        registry
            .storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&layer.digest.encoded()[..2])
            .join(layer.digest.encoded())
            .join("data"),
    )
    .unwrap();
    let mut local = Vec::new();
    std::io::Read::read_to_end(
        &mut builder.store().open_blob(&layer.digest).unwrap(),
        &mut local,
    )
    .unwrap();
    assert_eq!(stored, local);
}

#[test]
fn a_stream_broken_midway_is_deleted_and_the_push_uploads_the_layer() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    // The third PATCH of the stream loses its connection.
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![FaultRule::new("PATCH", "/blobs/uploads/", Fault::CloseBeforeResponse, 1).after(2)],
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let remote = fast_remote(2);
    let builder = Builder::new(work.path().join("store"))
        .unwrap()
        .with_remote(&remote);
    let outcome = build_and_push(&builder, work.path(), 2, &proxy.host()).unwrap();
    assert_eq!(proxy.faults_left(), 0, "the fault was never hit");
    let layer = &outcome.manifest.layers[0];
    let events = proxy.events();
    let broken = events
        .iter()
        .position(|e| e.starts_with("PATCH") && e.ends_with("closed injected"))
        .unwrap();
    assert!(
        events[broken..].iter().any(|e| e.starts_with("DELETE")),
        "the broken session was not deleted: {events:?}"
    );
    // The push uploaded the layer itself.
    let layer_push = outcome.pushed[0]
        .blobs
        .iter()
        .find(|(d, _)| d == &layer.digest)
        .map(|(_, p)| p.clone());
    assert_eq!(layer_push, Some(rbuild::registry::BlobPush::Uploaded));
    assert!(blob_in_registry(&registry, &layer.digest));
    assert!(registry.has_tag("team/app", "v1"));
    assert_eq!(open_sessions(&registry, "team/app"), 0);
}

#[test]
fn a_registry_refusing_every_upload_gets_no_blob_and_no_tag() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    // Every PUT of a blob upload fails, the stream's and the push's.
    let proxy = FaultProxy::start(
        registry.addr(),
        vec![FaultRule::new(
            "PUT",
            "/blobs/uploads/",
            Fault::Status {
                code: 500,
                retry_after: None,
            },
            1000,
        )],
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let remote = fast_remote(1);
    let builder = Builder::new(work.path().join("store"))
        .unwrap()
        .with_remote(&remote);
    let error = build_and_push(&builder, work.path(), 3, &proxy.host())
        .unwrap_err()
        .to_string();
    assert!(error.contains("push failed"), "{error}");
    assert!(error.contains(&proxy.host()), "names the registry: {error}");
    assert!(!error.contains('\n'), "one line: {error}");
    // The store has the layer (the build got that far); the registry has none of it.
    let (_, manifest, _) = builder
        .store()
        .get_image("localhost/rbuild:latest")
        .unwrap();
    let layer = &manifest.layers[0];
    assert!(!blob_in_registry(&registry, &layer.digest));
    assert!(!registry.has_tag("team/app", "v1"));
    let events = proxy.events();
    assert!(
        events.iter().any(|e| e.starts_with("DELETE")),
        "the stream's session was not deleted: {events:?}"
    );
}

/// With the registry cache on, the cache entry of a streamed layer mounts the blob from the
/// image's repository: the layer crosses the wire once (its upload is finished before the
/// cache entry is pushed, not in the background).
#[test]
fn a_streamed_layer_crosses_the_wire_once_with_the_registry_cache() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let remote = fast_remote(2);
    let uploads: Arc<Mutex<Vec<(Digest, TransferKind)>>> = Arc::default();
    let seen = uploads.clone();
    let on_transfer: TransferFn = Arc::new(move |t| {
        seen.lock().unwrap().push((t.digest.clone(), t.kind));
    });
    remote.client().set_progress(on_transfer);
    let builder = Builder::new(work.path().join("store"))
        .unwrap()
        .with_remote(&remote);
    let destination = Reference::parse(&format!("{}/team/app:v1", registry.host())).unwrap();
    let outcome = builder
        .build(BuildRequest {
            context: ContextSource::Dir(big_context(work.path(), 7)),
            dockerfile: DockerfileSource::Text("FROM scratch\nCOPY big /big\n".into()),
            source_date_epoch: Some(0),
            destinations: vec![destination],
            cache: true,
            ..BuildRequest::default()
        })
        .unwrap();
    let layer = &outcome.manifest.layers[0].digest;
    let kinds: Vec<TransferKind> = uploads
        .lock()
        .unwrap()
        .iter()
        .filter(|(d, _)| d == layer)
        .map(|(_, k)| *k)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == TransferKind::Uploaded)
            .count(),
        1,
        "the layer was uploaded more than once: {kinds:?}"
    );
    assert!(
        kinds.contains(&TransferKind::Mounted),
        "the cache entry did not mount the layer: {kinds:?}"
    );
}
