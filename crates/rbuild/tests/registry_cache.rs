//! The registry layer cache against the real `docker-registry` (Debian package
//! `docker-registry`): probes, lazy materialisation, invalidation, TTL, corrupt entries, and
//! the local cache shared by concurrent builds. RUN goes through rbuild-sandbox, so the test
//! binary is its own sandbox helper (`harness = false`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;
#[path = "registry_cache/trust.rs"]
mod trust;

use common::{put_busybox, write_files};
use rbuild::oci::{Digest, Manifest, MediaType, Reference};
use rbuild::registry::{CredentialChain, RegistryOptions};
use rbuild::store::Store;
use rbuild::{
    BuildOutcome, BuildRequest, Builder, ContextSource, DockerfileSource, Remote, SandboxRunner,
    StepStatus,
};
use rbuild_testkit::{RegistryAuth, TestRegistry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    rbuild::sandbox::run_helper_if_requested();
    let sandbox = match rbuild::sandbox::Sandbox::detect() {
        Ok(s) => s,
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("SKIPPED registry cache tests: no sandbox here: {e}");
            return;
        }
        Err(e) => panic!("no sandbox on CI: {e}"),
    };
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let runner = Arc::new(SandboxRunner::new(sandbox));
    let world = World::new(registry, runner);
    let tests: [(&str, Test); 14] = [
        (
            "fully_cached_rebuild_with_a_fresh_store_downloads_no_layer",
            fully_cached_rebuild_with_a_fresh_store_downloads_no_layer,
        ),
        (
            "changed_copy_source_invalidates_from_that_copy_on",
            changed_copy_source_invalidates_from_that_copy_on,
        ),
        (
            "build_args_change_only_the_keys_of_steps_that_see_them",
            build_args_change_only_the_keys_of_steps_that_see_them,
        ),
        (
            "expired_and_corrupt_entries_are_not_used",
            expired_and_corrupt_entries_are_not_used,
        ),
        (
            "concurrent_builds_sharing_a_store_agree",
            concurrent_builds_sharing_a_store_agree,
        ),
        (
            "an_unreachable_cache_gives_warnings_not_a_failed_build",
            an_unreachable_cache_gives_warnings_not_a_failed_build,
        ),
        // After the tests that count the cache repository's entries.
        (
            "unchanged_rebuild_runs_nothing_downloads_nothing_and_keeps_the_digest",
            trust::unchanged_rebuild_runs_nothing_downloads_nothing_and_keeps_the_digest,
        ),
        (
            "only_the_last_run_changed_downloads_just_the_layers_under_it",
            trust::only_the_last_run_changed_downloads_just_the_layers_under_it,
        ),
        ("no_cache_runs_every_step", trust::no_cache_runs_every_step),
        (
            "a_changed_file_is_named_and_the_steps_after_it_name_their_parent",
            trust::a_changed_file_is_named_and_the_steps_after_it_name_their_parent,
        ),
        (
            "a_changed_build_arg_is_named_never_its_value",
            trust::a_changed_build_arg_is_named_never_its_value,
        ),
        (
            "a_moved_base_image_is_reported",
            trust::a_moved_base_image_is_reported,
        ),
        (
            "prune_during_a_build_loses_nothing_the_build_needs",
            trust::prune_during_a_build_loses_nothing_the_build_needs,
        ),
        (
            "cache_ttl_applies_to_the_local_store",
            trust::cache_ttl_applies_to_the_local_store,
        ),
    ];
    for (name, test) in tests {
        test(&world);
        println!("test {name} ... ok");
    }
}

/// One test: its name and body.
type Test = fn(&World);

const DOCKERFILE: &str = "FROM {base}\n\
    COPY a /a\n\
    RUN cat /a > /a2 && echo one > /r1\n\
    COPY b /b\n\
    RUN cat /b > /b2\n\
    ENV DONE=1\n";

struct World {
    registry: TestRegistry,
    runner: Arc<SandboxRunner>,
    work: tempfile::TempDir,
    base: Reference,
    cache_repo: Reference,
}

impl World {
    fn new(registry: TestRegistry, runner: Arc<SandboxRunner>) -> World {
        let work = tempfile::tempdir().unwrap();
        let seed = Store::open(work.path().join("seed")).unwrap();
        put_busybox(&seed, "busybox");
        let (_, manifest, _) = seed.get_image("busybox").unwrap();
        let host = registry.host();
        let base = Reference::parse(&format!("{host}/library/busybox:1")).unwrap();
        remote()
            .push_from_store(
                &seed,
                &manifest.to_canonical_json(),
                &MediaType::OciManifest,
                std::slice::from_ref(&base),
            )
            .unwrap();
        let cache_repo = Reference::parse(&format!("{host}/team/app/cache")).unwrap();
        World {
            registry,
            runner,
            work,
            base,
            cache_repo,
        }
    }

