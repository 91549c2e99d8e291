//! A cache CI can trust (issue 14): every build here starts from an empty local store (a new
//! CI pod) with Kaniko's default cache flags only (`--cache` and a destination), against the
//! real registry, whose access log says which bytes went over the wire.

use super::{blob_gets, layer_statuses, World};
use rbuild::oci::{Digest, MediaType, Reference};
use rbuild::plan::MissReason;
use rbuild::store::Store;
use rbuild::{BuildEvent, BuildOutcome, BuildRequest, StepStatus};
use std::path::Path;
use std::sync::{Arc, Mutex};

const APP: &str = "FROM {base}\n\
    WORKDIR /app\n\
    COPY a /app/a\n\
    RUN cat /app/a > /app/a2 && head -c 300000 /dev/urandom > /app/big\n\
    ENV MODE=release\n\
    COPY b /app/b\n\
    RUN cat /app/b > /app/b2\n\
    CMD [\"/bin/sh\"]\n";

/// `--cache --destination D`, nothing else: the library's defaults for every other cache
/// flag (no `--cache-copy-layers`) and no fixed clock.
fn kaniko_defaults(world: &World, context: &Path, dockerfile: &str) -> BuildRequest {
    let defaults = BuildRequest::default();
    BuildRequest {
        source_date_epoch: None,
        // Provenance (on by default when pushing) is a new document each build, with its
        // times; these tests watch the image's own blobs.
        provenance: Some(false),
        cache_copy_layers: defaults.cache_copy_layers,
        cache_run_layers: defaults.cache_run_layers,
        ..world.request(context, dockerfile)
    }
}

/// How many GETs of each of `digests`' blobs the registry served since `since`.
fn gets_per_blob(world: &World, since: usize, digests: &[&Digest]) -> Vec<usize> {
    digests
        .iter()
        .map(|d| blob_gets(&world.registry, since, &[d]).len())
        .collect()
}

