//! Planner semantics against fixed base-image configs (a `StaticResolver`), BuildKit's rules.

use rbuild_dockerfile::Instruction;
use rbuild_oci::{ContainerConfig, Digest, ImageConfig, Platform};
use rbuild_plan::{plan, Base, BaseImage, Plan, PlanError, PlanOptions, StaticResolver, StepInput};
use std::collections::BTreeMap;

fn image(env: &[&str], onbuild: &[&str], seed: &str) -> BaseImage {
    BaseImage {
        digest: Some(Digest::sha256_of(seed.as_bytes())),
        config: ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: ContainerConfig {
                env: env.iter().map(|s| s.to_string()).collect(),
                on_build: onbuild.iter().map(|s| s.to_string()).collect(),
                ..ContainerConfig::default()
            },
            ..ImageConfig::default()
        },
    }
}

fn resolver() -> StaticResolver {
    StaticResolver::new()
        .with(
            "busybox",
            image(&["PATH=/bin:/usr/bin", "HOME=/root"], &[], "busybox"),
        )
        .with(
            "example.com/team/onbuild-base:1",
            image(&[], &["COPY . /app", "RUN make -C /app"], "onbuild"),
        )
}

fn options(args: &[(&str, &str)]) -> PlanOptions {
    PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        target: None,
        target_platform: Some(Platform::new("linux", "arm64", None)),
        build_platform: Platform::new("linux", "amd64", None),
    }
}

fn plan_text(text: &str, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let dockerfile = rbuild_dockerfile::parse(text).expect("parses");
    plan(&dockerfile, opts, &resolver())
}

fn keys(plan: &Plan, stage: usize) -> Vec<Option<Digest>> {
    plan.stage(stage)
        .expect("stage planned")
        .steps
        .iter()
        .map(|s| s.cache_key.clone())
        .collect()
}

#[test]
fn meta_args_reach_stages_only_when_redeclared() {
    let text = "ARG V=meta\nFROM busybox\nRUN echo $V\nARG V\nRUN echo $V\n";
    let p = plan_text(text, &options(&[])).unwrap();
    let steps = &p.stages[0].steps;
    assert_eq!(steps[0].observed.get("V"), None, "first RUN sees no V");
    assert_eq!(
        steps[1].instruction,
        Instruction::Arg(rbuild_dockerfile::ArgInstruction {
            args: vec![rbuild_dockerfile::ArgDecl {
                name: "V".into(),
                default: Some("meta".into())
            }],
        })
    );
    assert_eq!(steps[2].observed.get("V"), Some(&Some("meta".into())));
    assert_eq!(steps[2].args, vec![("V".to_string(), "meta".to_string())]);
}

#[test]
fn build_args_override_defaults_and_unused_ones_warn() {
    let text = "FROM busybox\nARG A=default\nWORKDIR /$A\n";
    let p = plan_text(text, &options(&[("A", "given"), ("NOPE", "x")])).unwrap();
    assert_eq!(
        p.stages[0].steps[1].instruction,
        Instruction::Workdir {
            path: "/given".into()
        }
    );
    assert_eq!(p.warnings.len(), 1);
    assert!(p.warnings[0].message.contains("[NOPE]"), "{:?}", p.warnings);
}

#[test]
fn proxy_and_platform_args_are_never_reported_or_keyed() {
    let text = "FROM busybox\nRUN echo hi\n";
    let with = plan_text(text, &options(&[("HTTP_PROXY", "http://127.0.0.1:3128")])).unwrap();
    let without = plan_text(text, &options(&[])).unwrap();
    assert!(with.warnings.is_empty());
    assert_eq!(keys(&with, 0), keys(&without, 0));
    assert!(with.stages[0].steps[0].args.is_empty());
}

#[test]
fn platform_args_are_predefined_for_from_and_redeclarable() {
    let text = "FROM --platform=$BUILDPLATFORM busybox AS build\nARG TARGETARCH\nRUN echo $TARGETARCH\nFROM busybox\n\
                COPY --from=build /x /x\n";
    let p = plan_text(text, &options(&[])).unwrap();
    assert_eq!(p.stages[0].platform, Platform::new("linux", "amd64", None));
    assert_eq!(p.stages[1].platform, Platform::new("linux", "arm64", None));
    assert_eq!(
        p.stages[0].steps[1].observed.get("TARGETARCH"),
        Some(&Some("arm64".into()))
    );
}

#[test]
fn base_image_env_is_used_for_expansion() {
    let p = plan_text("FROM busybox\nWORKDIR $HOME/src\n", &options(&[])).unwrap();
    assert_eq!(
        p.stages[0].steps[0].instruction,
        Instruction::Workdir {
            path: "/root/src".into()
        }
    );
    assert!(p.stages[0].env.contains(&"PATH=/bin:/usr/bin".to_string()));
}

#[test]
fn default_path_is_added_when_the_base_sets_none() {
    let p = plan_text("FROM scratch\nENV A=1\n", &options(&[])).unwrap();
    assert_eq!(
        p.stages[0].env,
        vec![
            format!("PATH={}", rbuild_plan::DEFAULT_PATH),
            "A=1".to_string()
        ]
    );
}

