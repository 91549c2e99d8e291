//! Layers of stages that never leave the machine (only `COPY --from`ed) are stored
//! uncompressed; the layers of the built image are compressed. Their cache records are kept
//! apart, so the same step in a stage that is pushed never reuses an uncompressed blob.

use rbuild::oci::{Digest, MediaType};
use rbuild::{
    BuildEvent, BuildOutcome, BuildRequest, Builder, ContextSource, DockerfileSource, StepPhases,
    StepStatus,
};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DOCKERFILE: &str = "FROM scratch AS build\n\
    COPY data /data\n\
    FROM scratch\n\
    COPY --from=build /data /copied\n";

fn build(builder: &Builder, context: &std::path::Path, target: Option<&str>) -> BuildOutcome {
    builder
        .build(BuildRequest {
            context: ContextSource::Dir(context.to_path_buf()),
            dockerfile: DockerfileSource::Text(DOCKERFILE.into()),
            source_date_epoch: Some(0),
            target: target.map(str::to_owned),
            ..BuildRequest::default()
        })
        .unwrap()
}

fn head(builder: &Builder, digest: &Digest) -> Vec<u8> {
    let mut first = vec![0; 2];
    builder
        .store()
        .open_blob(digest)
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    first
}

#[test]
fn only_the_built_images_layers_are_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    // Compressible: gzip makes it much smaller, so sizes tell the two kinds apart too.
    std::fs::write(context.join("data"), "rbuild ".repeat(200_000)).unwrap();
    let profiles: Arc<Mutex<Vec<(usize, StepPhases)>>> = Arc::default();
    let seen = profiles.clone();
    let builder = Builder::new(dir.path().join("store"))
        .unwrap()
        .with_progress(Arc::new(move |e| {
            if let BuildEvent::StepProfile { line, phases, .. } = e {
                seen.lock().unwrap().push((*line, phases.clone()));
            }
        }));

    let outcome = build(&builder, &context, None);
    // One profile per layer made; the uncompressed one had nothing to compress.
    let phases = std::mem::take(&mut *profiles.lock().unwrap());
    let [(2, local), (4, last)] = &phases[..] else {
        panic!("{phases:?}");
    };
    assert_eq!(local.compress, Duration::ZERO);
    assert!(last.compress > Duration::ZERO, "{last:?}");
    for p in [local, last] {
        assert!(
            p.run > Duration::ZERO && p.snapshot > Duration::ZERO,
            "{p:?}"
        );
        assert!(p.tar > Duration::ZERO && p.hash > Duration::ZERO, "{p:?}");
        assert!(p.store_write > Duration::ZERO, "{p:?}");
        assert_eq!(p.upload, Duration::ZERO, "nothing pushed");
    }
    let [intermediate, last] = &outcome.steps[..] else {
        panic!("two steps: {:?}", outcome.steps);
    };
    let intermediate_layer = intermediate.layer.clone().unwrap();
    let info = builder.store().blob_size(&intermediate_layer).unwrap();
    assert!(info > 1_400_000, "uncompressed in the store: {info} bytes");
    assert_ne!(head(&builder, &intermediate_layer), [0x1f, 0x8b]);
    let final_layer = &outcome.manifest.layers[0];
    assert_eq!(Some(&final_layer.digest), last.layer.as_ref());
    assert_eq!(final_layer.media_type, MediaType::OciLayerGzip);
    assert_eq!(head(&builder, &final_layer.digest), [0x1f, 0x8b]);
    assert!(final_layer.size < 100_000, "{}", final_layer.size);

    // Again: both steps come from the cache, each with its own kind of blob.
    let again = build(&builder, &context, None);
    assert!(again.steps.iter().all(|s| s.status == StepStatus::Cached));
    assert!(
        profiles.lock().unwrap().is_empty(),
        "no profile for cached steps"
    );
    assert_eq!(again.steps[0].layer.as_ref(), Some(&intermediate_layer));
    assert_eq!(again.digest, outcome.digest);

    // The same stage as the target is part of the built image: its layer is compressed
    // from the uncompressed one the store has (the step does not run again), to the blob
    // that compressing while writing gives.
    let target = build(&builder, &context, Some("build"));
    assert_eq!(target.steps[0].status, StepStatus::Cached);
    let layer = &target.manifest.layers[0];
    assert_eq!(layer.media_type, MediaType::OciLayerGzip);
    assert_eq!(head(&builder, &layer.digest), [0x1f, 0x8b]);
    assert_ne!(layer.digest, intermediate_layer);
    assert_eq!(
        target.config.rootfs.diff_ids[0], intermediate_layer,
        "an uncompressed layer's digest is its diffID"
    );
    let fresh = Builder::new(dir.path().join("fresh-store")).unwrap();
    let direct = build(&fresh, &context, Some("build"));
    assert_eq!(direct.steps[0].status, StepStatus::Built);
    assert_eq!(
        direct.manifest.layers[0], *layer,
        "same blob as compressing directly"
    );
    assert_eq!(direct.digest, target.digest);
}
