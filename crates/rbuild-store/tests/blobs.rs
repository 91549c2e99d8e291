//! Blobs land whole and verified, or not at all.

mod common;

use std::io::Write;
use std::path::Path;

use rbuild_oci::{Digest, MediaType};
use rbuild_store::{Store, StoreError};

fn blob_files(store: &Store) -> Vec<String> {
    let mut names = Vec::new();
    for dir in [
        store.root().join("blobs/sha256"),
        store.root().join(".rbuild-ingest"),
    ] {
        for e in std::fs::read_dir(dir).unwrap() {
            names.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    names
}

#[test]
fn verified_blob_is_stored_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"some layer bytes".repeat(10_000);
    let expected = Digest::sha256_of(&data);
    let mut w = store.blob_writer().unwrap();
    for chunk in data.chunks(4096) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(w.bytes_written(), data.len() as u64);
    let (digest, size) = w.commit(Some(&expected), Some(data.len() as u64)).unwrap();
    assert_eq!(
        (digest.clone(), size),
        (expected.clone(), data.len() as u64)
    );
    assert!(store.has_blob(&digest));
    assert_eq!(store.read_blob(&digest).unwrap(), data);
    assert_eq!(store.blob_size(&digest).unwrap(), data.len() as u64);
    assert_eq!(
        store.blob_path(&digest),
        dir.path().join("blobs/sha256").join(expected.encoded())
    );
    // Only the blob itself, no temp file left behind.
    assert_eq!(blob_files(&store), vec![expected.encoded().to_string()]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(store.blob_path(&digest))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn digest_mismatch_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wrong = Digest::sha256_of(b"something else");
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"actual content").unwrap();
    let err = w.commit(Some(&wrong), None).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&wrong.to_string()));
    // "got" is the digest of what was written (issue #12, item 8), never that of empty input.
    let got = Digest::sha256_of(b"actual content");
    assert!(err.to_string().contains(&format!("got {got}")), "{err}");
    assert!(!store.has_blob(&wrong));
    assert!(!store.has_blob(&Digest::sha256_of(b"actual content")));
    assert!(blob_files(&store).is_empty(), "{:?}", blob_files(&store));
}

#[test]
fn size_mismatch_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"twelve bytes";
    let mut w = store.blob_writer().unwrap();
    w.write_all(data).unwrap();
    let err = w
        .commit(Some(&Digest::sha256_of(data)), Some(13))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 13,
                actual: 12,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&Digest::sha256_of(data).to_string()),
        "{message}"
    );
    assert!(
        !message.contains(&Digest::sha256_of(b"").to_string()),
        "{message}"
    );
    assert!(blob_files(&store).is_empty());
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut w = store.blob_writer().unwrap();
    w.write_all(b"abandoned").unwrap();
    drop(w);
    assert!(blob_files(&store).is_empty());
}

#[test]
fn non_sha256_expectations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sha512 = Digest::parse(&format!("sha512:{}", "a".repeat(128))).unwrap();
    let err = store
        .write_blob(&mut b"x".as_slice(), Some(&sha512), None)
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedDigest(_)), "{err}");
}

#[test]
fn corrupted_blob_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let d = store.put_blob(b"{}", MediaType::OciConfig).unwrap();
    std::fs::write(store.blob_path(&d.digest), b"{ }").unwrap();
    let err = store.read_blob(&d.digest).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let missing = Digest::sha256_of(b"missing");
    assert!(matches!(
        store.read_blob(&missing),
        Err(StoreError::BlobNotFound(_))
    ));
}

#[test]
fn open_refuses_what_is_not_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file).unwrap_err().to_string();
    assert!(err.contains("not a directory"), "{err}");

    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("README"), b"x").unwrap();
    let err = Store::open(&busy).unwrap_err().to_string();
    assert!(
        err.contains("no oci-layout") && err.contains("README"),
        "{err}"
    );
    assert!(!busy.join("oci-layout").exists());

    let bad_version = dir.path().join("v2");
    std::fs::create_dir(&bad_version).unwrap();
    std::fs::write(
        bad_version.join("oci-layout"),
        br#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        bad_version.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let err = Store::open(&bad_version).unwrap_err().to_string();
    assert!(err.contains("imageLayoutVersion"), "{err}");
}

#[test]
fn open_creates_a_layout_and_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/layout");
    let store = Store::open(&root).unwrap();
    assert!(Path::new(&root.join("oci-layout")).is_file());
    let index = store.read_index().unwrap();
    assert!(index.manifests.is_empty());
    let d = store.put_blob(b"hello", MediaType::OciLayer).unwrap();
    let again = Store::open(&root).unwrap();
    assert!(again.has_blob(&d.digest));
}

#[test]
fn existing_blob_wins_and_a_truncated_one_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = b"content written twice";
    let d = store.put_blob(data, MediaType::OciLayer).unwrap();
    let again = store.put_blob(data, MediaType::OciLayer).unwrap();
    assert_eq!(d, again);
    // Damage it on disk (as a crash of a foreign tool might): the next writer repairs it.
    std::fs::write(store.blob_path(&d.digest), &data[..5]).unwrap();
    store.put_blob(data, MediaType::OciLayer).unwrap();
    assert_eq!(store.read_blob(&d.digest).unwrap(), data);
}