    /// A fresh directory (a context or a store) under the test's work directory.
    fn fresh_dir(&self, prefix: &str) -> PathBuf {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.work.path())
            .unwrap()
            .keep()
    }

    /// A builder over `store` with a remote of its own (a new CI pod).
    fn builder(&self, store: &Path) -> (Builder, Remote) {
        let remote = remote();
        let builder = Builder::new(store)
            .unwrap()
            .with_runner(self.runner.clone())
            .with_remote(&remote);
        (builder, remote)
    }

    fn request(&self, context: &Path, dockerfile: &str) -> BuildRequest {
        BuildRequest {
            context: ContextSource::Dir(context.to_path_buf()),
            dockerfile: DockerfileSource::Text(
                dockerfile.replace("{base}", &self.base.to_string()),
            ),
            source_date_epoch: Some(0),
            cache: true,
            cache_copy_layers: true,
            destinations: vec![self.destination("v1")],
            ..BuildRequest::default()
        }
    }

    fn destination(&self, tag: &str) -> Reference {
        Reference::parse(&format!("{}/team/app:{tag}", self.registry.host())).unwrap()
    }

    fn context(&self, a: &str, b: &str) -> PathBuf {
        let dir = self.fresh_dir("ctx-");
        write_files(&dir, &[("a", a, 0o644), ("b", b, 0o644)]);
        dir
    }

    /// Builds with a fresh store (only the registry cache to go by).
    fn build_fresh(&self, request: BuildRequest) -> (BuildOutcome, Builder, Remote) {
        let (builder, remote) = self.builder(&self.fresh_dir("store-"));
        let outcome = builder.build(request).unwrap();
        (outcome, builder, remote)
    }

    /// The cache repository's layer entries, by the digest of their layer.
    fn entries(&self) -> BTreeMap<Digest, (Reference, Manifest)> {
        let tags = self.registry.storage_dir().join(format!(
            "docker/registry/v2/repositories/{}/_manifests/tags",
            self.cache_repo.repository()
        ));
        let remote = remote();
        let mut out = BTreeMap::new();
        for tag in std::fs::read_dir(&tags).unwrap() {
            let tag = tag.unwrap().file_name().to_string_lossy().into_owned();
            if tag.starts_with("step-") {
                continue; // a step identity entry (the description of a step's last key)
            }
            let reference = self.cache_repo.with_tag(&tag).unwrap();
            let bytes = fetch_manifest(&remote, &reference);
            let manifest = Manifest::from_json(&bytes).unwrap();
            out.insert(manifest.layers[0].digest.clone(), (reference, manifest));
        }
        out
    }
}

fn remote() -> Remote {
    Remote::new(RegistryOptions::default(), CredentialChain::empty()).unwrap()
}

fn fetch_manifest(remote: &Remote, reference: &Reference) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(remote.client().fetch_manifest(reference))
        .unwrap()
        .bytes
}

fn put_manifest(remote: &Remote, reference: &Reference, manifest: &Manifest) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(remote.client().push_manifest(
        reference,
        &manifest.to_canonical_json(),
        &MediaType::OciManifest,
    ))
    .unwrap();
}

/// The statuses of the layer steps, in order.
fn layer_statuses(outcome: &BuildOutcome) -> Vec<(&'static str, StepStatus)> {
    outcome
        .steps
        .iter()
        .filter(|s| s.status != StepStatus::Metadata)
        .map(|s| (s.keyword, s.status))
        .collect()
}

/// GETs of any of `digests`' blobs since the access log had `since` lines.
fn blob_gets(registry: &TestRegistry, since: usize, digests: &[&Digest]) -> Vec<String> {
    registry.requests()[since..]
        .iter()
        .filter(|r| r.method == "GET" && digests.iter().any(|d| r.path.contains(d.as_str())))
        .map(|r| r.path.clone())
        .collect()
}

