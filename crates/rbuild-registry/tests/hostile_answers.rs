//! Issue 12: a hostile server cannot exhaust the client, and its failures read clearly.
//!
//! A small loopback HTTP server ([`CannedServer`]) answers with canned replies (it plays a registry, a token
//! server or a file server): endless bodies, announced huge sizes, silence, nested indexes.
//! Each test asserts what the server saw (e.g. that a refused blob was never requested).

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbuild_oci::{
    Descriptor, Digest, Index, Manifest, MediaType, Platform, Reference, MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
};
use rbuild_registry::{
    CredentialChain, MemoryBlobs, RegistryClient, RegistryError, RegistryOptions, RetryPolicy,
    UrlDownload, MAX_TOKEN_RESPONSE_BYTES,
};
use rbuild_testkit::{CannedServer, Reply};

fn options(read_timeout: Duration, max_retries: u32) -> RegistryOptions {
    RegistryOptions {
        read_timeout,
        retry: RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        ..RegistryOptions::default()
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(options(Duration::from_secs(5), 1), CredentialChain::empty())
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn manifest_with(config: Descriptor, layers: Vec<Descriptor>) -> Vec<u8> {
    Manifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: Default::default(),
    }
    .to_canonical_json()
}

fn descriptor(media_type: MediaType, bytes: &[u8], platform: Option<Platform>) -> Descriptor {
    let mut d = Descriptor::of_bytes(media_type, bytes);
    d.platform = platform;
    d
}

fn index_of(entries: Vec<Descriptor>) -> Vec<u8> {
    Index {
        schema_version: 2,
        media_type: Some(MediaType::OciIndex),
        artifact_type: None,
        manifests: entries,
        subject: None,
        annotations: Default::default(),
    }
    .to_canonical_json()
}

fn small_manifest(seed: &str) -> Vec<u8> {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}},\"config\":{{\"Env\":[\"S={seed}\"]}}}}");
    manifest_with(
        Descriptor::of_bytes(MediaType::OciConfig, config.as_bytes()),
        vec![],
    )
}

