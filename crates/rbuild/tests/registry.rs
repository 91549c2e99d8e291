//! Pull a base image from and push the result to the real `docker-registry` (Debian package
//! `docker-registry`), checked by skopeo.

mod common;

use common::{layer_entries, put_busybox, write_files};
use rbuild::oci::Reference;
use rbuild::registry::{CredentialChain, RegistryOptions};
use rbuild::store::Store;
use rbuild::{BuildRequest, Builder, ContextSource, DockerfileSource, Remote};
use rbuild_testkit::{skopeo, RegistryAuth, TestRegistry};

#[test]
fn base_pulled_on_demand_and_result_pushed_to_two_destinations() {
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let host = registry.host();
    let remote = Remote::new(RegistryOptions::default(), CredentialChain::empty()).unwrap();

    // Seed the registry with the busybox image from a store of its own.
    let work = tempfile::tempdir().unwrap();
    let seed = Store::open(work.path().join("seed")).unwrap();
    put_busybox(&seed, "busybox");
    let (_, manifest, _) = seed.get_image("busybox").unwrap();
    let base_ref = Reference::parse(&format!("{host}/library/busybox:1")).unwrap();
    remote
        .push_from_store(
            &seed,
            &manifest.to_canonical_json(),
            &rbuild::oci::MediaType::OciManifest,
            std::slice::from_ref(&base_ref),
        )
        .unwrap();

    // A builder with an empty store pulls the base when planning.
    let context = work.path().join("ctx");
    write_files(&context, &[("f", "from the context\n", 0o644)]);
    let builder = Builder::new(work.path().join("store"))
        .unwrap()
        .with_remote(&remote);
    let outcome = builder
        .build(BuildRequest {
            context: ContextSource::Dir(context),
            dockerfile: DockerfileSource::Text(format!("FROM {base_ref}\nCOPY f /f\n")),
            source_date_epoch: Some(0),
            ..BuildRequest::default()
        })
        .unwrap();
    assert_eq!(outcome.manifest.layers.len(), 2);
    assert_eq!(
        outcome.manifest.layers[0], manifest.layers[0],
        "base layer reused as is"
    );
    let pulled = builder.store().get_image(&base_ref.to_string()).unwrap();
    assert_eq!(pulled.1, manifest);

    let destinations = vec![
        Reference::parse(&format!("{host}/team/app:v1")).unwrap(),
        Reference::parse(&format!("{host}/team/app:latest")).unwrap(),
    ];
    let pushed = remote
        .push_from_store(
            builder.store(),
            &outcome.manifest_bytes,
            &outcome.media_type(),
            &destinations,
        )
        .unwrap();
    assert_eq!(pushed.len(), 2);
    assert!(pushed.iter().all(|p| p.digest == outcome.digest));
    if skopeo::available_or_skip() {
        for d in &destinations {
            let raw = skopeo::inspect_raw(&d.to_string(), &skopeo::Access::default()).unwrap();
            assert_eq!(raw, outcome.manifest_bytes);
        }
    }
    // The pulled base's layer is a real layer of busybox.
    let l = layer_entries(builder.store(), &outcome.manifest.layers[0].digest);
    assert!(l.iter().any(|e| e.path == "bin/busybox"));
}
