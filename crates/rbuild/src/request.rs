//! What a build is asked to do ([`BuildRequest`]), what it reports while running
//! ([`BuildEvent`]) and what it returns ([`BuildOutcome`]).

use crate::context::ContextSource;
use rbuild_oci::{Compression, Digest, ImageConfig, Manifest, Platform, Reference};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A path: relative ones are taken inside the context (after `context_sub_path`).
    Path(PathBuf),
    /// The text itself (`--dockerfile -`, read from stdin by the caller).
    Text(String),
}

impl Default for DockerfileSource {
    fn default() -> Self {
        DockerfileSource::Path(PathBuf::from("Dockerfile"))
    }
}

/// The manifest and config media types of the result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImageFormat {
    /// OCI (the default).
    #[default]
    Oci,
    /// Docker v2 schema 2.
    Docker,
}

/// How attestations are attached to a pushed image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttestFormat {
    /// OCI 1.1: one artifact manifest per document, its `subject` the image, found through
    /// the referrers API or the `sha256-<hex>` referrers tag (the default).
    #[default]
    Referrers,
    /// BuildKit's: one attestation manifest of in-toto statements, listed beside the image in
    /// an image index that the destination tag then names.
    Buildkit,
}

/// One build.
#[derive(Debug)]
pub struct BuildRequest {
    /// The context (default: the current directory).
    pub context: ContextSource,
    /// `--context-sub-path`.
    pub context_sub_path: Option<String>,
    /// The Dockerfile (default: `Dockerfile` in the context).
    pub dockerfile: DockerfileSource,
    /// `--build-arg`. Proxy args (`HTTP_PROXY`, `https_proxy`, `NO_PROXY`, `ALL_PROXY`... in
    /// either case) reach every RUN's environment even without an `ARG`, and are never
    /// recorded in the history, the config or a cache key.
    pub build_args: BTreeMap<String, String>,
    /// `--secret id=ID,src=PATH|env=VAR`: secrets by id, for `RUN --mount=type=secret`.
    /// Never written to a layer, a log, an error, a cache key, the history or the config.
    pub secrets: BTreeMap<String, crate::SecretSource>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform` (default: the host's).
    pub platform: Option<Platform>,
    /// `--label`: added to the final image's labels.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`: added to the final image manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// Fixes every timestamp (`SOURCE_DATE_EPOCH`; `--reproducible` means 0). When unset, the
    /// `SOURCE_DATE_EPOCH` build arg is used if given.
    pub source_date_epoch: Option<i64>,
    /// OCI or Docker media types.
    pub format: ImageFormat,
    /// Layer compression.
    pub compression: Compression,
    /// Compression level (`None`: the compressor's default).
    pub compression_level: Option<i32>,
    /// The name the image gets in the store (default `localhost/rbuild:latest`).
    pub image_name: Option<String>,
    /// Also write the image as an OCI layout directory here.
    pub oci_layout_path: Option<PathBuf>,
    /// Also write the image as a docker-archive (`docker load`) tarball here.
    pub docker_archive_path: Option<PathBuf>,
    /// Write the manifest digest here.
    pub digest_file: Option<PathBuf>,
    /// `--single-snapshot`: the target stage's own layers squashed into one (over its base
    /// image's layers), as Kaniko does.
    pub single_snapshot: bool,
    /// Ignore the step cache (layers are still recorded for later builds).
    pub no_cache: bool,
    /// The network of `RUN` steps without `--network=none|host`: the host's (the default, as
    /// Kaniko), none, or [`rbuild_sandbox::Network::Sandbox`] (outbound only, through
    /// slirp4netns).
    pub network: rbuild_sandbox::Network,
    /// BuildKit's `security.insecure` entitlement (`--allow security.insecure`): lets
    /// `RUN --security=insecure` steps run without the seccomp filter. Without it such a step
    /// is refused. (It grants no capability beyond Docker's default set.)
    pub allow_security_insecure: bool,
    /// Checked between steps.
    pub cancel: CancelToken,
    /// Where to push the result (`--destination`), when the builder has a
    /// [`Remote`](crate::Remote): every destination gets the image after the build (see
    /// [`BuildOutcome::pushed`]). Also names the default cache repository, and a layer the
    /// store lacks may stay remote when every destination is on the registry that holds it (the
    /// push then mounts it registry-side).
    pub destinations: Vec<Reference>,
    /// `--cache`: use the registry layer cache (needs a [`Remote`](crate::Remote) on the
    /// builder); the local step cache in the store is always on unless `no_cache`.
    pub cache: bool,
    /// `--cache-repo`: the repository of the registry cache (one tag per step key). Default:
    /// [`default_cache_repo`] of the first destination.
    pub cache_repo: Option<Reference>,
    /// `--cache-ttl`: registry cache entries older than this are ignored (default: none is).
    pub cache_ttl: Option<Duration>,
    /// `--cache-copy-layers`: COPY/ADD (and WORKDIR) layers go to the registry cache too
    /// (default true: with `--cache`, every step is cached; false opts these steps out).
    pub cache_copy_layers: bool,
    /// `--cache-run-layers`: RUN layers go to the registry cache (default true).
    pub cache_run_layers: bool,
    /// `--report FILE` (repeatable): the build report, written at the end of every build, a
    /// failed one too: JSON for a `.json` name, a self-contained HTML page otherwise.
    pub report: Vec<PathBuf>,
    /// `--provenance`: attach SLSA v1 provenance to the image. `None`: on when the image is
    /// pushed (the builder has a remote and the request destinations).
    pub provenance: Option<bool>,
    /// `--sbom`: attach an SPDX 2.3 SBOM of the image.
    pub sbom: bool,
    /// `--sbom-files`: the SBOM lists every file no package owns, with its sha256 (default
    /// true; false skips the hashing).
    pub sbom_files: bool,
    /// `--attest-format`.
    pub attest_format: AttestFormat,
    /// `--no-push-cache`: the registry cache is read, never written.
    pub no_push_cache: bool,
}

