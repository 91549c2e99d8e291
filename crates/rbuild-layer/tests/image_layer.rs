//! A base image's layer checked against what its manifest and config say (issue #12, item 6):
//! the media type against the first bytes, the uncompressed sha256 against the diffID. Each
//! lie is refused with a message naming the layer, and before any entry is extracted when the
//! media type lies.

mod common;

use std::fs;
use std::io::Write;

use common::RawTar;
use rbuild_layer::{
    apply_image_layer, check_layer_media_type, layer_compression, Compression, ImageLayer,
    LayerError,
};
use rbuild_oci::{Digest, MediaType};

fn tar() -> Vec<u8> {
    RawTar::default().file(b"etc/motd", b"hello\n").end()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn apply(
    blob: &[u8],
    media_type: MediaType,
    diff_id: &Digest,
) -> (Result<(), LayerError>, Vec<String>) {
    let target = tempfile::tempdir().unwrap();
    let digest = Digest::sha256_of(blob);
    let result = apply_image_layer(
        blob,
        target.path(),
        &ImageLayer {
            digest: &digest,
            media_type: &media_type,
            diff_id,
        },
        false,
    )
    .map(|_| ());
    let mut left: Vec<String> = walk(target.path());
    left.sort();
    (result, left)
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        out.push(entry.file_name().to_string_lossy().into_owned());
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

#[test]
fn an_honest_layer_of_each_compression_is_applied() {
    let tar = tar();
    let diff_id = Digest::sha256_of(&tar);
    for (blob, media_type) in [
        (tar.clone(), MediaType::OciLayer),
        (gzip(&tar), MediaType::OciLayerGzip),
        (gzip(&tar), MediaType::DockerLayerGzip),
        (
            zstd::encode_all(&tar[..], 3).unwrap(),
            MediaType::OciLayerZstd,
        ),
    ] {
        let (result, left) = apply(&blob, media_type.clone(), &diff_id);
        result.unwrap_or_else(|e| panic!("{media_type:?}: {e}"));
        assert_eq!(left, ["etc", "motd"]);
    }
}

#[test]
fn zstd_bytes_labelled_gzip_are_refused_before_extraction() {
    let tar = tar();
    let blob = zstd::encode_all(&tar[..], 3).unwrap();
    let (result, left) = apply(&blob, MediaType::OciLayerGzip, &Digest::sha256_of(&tar));
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::MediaTypeMismatch {
                found: Compression::Zstd,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&Digest::sha256_of(&blob).to_string()),
        "{message}"
    );
    assert!(
        message.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{message}"
    );
    assert!(message.contains("zstd"), "{message}");
    assert!(left.is_empty(), "extracted despite the lie: {left:?}");
}

#[test]
fn a_plain_tar_labelled_gzip_and_gzip_labelled_plain_are_refused() {
    let tar = tar();
    let diff_id = Digest::sha256_of(&tar);
    let (result, left) = apply(&tar, MediaType::DockerLayerGzip, &diff_id);
    assert!(
        matches!(
            result,
            Err(LayerError::MediaTypeMismatch {
                found: Compression::None,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(left.is_empty());
    let (result, left) = apply(&gzip(&tar), MediaType::OciLayer, &diff_id);
    assert!(
        matches!(
            result,
            Err(LayerError::MediaTypeMismatch {
                found: Compression::Gzip,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(left.is_empty());
}

#[test]
fn unknown_layer_media_types_are_refused() {
    let tar = tar();
    for media_type in [
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        "application/octet-stream",
        "application/vnd.oci.image.config.v1+json",
    ] {
        let (result, left) = apply(
            &gzip(&tar),
            MediaType::from(media_type),
            &Digest::sha256_of(&tar),
        );
        let err = result.unwrap_err();
        assert!(
            matches!(err, LayerError::UnsupportedMediaType { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(media_type), "{err}");
        assert!(left.is_empty());
    }
    assert_eq!(
        layer_compression(&MediaType::from(
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        )),
        Some(Compression::Zstd)
    );
}

#[test]
fn a_diff_id_mismatch_names_the_layer_and_both_diff_ids() {
    let tar = tar();
    let blob = gzip(&tar);
    let claimed = Digest::sha256_of(b"another layer");
    let (result, _) = apply(&blob, MediaType::OciLayerGzip, &claimed);
    let err = result.unwrap_err();
    let message = err.to_string();
    for needle in [
        Digest::sha256_of(&blob).to_string(),
        claimed.to_string(),
        Digest::sha256_of(&tar).to_string(),
    ] {
        assert!(
            message.contains(&needle),
            "{needle} missing from: {message}"
        );
    }
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn media_types_are_checked_from_the_first_bytes_alone() {
    let tar = tar();
    let digest = Digest::sha256_of(b"any");
    // Only the magic is read: a gzip header followed by garbage passes this check (the diffID
    // check of apply_image_layer is what catches the rest).
    let mut reader = std::io::Cursor::new([&[0x1f, 0x8b][..], &[0u8; 64][..]].concat());
    assert_eq!(
        check_layer_media_type(&mut reader, &digest, &MediaType::OciLayerGzip).unwrap(),
        Compression::Gzip
    );
    assert!(reader.position() <= 4, "read {} bytes", reader.position());
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    assert_eq!(
        check_layer_media_type(&zst[..], &digest, &MediaType::OciLayerZstd).unwrap(),
        Compression::Zstd
    );
    assert_eq!(
        check_layer_media_type(&tar[..], &digest, &MediaType::OciLayer).unwrap(),
        Compression::None
    );
    let err = check_layer_media_type(&zst[..], &digest, &MediaType::DockerLayerGzip).unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::MediaTypeMismatch {
                found: Compression::Zstd,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    let err = check_layer_media_type(
        &tar[..],
        &digest,
        &MediaType::from("application/vnd.oci.image.layer.v1.tar+lz4"),
    )
    .unwrap_err();
    assert!(
        matches!(err, LayerError::UnsupportedMediaType { .. }),
        "{err:?}"
    );
    // An empty blob is not a gzip stream.
    let err = check_layer_media_type(&b""[..], &digest, &MediaType::OciLayerGzip).unwrap_err();
    assert!(
        matches!(err, LayerError::MediaTypeMismatch { .. }),
        "{err:?}"
    );
}
