//! The command line, with Kaniko's flag names so rbuild drops into existing CI templates.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// `rbuild version` and `--version`: the version, the commit and the build date.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RBUILD_COMMIT"),
    ", built ",
    env!("RBUILD_BUILD_DATE"),
    ")"
);

/// Build a container image from a Dockerfile and push it to registries, without a Docker
/// daemon or a privileged container. Takes Kaniko's flags.
///
/// Example: rbuild --context . --destination registry.example.com/team/app:1.0
#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version = VERSION,
    args_conflicts_with_subcommands = true,
    // Kaniko (cobra) lets the last of a repeated flag win; CI templates rely on it to
    // override defaults with `$EXTRA_ARGS`. Repeatable flags still collect every value.
    args_override_self = true,
    after_help = "Every Kaniko executor flag is accepted; see the README's flag table."
)]
pub struct Cli {
    /// Other tasks than building.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The build (when no subcommand is given).
    #[command(flatten)]
    pub build: BuildArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and plan a Dockerfile, print the layer plan as JSON (no network, nothing built).
    Plan(PlanArgs),
    /// Store credentials for a registry in the docker config.json, as `docker login` does.
    Login(LoginArgs),
    /// Remove step-cache records and the blobs nothing needs any more from the local store;
    /// safe while builds run (what they use stays).
    Prune(PruneArgs),
    /// Print rbuild's version, commit and build date.
    Version,
}

/// Flags of `rbuild plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The Dockerfile to plan (`-` reads standard input).
    #[arg(short = 'f', long = "dockerfile", default_value = "Dockerfile")]
    pub dockerfile: String,
    /// A build argument `NAME=value`; a bare `NAME` takes the value of the environment
    /// variable of that name. Repeatable.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// The platform to build for, `os/arch[/variant]` (default: this machine's).
    #[arg(long, alias = "custom-platform")]
    pub platform: Option<String>,
}

/// Flags of `rbuild prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The content store (default as for a build).
    #[arg(long = "cache-dir", env = "RBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Remove the least recently used cache records until the store's blobs fit in this size
    /// (`500MB`, `10GB`, `2GiB`, or bytes).
    #[arg(long = "keep-storage", value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Remove every cache record (images named in the store stay).
    #[arg(long)]
    pub all: bool,
}

/// Flags of `rbuild login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry host (`registry.example.com`, `127.0.0.1:5000`; `docker.io` for Docker Hub).
    pub registry: String,
    /// The user name.
    #[arg(short = 'u', long)]
    pub username: String,
    /// Read the password from standard input (the only way: never on the command line).
    #[arg(long = "password-stdin", required = true)]
    pub password_stdin: bool,
    /// `HOST=ca.pem`: trust this CA (or self-signed certificate) for the registry.
    #[arg(long = "registry-certificate", value_name = "HOST=PATH")]
    pub registry_certificates: Vec<String>,
    /// Do not verify the registry's TLS certificate.
    #[arg(long = "skip-tls-verify", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub skip_tls_verify: bool,
    /// Reach the registry over plain HTTP.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub insecure: bool,
}