#[test]
fn onbuild_triggers_of_the_base_image_run_first() {
    let p = plan_text(
        "FROM example.com/team/onbuild-base:1\nRUN ls /app\n",
        &options(&[]),
    )
    .unwrap();
    let steps = &p.stages[0].steps;
    assert_eq!(steps.len(), 3);
    assert!(steps[0].onbuild && steps[1].onbuild && !steps[2].onbuild);
    assert!(matches!(steps[0].instruction, Instruction::Copy(_)));
    assert_eq!(
        steps[0].inputs,
        vec![StepInput::Context {
            paths: vec![".".into()]
        }]
    );
}

#[test]
fn target_prunes_unneeded_stages_and_orders_dependencies_first() {
    let text = "FROM busybox AS a\nRUN touch /a\nFROM busybox AS b\nRUN touch /b\n\
                FROM a AS c\nCOPY --from=b /b /b\nFROM busybox AS d\n";
    let mut opts = options(&[]);
    opts.target = Some("C".into());
    let p = plan_text(text, &opts).unwrap();
    assert_eq!(p.target, 2);
    let indices: Vec<usize> = p.stages.iter().map(|s| s.index).collect();
    assert_eq!(indices, vec![0, 1, 2]);
    assert_eq!(p.stages[2].base, Base::Stage { index: 0 });
    assert_eq!(p.stages[2].depends_on, vec![0, 1]);
}

#[test]
fn copy_from_by_index_and_image() {
    let text = "FROM busybox\nRUN touch /x\nFROM scratch\nCOPY --from=0 /x /x\nCOPY --from=busybox /bin/sh /sh\n";
    let p = plan_text(text, &options(&[])).unwrap();
    let steps = &p.stages[1].steps;
    assert_eq!(
        steps[0].inputs,
        vec![StepInput::Stage {
            index: 0,
            paths: vec!["/x".into()]
        }]
    );
    match &steps[1].inputs[0] {
        StepInput::Image {
            reference, digest, ..
        } => {
            assert_eq!(reference, "docker.io/library/busybox:latest");
            assert!(digest.is_some());
        }
        other => panic!("unexpected input {other:?}"),
    }
    assert!(
        steps.iter().all(|s| s.cache_key.is_some()),
        "all inputs are known"
    );
}

#[test]
fn unknown_image_is_an_error_naming_the_line() {
    let err = plan_text("FROM busybox AS build\nFROM no-such-image\n", &options(&[])).unwrap_err();
    assert_eq!(
        err.render("Dockerfile"),
        "Dockerfile:2:1: FROM no-such-image:latest: image not found"
    );
}

#[test]
fn a_build_arg_changes_only_the_keys_of_steps_that_see_it() {
    let text = "FROM busybox AS one\nRUN echo one\nFROM busybox AS two\nARG V\nRUN echo $V\n\
                FROM scratch\nCOPY --from=one /x /x\nCOPY --from=two /y /y\n";
    let a = plan_text(text, &options(&[("V", "1")])).unwrap();
    let b = plan_text(text, &options(&[("V", "2")])).unwrap();
    assert_eq!(keys(&a, 0), keys(&b, 0), "stage one cannot see V");
    assert_ne!(keys(&a, 1), keys(&b, 1));
    assert_eq!(
        keys(&a, 2)[0],
        keys(&b, 2)[0],
        "COPY from stage one is unaffected"
    );
    assert_ne!(
        keys(&a, 2)[1],
        keys(&b, 2)[1],
        "COPY from stage two follows it"
    );
}

#[test]
fn a_build_arg_in_a_copy_destination_changes_its_key() {
    let text =
        "FROM busybox AS src\nRUN touch /f\nFROM busybox\nARG DEST\nCOPY --from=src /f $DEST\n";
    let a = plan_text(text, &options(&[("DEST", "/a")])).unwrap();
    let b = plan_text(text, &options(&[("DEST", "/b")])).unwrap();
    assert_ne!(keys(&a, 1)[1], keys(&b, 1)[1]);
}

#[test]
fn an_unrelated_build_arg_changes_no_key() {
    let text = "FROM busybox\nARG USED=1\nRUN echo $USED\n";
    let a = plan_text(text, &options(&[])).unwrap();
    let b = plan_text(text, &options(&[("OTHER", "x")])).unwrap();
    assert_eq!(keys(&a, 0), keys(&b, 0));
}

#[test]
fn context_inputs_leave_the_key_to_the_engine() {
    let p = plan_text("FROM busybox\nCOPY . /src\nRUN ls\n", &options(&[])).unwrap();
    let steps = &p.stages[0].steps;
    assert_eq!(steps[0].cache_key, None);
    assert_eq!(
        steps[1].cache_key, None,
        "a child of an engine-keyed step waits for it"
    );
    // The engine completes the chain with the same function the planner uses.
    let base = rbuild_plan::chain_key(
        &Digest::sha256_of(b"parent"),
        &steps[0].step_digest,
        &[Digest::sha256_of(b"context")],
    );
    assert_ne!(
        base,
        rbuild_plan::chain_key(&Digest::sha256_of(b"parent"), &steps[0].step_digest, &[])
    );
}
