//! The config comparison tells "unset" from "empty list" apart for Entrypoint and Cmd, so the
//! general allowance for Buildah's `[]` accepts exactly that and nothing more.

use rbuild_oci::ImageConfig;
use rbuild_testkit::{compare, AllowList, ImageTree, KnownDifference};

fn tree(dir: &std::path::Path, edit: impl FnOnce(&mut ImageConfig)) -> ImageTree {
    let mut config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..ImageConfig::default()
    };
    edit(&mut config);
    ImageTree::from_rootfs(dir, config).unwrap()
}

#[test]
fn null_against_empty_list_is_its_own_allowed_difference() {
    let dir = tempfile::tempdir().unwrap();
    let unset = tree(dir.path(), |_| {});
    let empty = tree(dir.path(), |c| {
        c.config.entrypoint = Some(Vec::new());
        c.config.cmd = Some(Vec::new());
    });
    let diff = compare(&unset, &empty, &AllowList::default());
    let subjects: Vec<&str> = diff
        .differences
        .iter()
        .map(|d| d.subject.as_str())
        .collect();
    assert_eq!(subjects, ["config Cmd.empty", "config Entrypoint.empty"]);

    let diff = compare(&unset, &empty, &AllowList::buildkit_vs_buildah());
    assert!(diff.is_clean(), "{diff}");
    assert!(diff
        .allowed
        .iter()
        .all(|(_, known)| *known == KnownDifference::UnsetCommandEmptyList));
}

#[test]
fn null_against_a_command_stays_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let unset = tree(dir.path(), |_| {});
    let set = tree(dir.path(), |c| c.config.cmd = Some(vec!["sh".into()]));
    let diff = compare(&unset, &set, &AllowList::buildkit_vs_buildah());
    assert_eq!(diff.differences.len(), 1, "{diff}");
    assert_eq!(
        diff.differences[0].to_string(),
        "config Cmd: null != [\"sh\"]"
    );
    // And the other way round: [] in the candidate is not excused either.
    let empty = tree(dir.path(), |c| c.config.cmd = Some(Vec::new()));
    let diff = compare(&empty, &unset, &AllowList::buildkit_vs_buildah());
    assert_eq!(diff.differences.len(), 1, "{diff}");
}