/// Flags of the build, Kaniko's names.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory, `dir://DIR`, `tar://FILE` (tar, tar.gz) or `tar://stdin`.
    #[arg(short = 'c', long, default_value = ".")]
    pub context: String,
    /// A sub-directory of the context to use as the context.
    #[arg(long = "context-sub-path")]
    pub context_sub_path: Option<String>,
    /// The Dockerfile: relative to the context, absolute, or `-` for standard input.
    #[arg(short = 'f', long, default_value = "Dockerfile")]
    pub dockerfile: String,
    /// Where to push the image (repeatable).
    #[arg(short = 'd', long = "destination", value_name = "IMAGE")]
    pub destinations: Vec<String>,
    /// A build argument `NAME=value`; a bare `NAME` takes the environment's value. Repeatable.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// A label `KEY=value` added to the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Build only; push nothing.
    #[arg(long = "no-push", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub no_push: bool,
    /// Also write the image as a docker-archive tarball (`docker load`-able) here.
    #[arg(long = "tar-path", alias = "tarPath")]
    pub tar_path: Option<PathBuf>,
    /// Also write the image as an OCI layout directory here.
    #[arg(long = "oci-layout-path")]
    pub oci_layout_path: Option<PathBuf>,
    /// Write the image's manifest digest here.
    #[arg(long = "digest-file")]
    pub digest_file: Option<PathBuf>,
    /// Write `IMAGE@DIGEST` for every destination here.
    #[arg(long = "image-name-with-digest-file")]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write `IMAGE:TAG@DIGEST` for every destination here.
    #[arg(long = "image-name-tag-with-digest-file")]
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// The platform to build for, `os/arch[/variant]`.
    #[arg(long = "custom-platform", aliases = ["platform", "customPlatform"])]
    pub platform: Option<String>,
    /// Reproducible image: every timestamp at 0 (unless SOURCE_DATE_EPOCH is set).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub reproducible: bool,
    /// Print where each step's time went (process run, snapshot walk, tar, compress, hash,
    /// store write, upload, apply) as a table after the build; `--log-format json` always
    /// emits a `step_profile` event per step that made a layer.
    #[arg(long)]
    pub profile: bool,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// Compression level (gzip 1-9, zstd 1-19).
    #[arg(long = "compression-level", allow_negative_numbers = true)]
    pub compression_level: Option<i32>,
    /// Manifest and config media types.
    #[arg(long = "image-format", value_enum, default_value = "oci")]
    pub image_format: ImageFormatArg,
    /// Push over plain HTTP.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub insecure: bool,
    /// Pull over plain HTTP.
    #[arg(long = "insecure-pull", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub insecure_pull: bool,
    /// A registry to reach over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Do not verify TLS certificates when pushing.
    #[arg(long = "skip-tls-verify", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub skip_tls_verify: bool,
    /// Do not verify TLS certificates when pulling.
    #[arg(long = "skip-tls-verify-pull", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub skip_tls_verify_pull: bool,
    /// A registry whose TLS certificate is not verified (repeatable).
    #[arg(long = "skip-tls-verify-registry", value_name = "HOST")]
    pub skip_tls_verify_registries: Vec<String>,
    /// `HOST=ca.pem`: trust this CA for a registry (repeatable).
    #[arg(long = "registry-certificate", value_name = "HOST=PATH")]
    pub registry_certificates: Vec<String>,
    /// `HOST=cert.pem,key.pem`: client certificate for a registry (repeatable).
    #[arg(long = "registry-client-cert", value_name = "HOST=CERT,KEY")]
    pub registry_client_certs: Vec<String>,
    /// A mirror for docker.io (repeatable, tried in order).
    #[arg(long = "registry-mirror", value_name = "HOST")]
    pub registry_mirrors: Vec<String>,
    /// `ORIG=NEW`: pull images of registry ORIG from NEW, falling back to ORIG (repeatable).
    #[arg(long = "registry-map", value_name = "ORIG=NEW")]
    pub registry_maps: Vec<String>,
    /// Retries of a failed push request.
    #[arg(long = "push-retry", default_value = "3")]
    pub push_retry: u32,
    /// Retries of a failed base image download.
    #[arg(long = "image-download-retry", default_value = "3")]
    pub image_download_retry: u32,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=PATH` (a file), `id=ID,env=VAR`
    /// (an environment variable) or `id=ID` (the variable named ID). Repeatable. Never stored
    /// in the image, the cache or the logs.
    #[arg(long = "secret", value_name = "id=ID[,src=PATH|,env=VAR]")]
    pub secrets: Vec<String>,
    /// Use the layer cache in a registry (`--cache-repo`) besides the local one.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub cache: bool,
    /// The registry repository of the layer cache (default: `<first destination>/cache`).
    #[arg(long = "cache-repo", value_name = "REPO")]
    pub cache_repo: Option<String>,
    /// Ignore cache entries older than this (`90m`, `24h`, `7d`...; default: no limit).
    #[arg(long = "cache-ttl", value_name = "DURATION")]
    pub cache_ttl: Option<String>,
    /// Cache COPY/ADD/WORKDIR layers in the registry too (default true; `=false` opts out).
    #[arg(long = "cache-copy-layers", num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub cache_copy_layers: bool,
    /// Cache RUN layers in the registry (default true; `=false` opts out).
    #[arg(long = "cache-run-layers", num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub cache_run_layers: bool,
    /// Run every step: neither the local step cache nor the registry cache is read (layers
    /// are still recorded for later builds), as `docker build --no-cache`.
    #[arg(long = "no-cache", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub no_cache: bool,
    /// The content store (pulled bases, built layers, the step cache).
    #[arg(long = "cache-dir", env = "RBUILD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// How RUN is isolated: `auto` (the default) uses user namespaces and stops with an
    /// explanation where they are unavailable; `chroot` runs steps as the builder's root,
    /// not isolated from it (Kaniko's level), for trusted Dockerfiles only.
    #[arg(long, value_enum, default_value = "auto")]
    pub isolation: IsolationArg,
    /// The network of RUN steps: `host` (the default, as Kaniko: steps reach package
    /// mirrors and the host's loopback), `none`, or `sandbox` (a network of their own with
    /// outbound access through slirp4netns, no host loopback). `RUN --network` overrides it.
    #[arg(long, value_enum, default_value = "host")]
    pub network: NetworkArg,
    /// Entitlements, as BuildKit's `--allow`: `security.insecure` lets
    /// `RUN --security=insecure` run without the seccomp filter.
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_parser = ["security.insecure"])]
    pub allow: Vec<String>,
    /// One layer for the whole final stage.
    #[arg(long = "single-snapshot", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub single_snapshot: bool,
    /// Write the build report here at the end of the build, a failed one too: a
    /// self-contained HTML page, or JSON (the same data) for a `.json` name. Repeatable.
    #[arg(long = "report", value_name = "FILE")]
    pub reports: Vec<PathBuf>,
    /// Attach SLSA v1 provenance to the pushed image (default: on when pushing;
    /// `--provenance=false` skips it).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub provenance: Option<bool>,
    /// Attach an SPDX 2.3 SBOM (packages of dpkg, apk and rpm databases, and unowned files).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub sbom: bool,
    /// List every file no package owns, with its sha256, in the SBOM (`=false` skips hashing).
    #[arg(long = "sbom-files", num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    pub sbom_files: bool,
    /// How attestations are attached: `referrers` (OCI 1.1 artifacts, their subject the
    /// image) or `buildkit` (an image index listing the image and an attestation manifest).
    #[arg(long = "attest-format", value_enum, default_value = "referrers")]
    pub attest_format: AttestFormatArg,
    /// Log level: panic, fatal, error, warn, info, debug, trace.
    #[arg(short = 'v', long, default_value = "info",
          value_parser = crate::kaniko_flags::VERBOSITY_LEVELS)]
    pub verbosity: String,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value = "text")]
    pub log_format: LogFormatArg,
    /// Kaniko's other flags: their meaning in rbuild, or documented no-ops.
    #[command(flatten)]
    pub kaniko: crate::kaniko_flags::KanikoFlags,
}

/// `--compression`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    /// gzip (the default; every registry and runtime reads it).
    Gzip,
    /// zstd (faster, smaller; needs a recent runtime).
    Zstd,
}

/// `--image-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImageFormatArg {
    /// OCI media types.
    Oci,
    /// Docker v2 schema 2 media types.
    Docker,
}

/// `--attest-format`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum AttestFormatArg {
    /// OCI 1.1 referrers (artifact manifests with a subject).
    Referrers,
    /// BuildKit's attestation manifest in an image index.
    Buildkit,
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkArg {
    /// The host's network.
    Host,
    /// Loopback only.
    None,
    /// Outbound only, through slirp4netns.
    Sandbox,
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum IsolationArg {
    /// Detect: user namespaces, else chroot.
    Auto,
    /// User, mount, PID namespaces over overlayfs.
    Userns,
    /// chroot (root in a container without user namespaces).
    Chroot,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormatArg {
    /// Plain lines.
    Text,
    /// Plain lines with colours on a terminal.
    Color,
    /// One JSON object per event.
    Json,
}
