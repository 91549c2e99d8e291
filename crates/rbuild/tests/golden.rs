//! The image config and history of `testdata/engine/config-golden`, compared byte for byte with
//! the reviewed golden file (regenerate with `RBUILD_UPDATE_GOLDEN=1` and review the diff).

use rbuild::{BuildRequest, Builder, ContextSource, DockerfileSource};
use std::path::PathBuf;

#[test]
fn config_and_history_match_the_golden_file() {
    let case =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/engine/config-golden");
    let work = tempfile::tempdir().unwrap();
    let builder = Builder::new(work.path().join("store")).unwrap();
    let outcome = builder
        .build(BuildRequest {
            context: ContextSource::Dir(case.join("context")),
            dockerfile: DockerfileSource::Path(case.join("Dockerfile")),
            source_date_epoch: Some(0),
            ..BuildRequest::default()
        })
        .unwrap();
    let value: serde_json::Value =
        serde_json::from_slice(&outcome.config.to_canonical_json()).unwrap();
    let mut actual = serde_json::to_string_pretty(&value).unwrap();
    actual.push('\n');
    let golden = case.join("expected-config.json");
    if std::env::var_os("RBUILD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(actual, expected);
}
