//! Issue 12, item 3: hostile ARG/ENV expansion stops with a clear error naming the Dockerfile
//! line instead of exhausting memory.

use rbuild_oci::Platform;
use rbuild_plan::{
    plan, PlanOptions, StaticResolver, MAX_ENVIRONMENT_BYTES, MAX_PLAN_RECORDED_BYTES,
};

fn plan_error(text: &str) -> String {
    let dockerfile = rbuild_dockerfile::parse(text).expect("parses");
    let options = PlanOptions {
        build_args: Default::default(),
        target: None,
        target_platform: Some(Platform::new("linux", "amd64", None)),
        build_platform: Platform::new("linux", "amd64", None),
    };
    plan(&dockerfile, &options, &StaticResolver::new())
        .expect_err("the plan must be refused")
        .render("Dockerfile")
}

/// `FROM scratch`, `KEYWORD a0=xxxxxxxx`, then 40 lines `KEYWORD aN=${aN-1}${aN-1}`.
fn doubling(keyword: &str) -> String {
    let mut text = format!("FROM scratch\n{keyword} a0=xxxxxxxx\n");
    for n in 1..=40 {
        text.push_str(&format!("{keyword} a{n}=${{a{}}}${{a{}}}\n", n - 1, n - 1));
    }
    text
}

#[test]
fn forty_doubling_envs_stop_at_the_line_that_passes_one_mib() {
    // a_k is 8·2^k bytes: a17 (line 19) is exactly 1 MiB, and with its name the
    // instruction expands to more.
    assert_eq!(
        plan_error(&doubling("ENV")),
        "Dockerfile:19:1: ENV expands to more than 1 MiB"
    );
}

#[test]
fn forty_doubling_args_stop_the_same_way() {
    // Only an ARG's default is expanded: a18 (line 20) is the first beyond 1 MiB.
    assert_eq!(
        plan_error(&doubling("ARG")),
        "Dockerfile:20:1: ARG expands to more than 1 MiB"
    );
}

#[test]
fn many_copies_of_a_large_value_hit_the_environment_limit() {
    // Each line is under the per-instruction limit; their sum is not.
    let mut text = String::from("FROM scratch\nENV a0=xxxxxxxx\n");
    for n in 1..=16 {
        text.push_str(&format!("ENV a{n}=${{a{}}}${{a{}}}\n", n - 1, n - 1));
    }
    // a16 is 512 KiB; copies of it until the environment passes the limit.
    let copies = MAX_ENVIRONMENT_BYTES / (512 << 10) + 2;
    for c in 0..copies {
        text.push_str(&format!("ENV copy{c}=$a16\n"));
    }
    let error = plan_error(&text);
    assert!(
        error.ends_with(": ENV: the stage's environment grows past 4 MiB"),
        "{error}"
    );
    let line: usize = error.split(':').nth(1).unwrap().parse().unwrap();
    assert!(line > 18 && line <= 18 + copies, "{error}");
}

#[test]
fn large_args_seen_by_thousands_of_runs_stop_at_the_recorded_limit() {
    // 3.5 MiB of ARG values (under the environment limit); each RUN records all of them
    // twice (its observed values and its build args): 2000 RUNs would record 14 GB.
    let mut text = String::from("FROM scratch\nARG a0=xxxxxxxx\n");
    for n in 1..=16 {
        text.push_str(&format!("ARG a{n}=${{a{}}}${{a{}}}\n", n - 1, n - 1));
    }
    for c in 0..5 {
        text.push_str(&format!("ARG c{c}=$a16\n"));
    }
    for i in 0..2000 {
        text.push_str(&format!("RUN true {i}\n"));
    }
    let error = plan_error(&text);
    assert!(
        error.ends_with(
            ": RUN: the ARG and ENV values the steps observe add up to more than 64 MiB"
        ),
        "{error}"
    );
    // The RUNs start on line 24; each records 7 MiB.
    let line: usize = error.split(':').nth(1).unwrap().parse().unwrap();
    let runs = MAX_PLAN_RECORDED_BYTES / (7 << 20) + 1;
    assert!((24..=24 + runs).contains(&line), "{error}");
}
