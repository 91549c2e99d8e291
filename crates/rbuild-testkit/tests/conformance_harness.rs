//! The harness the engine's conformance test calls, proven with Buildah on both sides until
//! rbuild can build: the same case built twice compares clean, another case's image does not.

use rbuild_testkit::conformance::{cases_dir, Case};
use rbuild_testkit::{CaseFailure, ConformanceEnv};

#[test]
fn run_case_accepts_an_equal_image_and_reports_a_different_one() {
    let Some(env) = ConformanceEnv::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let case = Case::load(&cases_dir().join("copy-chown-name")).unwrap();

    // The same Dockerfile built again: equal (Buildah's RUN-less builds carry no mount points).
    let same = dir.path().join("same.tar");
    env.build_with_buildah(&case, &same).unwrap();
    env.run_case(&case, &same)
        .unwrap_or_else(|e| panic!("identical builds differ:\n{e}"));

    // Another case's image: its files are missing and the expect lines fail first.
    let other_case = Case::load(&cases_dir().join("copy-chown-id")).unwrap();
    let other = dir.path().join("other.tar");
    env.build_with_buildah(&other_case, &other).unwrap();
    match env.run_case(&case, &other) {
        Err(CaseFailure::Expectations(lines)) => {
            assert!(
                lines
                    .iter()
                    .any(|l| l.ends_with("expect:1: /deep/new/dir/file.txt is missing")),
                "{lines:?}"
            );
        }
        other => panic!("expected failed expectations, got {other:?}"),
    }

    // A case without expectations that fail: compare the images themselves.
    let mut bare = other_case.clone();
    bare.expectations.clear();
    match env.run_case(&bare, &same) {
        Err(CaseFailure::Diff(diff)) => {
            let text = diff.to_string();
            assert!(text.contains("/deep: only in candidate"), "{text}");
            assert!(text.contains("/ids: only in oracle"), "{text}");
            assert!(text.contains("/ids/both.txt: only in oracle"), "{text}");
        }
        other => panic!("expected a diff, got {other:?}"),
    }
}