/// The default `--cache-repo`: `<destination's repository>/cache` on its registry.
pub fn default_cache_repo(destination: &Reference) -> Option<Reference> {
    Reference::parse(&format!(
        "{}/{}/cache",
        destination.registry(),
        destination.repository()
    ))
    .ok()
}

impl Default for BuildRequest {
    fn default() -> Self {
        BuildRequest {
            context: ContextSource::Dir(PathBuf::from(".")),
            context_sub_path: None,
            dockerfile: DockerfileSource::default(),
            build_args: BTreeMap::new(),
            secrets: BTreeMap::new(),
            target: None,
            platform: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            source_date_epoch: None,
            format: ImageFormat::Oci,
            compression: Compression::Gzip,
            compression_level: None,
            image_name: None,
            oci_layout_path: None,
            docker_archive_path: None,
            digest_file: None,
            single_snapshot: false,
            no_cache: false,
            allow_security_insecure: false,
            network: rbuild_sandbox::Network::Host,
            cancel: CancelToken::default(),
            destinations: Vec::new(),
            cache: false,
            cache_repo: None,
            cache_ttl: None,
            cache_copy_layers: true,
            cache_run_layers: true,
            report: Vec::new(),
            provenance: None,
            sbom: false,
            sbom_files: true,
            attest_format: AttestFormat::Referrers,
            no_push_cache: false,
        }
    }
}

/// Cancels a running build from any thread: the engine checks it before every step, and a
/// running RUN step is stopped (every process of it killed).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(rbuild_sandbox::CancelHandle);

impl CancelToken {
    /// Asks the build to stop.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// The sandbox's handle behind this token.
    pub fn sandbox_handle(&self) -> &rbuild_sandbox::CancelHandle {
        &self.0
    }
}

/// How a step was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// It produced a layer.
    Built,
    /// It changed only the config.
    Metadata,
    /// Its layer came from the step cache.
    Cached,
}

/// One step of the finished build.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The stage's file index.
    pub stage: usize,
    /// The instruction's line in the Dockerfile.
    pub line: usize,
    /// The instruction keyword.
    pub keyword: &'static str,
    /// How it was done.
    pub status: StepStatus,
    /// The layer it produced or reused, if any.
    pub layer: Option<Digest>,
    /// Its cache key, when computable before running it.
    pub cache_key: Option<Digest>,
    /// How long it took.
    pub duration: Duration,
}