fn fully_cached_rebuild_with_a_fresh_store_downloads_no_layer(world: &World) {
    use StepStatus::{Built, Cached};
    let context = world.context("alpha\n", "beta\n");
    let (cold, _, _) = world.build_fresh(world.request(&context, DOCKERFILE));
    assert_eq!(
        layer_statuses(&cold),
        [
            ("COPY", Built),
            ("RUN", Built),
            ("COPY", Built),
            ("RUN", Built)
        ]
    );
    assert!(cold.warnings.is_empty(), "{:?}", cold.warnings);
    // Every layer step has its entry (COPY too, with cache_copy_layers).
    assert_eq!(world.entries().len(), 4);
    // The build pushed to its destination itself, after the cache entries.
    let pushed = &cold.pushed;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].reference, world.destination("v1"));
    // The layers the cache push uploaded are mounted from the cache repository, not uploaded
    // again (the base's from its own repository).
    assert_eq!(
        pushed[0].uploaded(),
        1,
        "only the config: {:?}",
        pushed[0].blobs
    );

    // A new pod: empty store, new client.
    let since = world.registry.requests().len();
    let (warm, warm_builder, warm_remote) = world.build_fresh(world.request(&context, DOCKERFILE));
    assert_eq!(
        layer_statuses(&warm),
        [
            ("COPY", Cached),
            ("RUN", Cached),
            ("COPY", Cached),
            ("RUN", Cached)
        ]
    );
    assert_eq!(warm.digest, cold.digest, "same image from the cache");
    let layers: Vec<&Digest> = warm.manifest.layers.iter().map(|l| &l.digest).collect();
    assert_eq!(layers.len(), 5);
    let gets = blob_gets(&world.registry, since, &layers);
    assert!(gets.is_empty(), "layer bytes downloaded: {gets:?}");
    for layer in &layers {
        assert!(!warm_builder.store().has_blob(layer), "{layer} is local");
    }
    // Its push mounts or finds everything registry-side, though the store lacks the layers.
    let pushed = warm_remote
        .push_from_store(
            warm_builder.store(),
            &warm.manifest_bytes,
            &warm.media_type(),
            &[world.destination("v2")],
        )
        .unwrap();
    assert_eq!(pushed[0].digest, cold.digest);
    assert_eq!(pushed[0].uploaded(), 0, "{:?}", pushed[0].blobs);
    let gets = blob_gets(&world.registry, since, &layers);
    assert!(
        gets.is_empty(),
        "layer bytes downloaded by the push: {gets:?}"
    );
}

fn changed_copy_source_invalidates_from_that_copy_on(world: &World) {
    use StepStatus::{Built, Cached};
    let first = world.context("alpha\n", "beta\n");
    let (before, _, _) = world.build_fresh(world.request(&first, DOCKERFILE));
    let changed = world.context("alpha\n", "gamma\n");
    let since = world.registry.requests().len();
    let (after, builder, _) = world.build_fresh(world.request(&changed, DOCKERFILE));
    assert_eq!(
        layer_statuses(&after),
        [
            ("COPY", Cached),
            ("RUN", Cached),
            ("COPY", Built),
            ("RUN", Built)
        ]
    );
    let keys = |o: &BuildOutcome| -> Vec<Option<Digest>> {
        o.steps.iter().map(|s| s.cache_key.clone()).collect()
    };
    let (k1, k2) = (keys(&before), keys(&after));
    assert_eq!(k1[..2], k2[..2]);
    assert!(k1[2..].iter().zip(&k2[2..]).all(|(a, b)| a != b));
    // The first missing step ran on a filesystem fetched from the registry: base and cached
    // layers were downloaded (and verified by their diffIDs when applied).
    assert_eq!(after.manifest.layers[..3], before.manifest.layers[..3]);
    for layer in &after.manifest.layers[..3] {
        assert!(builder.store().has_blob(&layer.digest));
    }
    let cached: Vec<&Digest> = after.manifest.layers[1..3]
        .iter()
        .map(|l| &l.digest)
        .collect();
    assert_eq!(blob_gets(&world.registry, since, &cached).len(), 2);
    let run = common::layer_entries(builder.store(), &after.manifest.layers[4].digest);
    assert!(run.iter().any(|e| e.path == "b2"));
}

fn build_args_change_only_the_keys_of_steps_that_see_them(world: &World) {
    use StepStatus::{Built, Cached};
    let dockerfile = "FROM {base} AS one\n\
        COPY a /a\n\
        FROM {base}\n\
        ARG DEST\n\
        COPY --from=one /a /first\n\
        COPY b /$DEST/b\n";
    let context = world.context("args-a\n", "args-b\n");
    let with_dest = |dest: &str| {
        let mut request = world.request(&context, dockerfile);
        request.build_args.insert("DEST".into(), dest.into());
        request
    };
    let (x, _, _) = world.build_fresh(with_dest("x"));
    assert_eq!(
        layer_statuses(&x),
        [("COPY", Built), ("COPY", Built), ("COPY", Built)]
    );
    let (y, _, _) = world.build_fresh(with_dest("y"));
    // Stage 1 and the COPY that does not use DEST stay cached; the COPY whose destination
    // uses it gets another key.
    assert_eq!(
        layer_statuses(&y),
        [("COPY", Cached), ("COPY", Cached), ("COPY", Built)]
    );
    let key = |o: &BuildOutcome, line: usize| {
        o.steps
            .iter()
            .find(|s| s.line == line)
            .unwrap()
            .cache_key
            .clone()
    };
    assert_eq!(key(&x, 2), key(&y, 2));
    assert_ne!(key(&x, 6), key(&y, 6));
    let (x_again, _, _) = world.build_fresh(with_dest("x"));
    assert_eq!(
        layer_statuses(&x_again),
        [("COPY", Cached), ("COPY", Cached), ("COPY", Cached)]
    );
    assert_eq!(x_again.digest, x.digest);
}

