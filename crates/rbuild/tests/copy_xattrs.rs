//! A COPY layer carries the xattr a BuildKit layer carries, `security.capability`, and none
//! of the others a context file has (containerd archive/tar.go `ChangeWriter.HandleChange`,
//! BuildKit's layer writer, records that one only).

use rbuild::copy::LAYER_XATTR;
use rbuild::{BuildRequest, Builder, ContextSource, DockerfileSource};
use rbuild_testkit::ImageTree;

/// A VFS_CAP_REVISION_2 value granting CAP_NET_BIND_SERVICE (bit 10), effective.
fn net_bind_capability() -> Vec<u8> {
    let mut value = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        value.extend_from_slice(&word.to_le_bytes());
    }
    value
}

// The skip notice is the point when the test cannot run.
#[allow(clippy::print_stderr)]
#[test]
fn only_security_capability_reaches_the_copy_layer() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    std::fs::create_dir(&context).unwrap();
    let file = context.join("tool");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    xattr::set(&file, "user.origin", b"context").unwrap();
    let capability = net_bind_capability();
    if let Err(e) = xattr::set(&file, LAYER_XATTR, &capability) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: cannot set {LAYER_XATTR} here (needs CAP_SETFCAP): {e}"
        );
        eprintln!("skipped: cannot set {LAYER_XATTR} here (needs CAP_SETFCAP): {e}");
        return;
    }
    let layout = dir.path().join("layout");
    let builder = Builder::new(dir.path().join("store")).unwrap();
    builder
        .build(BuildRequest {
            context: ContextSource::Dir(context),
            dockerfile: DockerfileSource::Text("FROM scratch\nCOPY tool /bin/tool\n".into()),
            source_date_epoch: Some(1_700_000_000),
            oci_layout_path: Some(layout.clone()),
            ..BuildRequest::default()
        })
        .unwrap();
    let tree = ImageTree::from_path(&layout).unwrap();
    let entry = tree.get("/bin/tool").expect("/bin/tool in the image");
    let names: Vec<&str> = entry.xattrs.keys().map(String::as_str).collect();
    assert_eq!(names, vec![LAYER_XATTR], "{names:?}");
    assert_eq!(entry.xattrs[LAYER_XATTR], capability);
}