/// A registry serving `documents` (`/v2/team/app/manifests/X` → content type, bytes).
fn registry_of(documents: Vec<(String, &'static str, Vec<u8>)>) -> CannedServer {
    CannedServer::start(move |_, path| {
        if path == "/v2/" {
            return Reply::status(200);
        }
        for (name, content_type, bytes) in &documents {
            if path == format!("/v2/team/app/manifests/{name}") {
                return Reply::ok(content_type, bytes.clone());
            }
        }
        Reply::status(404)
    })
    .unwrap()
}

fn reference(host: &str, tag: &str) -> Reference {
    Reference::parse(&format!("{host}/team/app:{tag}")).unwrap()
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---- item 3: bounded inputs -------------------------------------------------------------

#[tokio::test]
async fn a_config_advertised_at_one_gib_is_refused_without_being_requested() {
    let huge = Descriptor {
        size: 1 << 30,
        ..Descriptor::of_bytes(MediaType::OciConfig, b"{}")
    };
    let manifest = manifest_with(huge.clone(), vec![]);
    let server = registry_of(vec![("v1".into(), OCI_MANIFEST, manifest)]);
    let error = client()
        .pull_image(
            &reference(&server.host(), "v1"),
            &Platform::new("linux", "amd64", None),
            &MemoryBlobs::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, RegistryError::TooLarge { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "image config {} from {} for pull of team/app:v1 is larger than the limit of {MAX_CONFIG_BYTES} bytes (1073741824 bytes)",
            huge.digest,
            server.host()
        )
    );
    let requests = server.requests();
    assert!(
        !requests.iter().any(|r| r.contains("/blobs/")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_manifest_announced_at_one_gib_is_refused_unread() {
    let server = CannedServer::start(|_, path| match path {
        "/v2/" => Reply::status(200),
        _ => Reply::Announce { length: 1 << 30 },
    })
    .unwrap();
    let started = Instant::now();
    let error = client()
        .fetch_manifest(&reference(&server.host(), "v1"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        error.to_string(),
        format!(
            "manifest team/app:v1 from {} for pull of team/app:v1 is larger than the limit of {MAX_MANIFEST_BYTES} bytes (1073741824 bytes)",
            server.host()
        )
    );
}

#[tokio::test]
async fn an_endless_manifest_is_cut_off_at_the_limit() {
    let server = CannedServer::start(|_, path| match path {
        "/v2/" => Reply::status(200),
        _ => Reply::Endless { status: 200 },
    })
    .unwrap();
    let error = client()
        .fetch_manifest(&reference(&server.host(), "v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::TooLarge { size: None, limit, .. } if limit == MAX_MANIFEST_BYTES),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_endless_token_answer_is_cut_off_at_the_limit() {
    let port = Arc::new(Mutex::new(0u16));
    let shared = port.clone();
    let server = CannedServer::start(move |_, path| {
        if path.starts_with("/token") {
            return Reply::Endless { status: 200 };
        }
        let realm = format!("http://127.0.0.1:{}/token", shared.lock().unwrap());
        Reply::Full {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                format!("Bearer realm=\"{realm}\",service=\"canned\""),
            )],
            body: vec![],
        }
    })
    .unwrap();
    *port.lock().unwrap() = server.port;
    let error = client()
        .fetch_manifest(&reference(&server.host(), "v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::TooLarge { limit, .. } if limit == MAX_TOKEN_RESPONSE_BYTES),
        "{error:?}"
    );
    assert!(error.to_string().contains("token answer from"), "{error}");
}

#[tokio::test]
async fn a_token_said_to_live_forever_does_not_overflow_the_clock() {
    let port = Arc::new(Mutex::new(0u16));
    let shared = port.clone();
    let manifest = small_manifest("token");
    let served = manifest.clone();
    let server = CannedServer::start(move |_, path| {
        if path.starts_with("/token") {
            return Reply::ok(
                "application/json",
                format!(r#"{{"token":"t","expires_in":{}}}"#, u64::MAX).into_bytes(),
            );
        }
        if path.contains("/manifests/") {
            // The canned server cannot see headers: after the ping's 401 it serves the
            // manifest, so the client must have fetched (and cached) a token first.
            return Reply::ok(OCI_MANIFEST, served.clone());
        }
        let realm = format!("http://127.0.0.1:{}/token", shared.lock().unwrap());
        Reply::Full {
            status: 401,
            headers: vec![(
                "WWW-Authenticate".into(),
                format!("Bearer realm=\"{realm}\",service=\"canned\""),
            )],
            body: vec![],
        }
    })
    .unwrap();
    *port.lock().unwrap() = server.port;
    let client = client();
    for _ in 0..2 {
        let fetched = client
            .fetch_manifest(&reference(&server.host(), "v1"))
            .await
            .unwrap();
        assert_eq!(fetched.bytes, manifest);
    }
    let tokens = server
        .requests()
        .iter()
        .filter(|r| r.contains("/token"))
        .count();
    assert_eq!(tokens, 1, "the token is cached: {:?}", server.requests());
}

#[tokio::test]
async fn an_endless_error_body_still_gives_the_status_at_once() {
    let server = CannedServer::start(|_, path| match path {
        "/v2/" => Reply::status(200),
        _ => Reply::Endless { status: 404 },
    })
    .unwrap();
    let started = Instant::now();
    let error = client()
        .fetch_manifest(&reference(&server.host(), "v1"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_server_fails_the_download_within_the_read_timeout() {
    let server = CannedServer::start(|_, _| Reply::Silent).unwrap();
    let client = RegistryClient::new(
        options(Duration::from_millis(300), 1),
        CredentialChain::empty(),
    );
    let mut file = tempfile::tempfile().unwrap();
    let url = format!("http://{}/file.tar", server.host());
    let started = Instant::now();
    let error = client
        .download_url(UrlDownload::new(&url, &mut file))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    // Two attempts of 0.3 s plus a short backoff.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot reach {} for download of {url}: timed out (no data within the read timeout)",
            server.host()
        )
    );
    assert_eq!(
        server.requests().len(),
        2,
        "one retry: {:?}",
        server.requests()
    );
}

#[tokio::test]
async fn an_endless_download_hits_the_size_limit() {
    let server = CannedServer::start(|_, _| Reply::Endless { status: 200 }).unwrap();
    let mut file = tempfile::tempfile().unwrap();
    let url = format!("http://{}/endless", server.host());
    let error = client()
        .download_url(UrlDownload {
            max_bytes: 1 << 20,
            ..UrlDownload::new(&url, &mut file)
        })
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "body from {} for download of {url} is larger than the limit of 1048576 bytes",
            server.host()
        )
    );
    assert!(file.metadata().unwrap().len() <= 1 << 20);
}

#[tokio::test]
async fn a_download_announced_above_the_limit_is_refused_unread() {
    let server = CannedServer::start(|_, _| Reply::Announce { length: 1 << 40 }).unwrap();
    let mut file = tempfile::tempfile().unwrap();
    let url = format!("http://{}/huge", server.host());
    let started = Instant::now();
    let error = client()
        .download_url(UrlDownload::new(&url, &mut file))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(error, RegistryError::TooLarge { size: Some(s), .. } if s == 1 << 40),
        "{error:?}"
    );
    assert_eq!(file.metadata().unwrap().len(), 0);
}

#[tokio::test]
async fn a_download_streams_to_the_file_follows_redirects_and_hashes() {
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let served = body.clone();
    let server = CannedServer::start(move |_, path| match path {
        "/start" => Reply::Full {
            status: 302,
            headers: vec![("Location".into(), "/files/data.bin".into())],
            body: vec![],
        },
        _ => Reply::Full {
            status: 200,
            headers: vec![(
                "Last-Modified".into(),
                "Sun, 06 Nov 1994 08:49:37 GMT".into(),
            )],
            body: served.clone(),
        },
    })
    .unwrap();
    let mut file = tempfile::tempfile().unwrap();
    let url = format!("http://{}/start", server.host());
    let got = client()
        .download_url(UrlDownload::new(&url, &mut file))
        .await
        .unwrap();
    assert_eq!(
        got.final_url,
        format!("http://{}/files/data.bin", server.host())
    );
    assert_eq!(got.digest, Digest::sha256_of(&body));
    assert_eq!(got.size, body.len() as u64);
    assert_eq!(
        got.last_modified
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        784_111_777
    );
    let mut written = Vec::new();
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut written).unwrap();
    assert!(written == body);
}

// ---- item 7: honest messages ------------------------------------------------------------

#[tokio::test]
async fn a_blob_longer_than_its_descriptor_reports_no_digest_of_empty_input() {
    let layer = Descriptor {
        size: 10,
        ..Descriptor::of_bytes(MediaType::OciLayerGzip, b"0123456789")
    };
    let manifest = manifest_with(layer.clone(), vec![]);
    let server = CannedServer::start(move |_, path| {
        if path == "/v2/" {
            Reply::status(200)
        } else if path.contains("/manifests/") {
            Reply::ok(OCI_MANIFEST, manifest.clone())
        } else {
            // 100 KiB for a 10-byte blob, in one chunk.
            Reply::ok("application/octet-stream", vec![b'z'; 100 << 10])
        }
    })
    .unwrap();
    let error = client()
        .fetch_blob(
            &reference(&server.host(), "v1"),
            &layer,
            &MemoryBlobs::new(),
        )
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, RegistryError::DigestMismatch(_)),
        "{error:?}"
    );
    assert!(!text.contains(EMPTY_SHA256), "{text}");
    // Reading stops at the first chunk past the descriptor's size.
    let got: u64 = text
        .rsplit("got at least ")
        .next()
        .and_then(|rest| rest.strip_suffix(" bytes (download stopped)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(got > 10 && got <= 100 << 10, "{text}");
    assert!(text.contains("expected sha256:"), "{text}");
}

#[tokio::test]
async fn a_nested_index_is_followed_to_the_platform_manifest() {
    let amd64 = Platform::new("linux", "amd64", None);
    let arm = Platform::new("linux", "arm", Some("v7"));
    let image = small_manifest("amd64");
    let other = small_manifest("arm");
    let inner = index_of(vec![descriptor(
        MediaType::OciManifest,
        &image,
        Some(amd64.clone()),
    )]);
    let outer = index_of(vec![
        descriptor(MediaType::OciManifest, &other, Some(arm.clone())),
        descriptor(MediaType::OciIndex, &inner, Some(amd64.clone())),
    ]);
    let server = registry_of(vec![
        ("v1".into(), OCI_INDEX, outer.clone()),
        (Digest::sha256_of(&inner).to_string(), OCI_INDEX, inner),
        (
            Digest::sha256_of(&image).to_string(),
            OCI_MANIFEST,
            image.clone(),
        ),
        (Digest::sha256_of(&other).to_string(), OCI_MANIFEST, other),
    ]);
    let resolved = client()
        .resolve_image(&reference(&server.host(), "v1"), &amd64)
        .await
        .unwrap();
    assert_eq!(resolved.digest, Digest::sha256_of(&image));
    assert_eq!(resolved.index_digest, Some(Digest::sha256_of(&outer)));
    assert_eq!(resolved.manifest_bytes, image);

    let error = client()
        .resolve_image(
            &reference(&server.host(), "v1"),
            &Platform::new("linux", "s390x", None),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}/team/app:v1 has no image for platform linux/s390x (available: linux/arm/v7, linux/amd64 (an index))",
            server.host()
        )
    );
}

#[tokio::test]
async fn indexes_nested_too_deep_are_refused_clearly() {
    let amd64 = Platform::new("linux", "amd64", None);
    let mut documents = Vec::new();
    let mut current = small_manifest("deep");
    documents.push((
        Digest::sha256_of(&current).to_string(),
        OCI_MANIFEST,
        current.clone(),
    ));
    let mut kind = MediaType::OciManifest;
    for _ in 0..4 {
        let index = index_of(vec![descriptor(kind, &current, Some(amd64.clone()))]);
        documents.push((
            Digest::sha256_of(&index).to_string(),
            OCI_INDEX,
            index.clone(),
        ));
        current = index;
        kind = MediaType::OciIndex;
    }
    documents.push(("v1".into(), OCI_INDEX, current));
    let server = registry_of(documents);
    let error = client()
        .resolve_image(&reference(&server.host(), "v1"), &amd64)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("for linux/amd64 is nested more than 2 indexes deep; refused"),
        "{text}"
    );
}

#[tokio::test]
async fn errors_show_each_cause_once_in_a_chain() {
    let server = registry_of(vec![(
        "v1".into(),
        OCI_MANIFEST,
        b"{\"schemaVersion\":".to_vec(),
    )]);
    let error = client()
        .resolve_image(
            &reference(&server.host(), "v1"),
            &Platform::new("linux", "amd64", None),
        )
        .await
        .unwrap_err();
    assert!(std::error::Error::source(&error).is_none(), "{error:?}");
    let text = error.to_string();
    assert_eq!(text.matches("EOF while parsing").count(), 1, "{text}");
}

#[tokio::test]
async fn unusable_download_urls_are_named_without_their_credentials() {
    let mut file = tempfile::tempfile().unwrap();
    let error = client()
        .download_url(UrlDownload::new("ftp://user:pw@host.example/f", &mut file))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "URL ftp://<redacted>@host.example/f: only http and https can be downloaded"
    );
}
