//! The busybox base image, the snapshot reader and the comparator, on real images.

use rbuild_testkit::{
    compare, skopeo, AllowList, Aspect, BusyboxImage, EntryKind, ExtraFile, ImageTree,
    KnownDifference, RegistryAuth, TestRegistry,
};

#[test]
fn busybox_image_is_realistic_and_deterministic() {
    if !BusyboxImage::available_or_skip() {
        return;
    }
    let image = BusyboxImage::build().unwrap();
    let again = BusyboxImage::build().unwrap();
    assert_eq!(image.digest(), again.digest(), "same inputs, same digest");

    let layout = tempfile::tempdir().unwrap();
    image.export_oci_layout(layout.path(), "latest").unwrap();
    let tree = ImageTree::from_oci_layout(layout.path(), Some("latest")).unwrap();
    let sh = tree.get("/bin/sh").expect("/bin/sh");
    assert_eq!(sh.kind, EntryKind::Symlink);
    assert_eq!(sh.link_target.as_deref(), Some("busybox"));
    let busybox = tree.get("/bin/busybox").unwrap();
    assert_eq!((busybox.kind, busybox.mode), (EntryKind::File, 0o755));
    assert_eq!(
        busybox.size,
        std::fs::metadata("/bin/busybox").unwrap().len()
    );
    assert_eq!(tree.get("/tmp").unwrap().mode, 0o1777);
    assert_eq!(tree.get("/root").unwrap().mode, 0o700);
    let home = tree.get("/home/app").unwrap();
    if rustix_is_root() {
        assert_eq!((home.uid, home.gid), (1000, 1000));
    }
    assert!(tree
        .text_of("/etc/passwd")
        .unwrap()
        .contains("app:x:1000:1000:"));
    assert!(tree
        .text_of("/etc/group")
        .unwrap()
        .contains("nogroup:x:65534:"));
    for dir in ["/usr/bin", "/var", "/etc"] {
        assert_eq!(tree.get(dir).map(|e| e.kind), Some(EntryKind::Dir), "{dir}");
    }
    assert_eq!(tree.config.config.cmd, Some(vec!["sh".to_owned()]));
    assert_eq!(
        tree.config.config.env_var("PATH"),
        Some(rbuild_testkit::BASE_PATH)
    );
    assert_eq!(tree.config.os, "linux");
    assert!(tree.entries.len() > 100, "an applet symlink each");

    // Compared with itself: clean.
    let diff = compare(&tree, &tree, &AllowList::default());
    assert!(diff.is_clean(), "{diff}");
}

fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[test]
fn pushed_busybox_reads_back_through_skopeo_and_diffs_show_each_aspect() {
    if !BusyboxImage::available_or_skip() || !skopeo::available_or_skip() {
        return;
    }
    let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
        return;
    };
    let base = BusyboxImage::build().unwrap();
    let reference = base.push_to(&registry, "library/busybox:latest").unwrap();
    assert_eq!(
        reference,
        format!("{}/library/busybox:latest", registry.host())
    );
    assert!(registry.has_tag("library/busybox", "latest"));

    let variant = BusyboxImage::build_with(
        &[
            ExtraFile::new("opt/data.txt", "data\n").owned_by(1000, 1000),
            ExtraFile::new("etc/hostname", ""),
        ],
        |config| config.user = "app".into(),
    )
    .unwrap();
    variant
        .push_to(&registry, "library/busybox-variant:latest")
        .unwrap();

    // Pulled back by skopeo, once as an OCI layout and once as a docker-archive.
    let pulled = tempfile::tempdir().unwrap();
    skopeo::copy_to_oci_dir(&reference, &skopeo::Access::default(), pulled.path()).unwrap();
    let base_tree = ImageTree::from_oci_layout(pulled.path(), Some("copied")).unwrap();
    let archive = pulled.path().join("variant.tar");
    let status = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!(
            "docker://{}/library/busybox-variant:latest",
            registry.host()
        ))
        .arg(format!("docker-archive:{}", archive.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let variant_tree = ImageTree::from_path(&archive).unwrap();
    assert_eq!(
        variant_tree.text_of("/opt/data.txt").as_deref(),
        Some("data\n")
    );

    let diff = compare(&variant_tree, &base_tree, &AllowList::default());
    let subjects: Vec<String> = diff.differences.iter().map(|d| d.to_string()).collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("/opt/data.txt: only in candidate")),
        "{diff}"
    );
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("/opt: only in candidate")),
        "{diff}"
    );
    assert!(
        subjects.iter().any(|s| s == "config User: \"app\" != null"),
        "{diff}"
    );
    // The other way round the extra /etc/hostname is only in the "oracle", which the general
    // Buildah allow-list accepts (its RUN mount points); /opt is not accepted.
    let diff = compare(&base_tree, &variant_tree, &AllowList::buildkit_vs_buildah());
    assert!(diff
        .allowed
        .iter()
        .any(|(d, k)| d.subject == "/etc/hostname" && *k == KnownDifference::RunMountPoints));
    assert!(diff
        .differences
        .iter()
        .any(|d| d.subject == "/opt" && d.aspect == Some(Aspect::OnlyInOracle)));
    assert!(!diff.is_clean());
    assert!(diff
        .to_string()
        .contains("allowed (run-mount-points): /etc/hostname"));
}