/// Where a step's time went ([`BuildEvent::StepProfile`]). The parts of a layer write (tar,
/// compress, hash, store write) run at once on several threads, each part's time summed over
/// its threads: together they can exceed the step's wall time.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StepPhases {
    /// RUN: the process, from the sandbox's start to its exit; COPY/ADD: copying the sources
    /// into place.
    pub run: Duration,
    /// Finding what changed (the overlay upper dir's walk, or a tree scan).
    pub snapshot: Duration,
    /// Producing the layer's tar: reading the changed files and writing headers.
    pub tar: Duration,
    /// Compressing the layer (zero for a layer kept uncompressed).
    pub compress: Duration,
    /// sha256 of the tar and of the blob.
    pub hash: Duration,
    /// Writing the blob into the store (with its fsync).
    pub store_write: Duration,
    /// Waiting for the registry: the layer's upload runs while it is written; this is the
    /// time the step waited for it (a full queue, the final PUT).
    pub upload: Duration,
    /// Making the stage's filesystem ready for the step: unpacking the base on first need,
    /// applying the layers of the steps before.
    pub apply: Duration,
}

/// Progress, in order, through the callback given to [`Builder::with_progress`](crate::Builder::with_progress).
#[derive(Debug, Clone, PartialEq)]
pub enum BuildEvent {
    /// How RUN steps are isolated (`userns: …` or `chroot: …`), before the first stage of a
    /// build that has RUN steps.
    Isolation {
        /// One line, e.g. `userns: RUN steps run in user, mount, PID, UTS and IPC namespaces as
        /// host ids 2130706432-2130771967`.
        description: String,
    },
    /// A stage starts.
    StageStarted {
        /// Its file index.
        stage: usize,
        /// Its name, if any.
        name: Option<String>,
    },
    /// A step starts.
    StepStarted {
        /// The stage's file index.
        stage: usize,
        /// The line.
        line: usize,
        /// The instruction keyword.
        keyword: &'static str,
        /// The stage's name (`stage-N` for an unnamed one), for `[name n/m]` labels.
        stage_name: String,
        /// The step's position in its stage, BuildKit's way: `FROM` is 1, the first step 2.
        position: usize,
        /// The number of positions of the stage (its steps and its `FROM`).
        count: usize,
        /// The instruction as written (continuation lines joined, runs of blanks collapsed).
        text: String,
    },
    /// A line of a RUN step's output.
    Output {
        /// The line.
        line: usize,
        /// The text (without its newline).
        text: String,
    },
    /// A layer step missed the cache, and an earlier record of the same step (same stage,
    /// position and instruction kind) says why; sent before the step runs. Names only, never
    /// a value.
    CacheMiss {
        /// The stage's file index.
        stage: usize,
        /// The step's line.
        line: usize,
        /// The instruction keyword.
        keyword: &'static str,
        /// Why its key differs from the earlier record's.
        reason: rbuild_plan::MissReason,
    },
    /// A step finished.
    StepFinished(StepReport),
    /// Where the time of a step that made a layer went (just before its `StepFinished`).
    StepProfile {
        /// The stage's file index.
        stage: usize,
        /// The step's line.
        line: usize,
        /// The time of each part.
        phases: StepPhases,
    },
    /// The image is in the store.
    ImageCommitted {
        /// The manifest digest.
        digest: Digest,
    },
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// The image config.
    pub config: ImageConfig,
    /// The name of the image in the store (not given when `remote_layers` is not empty).
    pub image_name: String,
    /// Layers left in the registry by the registry cache's lazy mode (the store lacks their
    /// bytes; the push mounts them registry-side). The image is then not named in the store.
    pub remote_layers: Vec<Digest>,
    /// Every step, in the order it ran.
    pub steps: Vec<StepReport>,
    /// Warnings of the parser and the planner, rendered (`Dockerfile:3:1: warning: ...`).
    pub warnings: Vec<String>,
    /// One result per destination, in order, when the builder has a remote
    /// ([`Builder::with_remote`](crate::Builder::with_remote)) and the request names
    /// destinations; empty otherwise.
    pub pushed: Vec<rbuild_registry::PushOutcome>,
}

impl BuildOutcome {
    /// The manifest's media type (OCI or Docker), as a push needs it.
    pub fn media_type(&self) -> rbuild_oci::MediaType {
        self.manifest
            .media_type
            .clone()
            .unwrap_or(rbuild_oci::MediaType::OciManifest)
    }
}