fn expired_and_corrupt_entries_are_not_used(world: &World) {
    use StepStatus::{Built, Cached};
    let context = world.context("ttl-a\n", "ttl-b\n");
    let (cold, _, _) = world.build_fresh(world.request(&context, DOCKERFILE));
    let remote = remote();
    // An entry written long ago: used without a TTL, ignored with one.
    let (reference, mut manifest) = world.entries()[&cold.manifest.layers[2].digest].clone();
    assert!(manifest.annotations["dev.rbuild.cache.created-by"].contains("echo one"));
    manifest.annotations.insert(
        "org.opencontainers.image.created".into(),
        "2001-01-01T00:00:00Z".into(),
    );
    put_manifest(&remote, &reference, &manifest);
    let (no_ttl, _, _) = world.build_fresh(world.request(&context, DOCKERFILE));
    assert_eq!(layer_statuses(&no_ttl)[1], ("RUN", Cached));
    let mut request = world.request(&context, DOCKERFILE);
    request.cache_ttl = Some(Duration::from_secs(3600));
    let (ttl, _, _) = world.build_fresh(request);
    assert_eq!(
        layer_statuses(&ttl),
        [
            ("COPY", Cached),
            ("RUN", Built),
            ("COPY", Cached),
            ("RUN", Cached)
        ]
    );
    assert!(ttl.warnings.is_empty(), "{:?}", ttl.warnings);
    assert_eq!(ttl.digest, cold.digest);

    // A corrupt entry (its diffID unreadable): a warning, and the step runs.
    let (reference, mut manifest) = world.entries()[&cold.manifest.layers[4].digest].clone();
    manifest
        .annotations
        .insert("dev.rbuild.cache.diff-id".into(), "sha256:nonsense".into());
    put_manifest(&remote, &reference, &manifest);
    let (corrupt, _, _) = world.build_fresh(world.request(&context, DOCKERFILE));
    assert_eq!(
        layer_statuses(&corrupt),
        [
            ("COPY", Cached),
            ("RUN", Cached),
            ("COPY", Cached),
            ("RUN", Built)
        ]
    );
    assert!(
        corrupt
            .warnings
            .iter()
            .any(|w| w.contains(reference.tag().unwrap()) && w.contains("ignored")),
        "{:?}",
        corrupt.warnings
    );
    assert_eq!(corrupt.digest, cold.digest);
}

fn concurrent_builds_sharing_a_store_agree(world: &World) {
    let store = world.fresh_dir("shared-store-");
    let context = world.context("shared-a\n", "shared-b\n");
    let outcomes: Vec<BuildOutcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (store, context) = (&store, &context);
                scope.spawn(move || {
                    let (builder, _) = world.builder(store);
                    let mut request = world.request(context, DOCKERFILE);
                    // The local cache only.
                    request.cache = false;
                    builder.build(request).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes[0].digest, outcomes[1].digest);
    let (builder, _) = world.builder(&store);
    let mut request = world.request(&context, DOCKERFILE);
    request.cache = false;
    let again = builder.build(request).unwrap();
    assert!(again.steps.iter().all(|s| s.status != StepStatus::Built));
    assert_eq!(again.digest, outcomes[0].digest);
}

fn an_unreachable_cache_gives_warnings_not_a_failed_build(world: &World) {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = RegistryOptions {
        retry: rbuild::registry::RetryPolicy::none(),
        ..RegistryOptions::default()
    };
    let remote = Remote::new(options, CredentialChain::empty()).unwrap();
    let builder = Builder::new(world.fresh_dir("store-"))
        .unwrap()
        .with_runner(world.runner.clone())
        .with_remote(&remote);
    let context = world.context("unreachable-a\n", "unreachable-b\n");
    let mut request = world.request(&context, DOCKERFILE);
    request.cache_repo = Some(Reference::parse(&format!("127.0.0.1:{port}/team/cache")).unwrap());
    let outcome = builder.build(request).unwrap();
    assert!(outcome.steps.iter().all(|s| s.status != StepStatus::Cached));
    let lookups = outcome
        .warnings
        .iter()
        .filter(|w| w.contains("lookup"))
        .count();
    let pushes = outcome
        .warnings
        .iter()
        .filter(|w| w.contains("not pushed"))
        .count();
    assert_eq!((lookups, pushes), (4, 4), "{:?}", outcome.warnings);
    // Nothing remote to rely on: the image is complete in the store.
    assert!(outcome.remote_layers.is_empty());
    assert!(builder.store().get_image(&outcome.image_name).is_ok());
}
