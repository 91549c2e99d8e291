//! A cache CI can trust (issue 14): every build here starts from an empty local store (a new
//! CI pod) with Kaniko's default cache flags only (`--cache` and a destination), against the
//! real registry, whose access log says which bytes went over the wire.

use super::{blob_gets, layer_statuses, World};
use rbuild::oci::Digest;
use rbuild::{BuildOutcome, BuildRequest, StepStatus};
use std::path::Path;

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
    let (warm, builder, _) = world.build_fresh(kaniko_defaults(world, &context, APP));
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
        .filter(|r| {
            matches!(r.method.as_str(), "POST" | "PATCH") || r.path.contains("/blobs/uploads")
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