pub(super) fn unchanged_rebuild_runs_nothing_downloads_nothing_and_keeps_the_digest(world: &World) {
    use StepStatus::{Built, Cached};
    let context = world.context("trust-a\n", "trust-b\n");
    let (cold, _, _) = world.build_fresh(kaniko_defaults(world, &context, APP));
    let every = |status| {
        vec![
            ("WORKDIR", status),
            ("COPY", status),
            ("RUN", status),
            ("COPY", status),
            ("RUN", status),
        ]
    };
    assert_eq!(layer_statuses(&cold), every(Built));
    assert!(cold.warnings.is_empty(), "{:?}", cold.warnings);

    // Another pod, a second later: an empty store and the same inputs.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let since = world.registry.requests().len();
    // Kaniko attaches no provenance (rbuild's default when pushing, a referrer with the
    // build's times: new bytes every build, the image digest unchanged).
    let warm_request = BuildRequest {
        provenance: Some(false),
        ..kaniko_defaults(world, &context, APP)
    };
    let (warm, builder, _) = world.build_fresh(warm_request);
    assert_eq!(layer_statuses(&warm), every(Cached), "nothing ran");
    assert_eq!(
        warm.digest, cold.digest,
        "an unchanged rebuild gives the same image"
    );
    assert_eq!(warm.config.created, cold.config.created);
    assert_eq!(warm.config.history, cold.config.history);
    let layers: Vec<&Digest> = warm.manifest.layers.iter().map(|l| &l.digest).collect();
    let gets = blob_gets(&world.registry, since, &layers);
    assert!(gets.is_empty(), "layer bytes downloaded: {gets:?}");
    for layer in &layers {
        assert!(!builder.store().has_blob(layer), "{layer} was fetched");
    }
    // The push found every blob there: nothing but the tag was written.
    assert_eq!(warm.pushed.len(), 1);
    assert_eq!(warm.pushed[0].digest, cold.digest);
    assert_eq!(warm.pushed[0].uploaded(), 0, "{:?}", warm.pushed[0].blobs);
    let uploads: Vec<String> = world.registry.requests()[since..]
        .iter()
        // Bytes only: a session opened and deleted (a push permission check) writes nothing.
        .filter(|r| {
            r.path.contains("/blobs/uploads") && matches!(r.method.as_str(), "PATCH" | "PUT")
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(uploads.is_empty(), "blob uploads: {uploads:?}");
}

pub(super) fn only_the_last_run_changed_downloads_just_the_layers_under_it(world: &World) {
    use StepStatus::{Built, Cached};
    let context = world.context("under-a\n", "under-b\n");
    let (cold, _, _) = world.build_fresh(kaniko_defaults(world, &context, APP));
    let changed = APP.replace("cat /app/b > /app/b2", "cat /app/b /app/a > /app/b2");
    let since = world.registry.requests().len();
    let (warm, builder, _) = world.build_fresh(kaniko_defaults(world, &context, &changed));
    assert_eq!(
        layer_statuses(&warm),
        [
            ("WORKDIR", Cached),
            ("COPY", Cached),
            ("RUN", Cached),
            ("COPY", Cached),
            ("RUN", Built),
        ]
    );
    // The base's layer and the four cached ones are under the changed RUN: each fetched
    // once (and checked against its diffID as it was unpacked); the old last layer never.
    let under: Vec<&Digest> = cold.manifest.layers[..5]
        .iter()
        .map(|l| &l.digest)
        .collect();
    assert_eq!(warm.manifest.layers[..5], cold.manifest.layers[..5]);
    assert_eq!(gets_per_blob(world, since, &under), vec![1; 5]);
    let old_last = &cold.manifest.layers[5].digest;
    assert!(blob_gets(&world.registry, since, &[old_last]).is_empty());
    assert!(!builder.store().has_blob(old_last));
    let run = super::common::layer_entries(builder.store(), &warm.manifest.layers[5].digest);
    assert!(run.iter().any(|e| e.path == "app/b2"), "{run:?}");
    assert_ne!(warm.digest, cold.digest);
}

pub(super) fn no_cache_runs_every_step(world: &World) {
    let context = world.context("nocache-a\n", "nocache-b\n");
    let (cold, _, _) = world.build_fresh(kaniko_defaults(world, &context, APP));
    let (builder, _) = world.builder(&world.fresh_dir("store-"));
    let request = BuildRequest {
        no_cache: true,
        ..kaniko_defaults(world, &context, APP)
    };
    let again: BuildOutcome = builder.build(request).unwrap();
    assert!(
        again.steps.iter().all(|s| s.status != StepStatus::Cached),
        "{:?}",
        layer_statuses(&again)
    );
    // The random bytes of the first RUN are new: it really ran.
    assert_ne!(again.manifest.layers[3], cold.manifest.layers[3]);
}

/// Builds `request` in an empty store; returns the outcome and the cache misses reported,
/// as (line, reason).
fn build_with_misses(
    world: &World,
    request: BuildRequest,
) -> (BuildOutcome, Vec<(usize, MissReason)>) {
    let misses = Arc::new(Mutex::new(Vec::new()));
    let seen = misses.clone();
    let (builder, _) = world.builder(&world.fresh_dir("store-"));
    let builder = builder.with_progress(Arc::new(move |event: &BuildEvent| {
        if let BuildEvent::CacheMiss { line, reason, .. } = event {
            seen.lock().unwrap().push((*line, reason.clone()));
        }
    }));
    let outcome = builder.build(request).unwrap();
    let misses = misses.lock().unwrap().clone();
    (outcome, misses)
}

/// A cache repository of a test's own (step identities are per stage, position and kind:
/// the other tests' Dockerfiles would be the earlier records).
fn own_cache(world: &World, name: &str) -> Reference {
    Reference::parse(&format!("{}/trust/{name}/cache", world.registry.host())).unwrap()
}

/// The manifests of `repo`'s step identity entries, as text.
fn identity_entries(world: &World, repo: &Reference) -> Vec<String> {
    let tags = world.registry.storage_dir().join(format!(
        "docker/registry/v2/repositories/{}/_manifests/tags",
        repo.repository()
    ));
    let remote = super::remote();
    std::fs::read_dir(&tags)
        .unwrap()
        .map(|t| t.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|t| t.starts_with("step-"))
        .map(|t| {
            let reference = repo.with_tag(&t).unwrap();
            String::from_utf8(super::fetch_manifest(&remote, &reference)).unwrap()
        })
        .collect()
}

const SOURCES: &str = "FROM {base}\n\
    ARG GIT_SHA\n\
    COPY src /src\n\
    RUN ls /src > /listing && echo $GIT_SHA > /sha\n";

pub(super) fn a_changed_file_is_named_and_the_steps_after_it_name_their_parent(world: &World) {
    let context = world.fresh_dir("ctx-");
    let files = [
        ("src/main.rs", "fn main() {}\n", 0o644),
        ("src/lib.rs", "pub fn f() {}\n", 0o644),
        ("src/util.rs", "pub fn g() {}\n", 0o644),
    ];
    super::common::write_files(&context, &files);
    let request = || {
        let mut request = kaniko_defaults(world, &context, SOURCES);
        request
            .build_args
            .insert("GIT_SHA".into(), "sha-one".into());
        request.cache_repo = Some(own_cache(world, "files"));
        request
    };
    let (_, cold_misses) = build_with_misses(world, request());
    assert!(
        cold_misses.is_empty(),
        "nothing to compare with: {cold_misses:?}"
    );

    std::fs::write(context.join("src/main.rs"), "fn main() { f() }\n").unwrap();
    let (_, misses) = build_with_misses(world, request());
    assert_eq!(
        misses,
        [
            (
                3,
                MissReason::FileChanged {
                    path: "src/main.rs".into(),
                    more: 0
                }
            ),
            (4, MissReason::ParentMissed { line: 3 }),
        ]
    );
    assert_eq!(misses[0].1.to_string(), "src/main.rs changed");

    // Three files changed: the first named, the others counted.
    for f in ["src/main.rs", "src/lib.rs", "src/util.rs"] {
        std::fs::write(context.join(f), "// changed\n").unwrap();
    }
    let (_, misses) = build_with_misses(world, request());
    assert_eq!(
        misses[0].1.to_string(),
        "src/lib.rs changed (and 2 more files)"
    );
}

pub(super) fn a_changed_build_arg_is_named_never_its_value(world: &World) {
    let context = world.fresh_dir("ctx-");
    super::common::write_files(&context, &[("src/a", "a\n", 0o644)]);
    let with_sha = |sha: &str| {
        let mut request = kaniko_defaults(world, &context, SOURCES);
        request.build_args.insert("GIT_SHA".into(), sha.into());
        request.cache_repo = Some(own_cache(world, "args"));
        request
    };
    let (cold, _) = build_with_misses(world, with_sha("c0ffee-first-value"));
    let (warm, misses) = build_with_misses(world, with_sha("deadbeef-second-value"));
    assert_eq!(
        layer_statuses(&warm),
        [("COPY", StepStatus::Cached), ("RUN", StepStatus::Built)]
    );
    assert_eq!(
        misses,
        [(
            4,
            MissReason::ValueChanged {
                name: "GIT_SHA".into(),
                build_arg: true,
                more: 0
            }
        )]
    );
    assert_eq!(misses[0].1.to_string(), "build arg GIT_SHA changed");
    // The descriptions stored in the cache repository name the arg, never its values.
    let entries = identity_entries(world, &own_cache(world, "args"));
    assert!(entries.iter().any(|e| e.contains("GIT_SHA")));
    for value in ["c0ffee-first-value", "deadbeef-second-value"] {
        assert!(entries.iter().all(|e| !e.contains(value)), "{value} stored");
        assert!(!format!("{misses:?}").contains(value));
    }
    assert_ne!(cold.digest, warm.digest);
}

pub(super) fn a_moved_base_image_is_reported(world: &World) {
    let seed = rbuild::store::Store::open(world.work.path().join("seed")).unwrap();
    let (_, manifest, config) = seed.get_image("busybox").unwrap();
    let base =
        Reference::parse(&format!("{}/library/busybox:moving", world.registry.host())).unwrap();
    let push = |manifest: &rbuild::oci::Manifest| super::push_image(&seed, manifest, &base);
    push(&manifest);
    let context = world.fresh_dir("ctx-");
    super::common::write_files(&context, &[("src/a", "moving\n", 0o644)]);
    let dockerfile = SOURCES.replace("{base}", &base.to_string());
    let request = || BuildRequest {
        cache_repo: Some(own_cache(world, "base")),
        ..kaniko_defaults(world, &context, &dockerfile)
    };
    let (_, _) = build_with_misses(world, request());
    // The tag moves to another image (a new config: a security update, say).
    let mut moved = config.clone();
    moved.config.env.push("MOVED=1".into());
    let config_descriptor = seed
        .put_blob(&moved.to_canonical_json(), MediaType::OciConfig)
        .unwrap();
    let moved_manifest = rbuild::oci::Manifest {
        config: config_descriptor,
        ..manifest.clone()
    };
    push(&moved_manifest);
    let (after, misses) = build_with_misses(world, request());
    assert_eq!(
        layer_statuses(&after),
        [("COPY", StepStatus::Built), ("RUN", StepStatus::Built)]
    );
    assert_eq!(misses[0], (3, MissReason::BaseImageChanged));
    assert_eq!(misses[0].1.to_string(), "base image digest changed");
}

/// Local store only (no registry cache), a Dockerfile whose RUN says when it started.
fn local_request(world: &World, context: &Path, run: &str) -> BuildRequest {
    let dockerfile = format!("FROM {{base}}\nCOPY a /a\nRUN {run}\n");
    BuildRequest {
        cache: false,
        destinations: Vec::new(),
        image_name: Some("localhost/trust/prune:latest".into()),
        ..world.request(context, &dockerfile)
    }
}

pub(super) fn prune_during_a_build_loses_nothing_the_build_needs(world: &World) {
    let store_dir = world.fresh_dir("prune-store-");
    let context = world.context("prune-a\n", "prune-b\n");
    let (builder, _) = world.builder(&store_dir);
    let cold = builder
        .build(local_request(world, &context, "cat /a > /one"))
        .unwrap();
    // Only the cache record keeps the COPY layer now.
    assert!(builder.store().remove_image(&cold.image_name).unwrap());
    let copy_layer = cold.manifest.layers[1].digest.clone();

    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let (warm_builder, _) = world.builder(&store_dir);
    let warm_builder = warm_builder.with_progress(Arc::new(move |event: &BuildEvent| {
        if let BuildEvent::Output { text, .. } = event {
            if text.contains("started") {
                let _ = started_tx.lock().unwrap().send(());
            }
        }
    }));
    let run = "echo started && sleep 2 && cat /a > /two";
    let warm = std::thread::scope(|scope| {
        let build = scope.spawn(|| warm_builder.build(local_request(world, &context, run)));
        started_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the RUN step started");
        // Everything unreferenced goes, at once (no grace period).
        let options = rbuild::store::PruneOptions {
            all: true,
            grace: std::time::Duration::ZERO,
            ..Default::default()
        };
        let report = Store::open(&store_dir).unwrap().prune(&options).unwrap();
        assert!(report.removed_records >= 2, "{report:?}");
        build.join().unwrap()
    });
    let warm = warm.expect("the build survives the prune");
    assert_eq!(
        layer_statuses(&warm),
        [("COPY", StepStatus::Cached), ("RUN", StepStatus::Built)]
    );
    assert_eq!(warm.manifest.layers[1].digest, copy_layer);
    let store = Store::open(&store_dir).unwrap();
    let (_, manifest, _) = store.get_image(&warm.image_name).unwrap();
    for layer in &manifest.layers {
        assert!(store.has_blob(&layer.digest), "{} lost", layer.digest);
    }
    // The lease went with the build: a prune now keeps only what the image reaches.
    let options = rbuild::store::PruneOptions {
        all: true,
        grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    store.prune(&options).unwrap();
    assert!(!store
        .root()
        .join(".rbuild-leases")
        .read_dir()
        .unwrap()
        .any(|_| true));
    assert!(store.has_blob(&copy_layer), "the image still needs it");
}

pub(super) fn cache_ttl_applies_to_the_local_store(world: &World) {
    let store_dir = world.fresh_dir("ttl-store-");
    let context = world.context("ttl-local-a\n", "ttl-local-b\n");
    let (builder, _) = world.builder(&store_dir);
    builder
        .build(local_request(world, &context, "cat /a > /ttl"))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let with_ttl = |ttl: u64| BuildRequest {
        cache_ttl: Some(std::time::Duration::from_secs(ttl)),
        ..local_request(world, &context, "cat /a > /ttl")
    };
    let fresh_enough = builder.build(with_ttl(3600)).unwrap();
    assert_eq!(
        layer_statuses(&fresh_enough),
        [("COPY", StepStatus::Cached), ("RUN", StepStatus::Cached)]
    );
    let too_old = builder.build(with_ttl(1)).unwrap();
    assert_eq!(
        layer_statuses(&too_old),
        [("COPY", StepStatus::Built), ("RUN", StepStatus::Built)]
    );
}

pub(super) fn an_add_url_is_keyed_by_its_etag(world: &World) {
    use rbuild_testkit::{CannedServer, Reply};
    // (ETag, body) the server has now; no ETag means no validator at all.
    let file: Arc<Mutex<(Option<&'static str>, &'static str)>> =
        Arc::new(Mutex::new((Some("\"v1\""), "first\n")));
    let served = file.clone();
    let server = CannedServer::start(move |_method, _path| {
        let (etag, body) = *served.lock().unwrap();
        Reply::Full {
            status: 200,
            headers: etag
                .map(|e| vec![("ETag".to_string(), e.to_string())])
                .unwrap_or_default(),
            body: body.as_bytes().to_vec(),
        }
    })
    .unwrap();
    let context = world.fresh_dir("ctx-");
    let dockerfile = format!(
        "FROM scratch\nADD http://{}/file.txt /file.txt\n",
        server.host()
    );
    let (builder, _) = world.builder(&world.fresh_dir("etag-store-"));
    let build = || {
        let request = BuildRequest {
            cache: false,
            destinations: Vec::new(),
            ..world.request(&context, &dockerfile)
        };
        builder.build(request).unwrap()
    };
    let gets = || {
        server
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET "))
            .count()
    };
    let first = build();
    assert_eq!(layer_statuses(&first), [("ADD", StepStatus::Built)]);
    assert_eq!(gets(), 1);
    // Same ETag: a HEAD, no download, the same layer.
    let again = build();
    assert_eq!(layer_statuses(&again), [("ADD", StepStatus::Cached)]);
    assert_eq!(gets(), 1, "{:?}", server.requests());
    assert_eq!(again.digest, first.digest);
    // A new version: downloaded and built.
    *file.lock().unwrap() = (Some("\"v2\""), "second\n");
    let changed = build();
    assert_eq!(layer_statuses(&changed), [("ADD", StepStatus::Built)]);
    assert_eq!(gets(), 2);
    let entries = super::common::layer_entries(builder.store(), &changed.manifest.layers[0].digest);
    assert!(entries.iter().any(|e| e.content == b"second\n"));
    // No validator at all: nothing to key it by, so it is fetched every time.
    *file.lock().unwrap() = (None, "second\n");
    let unkeyed = build();
    assert_eq!(layer_statuses(&unkeyed), [("ADD", StepStatus::Built)]);
    assert_eq!(gets(), 3);
}

pub(super) fn a_lying_cache_entry_fails_the_build_naming_it(world: &World) {
    let context = world.context("lying-a\n", "lying-b\n");
    let cache = own_cache(world, "lying");
    let request = |dockerfile: &str| BuildRequest {
        cache_repo: Some(cache.clone()),
        ..kaniko_defaults(world, &context, dockerfile)
    };
    let (cold, _, _) = world.build_fresh(request(APP));
    // The entry of the first COPY claims another diffID for its layer.
    let copy_layer = &cold.manifest.layers[2].digest;
    let remote = super::remote();
    let tags = world.registry.storage_dir().join(format!(
        "docker/registry/v2/repositories/{}/_manifests/tags",
        cache.repository()
    ));
    let mut lied = 0;
    for tag in std::fs::read_dir(&tags).unwrap() {
        let tag = tag.unwrap().file_name().to_string_lossy().into_owned();
        let reference = cache.with_tag(&tag).unwrap();
        let mut manifest =
            rbuild::oci::Manifest::from_json(&super::fetch_manifest(&remote, &reference)).unwrap();
        if manifest.layers.first().map(|l| &l.digest) == Some(copy_layer) {
            manifest.annotations.insert(
                "dev.rbuild.cache.diff-id".into(),
                Digest::sha256_of(b"a lie").to_string(),
            );
            super::put_manifest(&remote, &reference, &manifest);
            lied += 1;
        }
    }
    assert_eq!(lied, 1);
    // A later step runs on the lying layer: refused as it is unpacked, naming the cache.
    let changed = APP.replace("cat /app/b > /app/b2", "cat /app/b > /app/b3");
    let (builder, _) = world.builder(&world.fresh_dir("store-"));
    let err = builder.build(request(&changed)).unwrap_err().to_string();
    assert!(
        err.contains(&cache.to_string()) && err.contains("--no-cache"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    // --no-cache gets past it.
    let (builder, _) = world.builder(&world.fresh_dir("store-"));
    let rebuilt = builder
        .build(BuildRequest {
            no_cache: true,
            ..request(&changed)
        })
        .unwrap();
    assert!(rebuilt.steps.iter().all(|s| s.status != StepStatus::Cached));
}
