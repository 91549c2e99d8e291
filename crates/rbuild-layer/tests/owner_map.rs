//! `LayerWriter::write_with_owners`: the owners of listed paths come from the map, the others
//! from the files (what a builder that cannot `chown` needs).

use rbuild_layer::{ChangeSet, Compression, LayerOptions, LayerWriter, OwnerMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

#[test]
fn listed_paths_take_the_mapped_owner_others_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("d")).unwrap();
    fs::write(tmp.path().join("d/mapped"), "m").unwrap();
    fs::write(tmp.path().join("d/plain"), "p").unwrap();
    let on_disk = fs::metadata(tmp.path().join("d/plain")).unwrap();
    let mut owners = OwnerMap::new();
    owners.insert(PathBuf::from("d"), (0, 0));
    owners.insert(PathBuf::from("d/mapped"), (7, 8));
    let writer = LayerWriter::new(LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    });
    let changes = ChangeSet::whole_tree(tmp.path()).unwrap();
    let mut blob = Vec::new();
    writer
        .write_with_owners(tmp.path(), &changes, &owners, &mut blob)
        .unwrap();
    let mut archive = tar::Archive::new(&blob[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        seen.push((path, h.uid().unwrap(), h.gid().unwrap()));
    }
    assert_eq!(
        seen,
        [
            ("d/".to_string(), 0, 0),
            ("d/mapped".to_string(), 7, 8),
            (
                "d/plain".to_string(),
                u64::from(on_disk.uid()),
                u64::from(on_disk.gid())
            ),
        ]
    );
}
