//! `rbuild plan` and the engine agree on cache keys wherever the plan can compute them: the
//! same encodings (rbuild-plan's) and the same chain (ARG steps do not advance it).

use rbuild::{
    plan_dockerfile, BuildRequest, Builder, ContextSource, DockerfileSource, PlanRequest,
};
use std::collections::BTreeMap;

const DOCKERFILE: &str = "\
FROM scratch AS build
ARG NAME=world
WORKDIR /out
ENV GREETING=hello
LABEL stage=build
FROM scratch
ARG NAME
COPY --from=build /out /copied
ENV WHO=$NAME
WORKDIR /srv
";

#[test]
fn plan_keys_equal_engine_keys() {
    let work = tempfile::tempdir().unwrap();
    let context = work.path().join("context");
    std::fs::create_dir(&context).unwrap();
    let mut build_args = BTreeMap::new();
    build_args.insert("NAME".to_string(), "rbuild".to_string());

    let planned = plan_dockerfile(
        DOCKERFILE,
        &PlanRequest {
            build_args: build_args.clone(),
            ..PlanRequest::default()
        },
    )
    .unwrap();
    let plan_keys: BTreeMap<(usize, usize), _> = planned
        .plan
        .stages
        .iter()
        .flat_map(|s| {
            s.steps
                .iter()
                .map(move |st| ((s.index, st.span.line), st.cache_key.clone()))
        })
        .collect();
    assert!(
        plan_keys.values().all(Option::is_some),
        "every key is computable without I/O here: {plan_keys:?}"
    );

    let outcome = Builder::new(work.path().join("store"))
        .unwrap()
        .build(BuildRequest {
            context: ContextSource::Dir(context),
            dockerfile: DockerfileSource::Text(DOCKERFILE.into()),
            build_args,
            source_date_epoch: Some(0),
            ..BuildRequest::default()
        })
        .unwrap();
    let engine_keys: BTreeMap<(usize, usize), _> = outcome
        .steps
        .iter()
        .map(|r| ((r.stage, r.line), r.cache_key.clone()))
        .collect();
    for (position, engine_key) in &engine_keys {
        assert_eq!(
            plan_keys.get(position),
            Some(engine_key),
            "step at stage/line {position:?}"
        );
    }
    assert_eq!(engine_keys.len(), plan_keys.len());
}
