//! Issue 12, item 3: hostile ARG/ENV expansion stops with a clear error naming the Dockerfile
//! line instead of exhausting memory.

use rbuild_oci::Platform;
use rbuild_plan::{plan, PlanOptions, StaticResolver, MAX_ENVIRONMENT_BYTES};

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
