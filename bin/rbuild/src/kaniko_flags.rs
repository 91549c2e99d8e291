//! Kaniko's executor flags (1.24 and the maintained fork's) that have no rbuild flag of their
//! own: accepted so existing CI templates keep working, each with the meaning it can have for
//! rbuild, or as a documented no-op reported at debug level. Also the checks of values that
//! clap's parsers cannot make alone (a compression level depends on the algorithm).
//!
//! The README's "Kaniko flags" table lists every flag; a test compares it with `--help`.

use crate::cli::{BuildArgs, CompressionArg};
use anyhow::{anyhow, Result};
use clap::Args;
use rbuild::GitOptions;

/// Kaniko's names for the log levels, least verbose first.
pub const VERBOSITY_LEVELS: [&str; 7] =
    ["panic", "fatal", "error", "warn", "info", "debug", "trace"];

/// Kaniko's `--snapshot-mode` values (rbuild always snapshots the overlay's upper directory).
pub const SNAPSHOT_MODES: [&str; 3] = ["full", "redo", "time"];

/// Kaniko flags handled by rbuild without a flag of its own in [`BuildArgs`].
#[derive(Debug, Args)]
pub struct KanikoFlags {
    /// No-op (Kaniko snapshot tuning): rbuild snapshots the overlay's upper directory.
    /// Values: full, redo, time.
    #[arg(long = "snapshot-mode", alias = "snapshotMode", value_name = "MODE",
          value_parser = SNAPSHOT_MODES)]
    pub snapshot_mode: Option<String>,
    /// No-op: RUN always runs in the sandbox and only its changes are recorded.
    #[arg(long = "use-new-run", num_args = 0..=1, default_missing_value = "true")]
    pub use_new_run: Option<bool>,
    /// No-op: cached layers are stored compressed, as pushed.
    #[arg(long = "compressed-caching", num_args = 0..=1, default_missing_value = "true")]
    pub compressed_caching: Option<bool>,
    /// No-op: rbuild never builds into the host's own filesystem, so there is nothing to clean.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub cleanup: Option<bool>,
    /// No-op (fork): there is no host filesystem state to clean before the build.
    #[arg(long = "pre-cleanup", num_args = 0..=1, default_missing_value = "true")]
    pub pre_cleanup: Option<bool>,
    /// No-op: rbuild runs outside a container too (it never writes to the host's root).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub force: Option<bool>,
    /// No-op: the host's /var/run is never part of a snapshot.
    #[arg(long = "ignore-var-run", alias = "whitelist-var-run", num_args = 0..=1,
          default_missing_value = "true")]
    pub ignore_var_run: Option<bool>,
    /// No-op: paths of the host are never part of a snapshot (only RUN's own changes are).
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<String>,
    /// No-op: rbuild keeps its work area under --cache-dir, not in a kaniko directory.
    #[arg(long = "kaniko-dir", value_name = "DIR")]
    pub kaniko_dir: Option<String>,
    /// No-op: rbuild always skips the stages the target does not need (as BuildKit).
    #[arg(long = "skip-unused-stages", num_args = 0..=1, default_missing_value = "true")]
    pub skip_unused_stages: Option<bool>,
    /// No-op: base layers are unpacked from the local store, verified; no download to retry.
    #[arg(long = "image-fs-extract-retry", value_name = "N")]
    pub image_fs_extract_retry: Option<u32>,
    /// No-op: the image's history and metadata are always recorded.
    #[arg(long = "force-build-metadata", num_args = 0..=1, default_missing_value = "true")]
    pub force_build_metadata: Option<bool>,
    /// No-op (fork): the final filesystem is always what the Dockerfile describes.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub materialize: Option<bool>,
    /// No-op (fork): the context is never changed by a build, stages do not share a root.
    #[arg(long = "preserve-context", num_args = 0..=1, default_missing_value = "true")]
    pub preserve_context: Option<bool>,
    /// No-op (fork): credential helpers are the ones named in the docker config.json
    /// (`credHelpers`, `credsStore`), run as `docker-credential-NAME`.
    #[arg(long = "credential-helpers", value_name = "NAME")]
    pub credential_helpers: Vec<String>,
    /// Do not check before the build that every destination accepts a push (Kaniko checks).
    #[arg(long = "skip-push-permission-check", num_args = 0..=1, default_missing_value = "true",
          default_value = "false")]
    pub skip_push_permission_check: bool,
    /// A destination whose tag exists and is immutable (the registry says TAG_INVALID or
    /// MANIFEST_INVALID mentioning an immutable tag) is reported and the build still succeeds.
    #[arg(long = "push-ignore-immutable-tag-errors", num_args = 0..=1,
          default_missing_value = "true", default_value = "false")]
    pub push_ignore_immutable_tag_errors: bool,
    /// With --registry-mirror: pull Docker Hub images from the mirrors only, never from
    /// Docker Hub itself.
    #[arg(long = "skip-default-registry-fallback", num_args = 0..=1,
          default_missing_value = "true", default_value = "false")]
    pub skip_default_registry_fallback: bool,
    /// Do not push cache layers to the registry cache (it is still read with --cache).
    #[arg(long = "no-push-cache", num_args = 0..=1, default_missing_value = "true",
          default_value = "false")]
    pub no_push_cache: bool,
    /// Prefix every log line with the time (RFC 3339, UTC).
    #[arg(long = "log-timestamp", num_args = 0..=1, default_missing_value = "true",
          default_value = "false")]
    pub log_timestamp: bool,
    /// `KEY=VALUE`: an annotation of the image manifest (repeatable; fork).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Parse and plan the Dockerfile, check the flags, then stop: nothing is built or pushed
    /// (fork).
    #[arg(long = "dryrun", alias = "dry-run", num_args = 0..=1, default_missing_value = "true",
          default_value = "false")]
    pub dryrun: bool,
    /// Options of a git context: `branch=REF`, `single-branch=BOOL`,
    /// `recurse-submodules=BOOL`, `insecure-skip-tls=BOOL` (repeatable, or comma-separated).
    #[arg(long = "git", value_name = "KEY=VALUE")]
    pub git: Vec<String>,
    /// Kaniko's Google Cloud Storage context. Refused: rbuild reads no bucket; download the
    /// tarball and pass `--context tar://FILE`.
    #[arg(short = 'b', long = "bucket", value_name = "BUCKET", hide = true)]
    pub bucket: Option<String>,
}

impl KanikoFlags {
    /// The no-op flags that were given, with why they change nothing (for debug notes).
    pub fn no_op_notes(&self) -> Vec<String> {
        let given: [(bool, &str, &str); 15] = [
            (
                self.snapshot_mode.is_some(),
                "--snapshot-mode",
                "rbuild snapshots the overlay's upper directory",
            ),
            (
                self.use_new_run.is_some(),
                "--use-new-run",
                "RUN always records only its own changes",
            ),
            (
                self.compressed_caching.is_some(),
                "--compressed-caching",
                "cached layers are stored as pushed",
            ),
            (
                self.cleanup.is_some(),
                "--cleanup",
                "rbuild never builds into the host's root",
            ),
            (
                self.pre_cleanup.is_some(),
                "--pre-cleanup",
                "rbuild never builds into the host's root",
            ),
            (
                self.force.is_some(),
                "--force",
                "rbuild runs outside a container too",
            ),
            (
                self.ignore_var_run.is_some(),
                "--ignore-var-run",
                "host paths are never snapshotted",
            ),
            (
                !self.ignore_paths.is_empty(),
                "--ignore-path",
                "host paths are never snapshotted",
            ),
            (
                self.kaniko_dir.is_some(),
                "--kaniko-dir",
                "the work area is under --cache-dir",
            ),
            (
                self.skip_unused_stages.is_some(),
                "--skip-unused-stages",
                "unused stages are always skipped",
            ),
            (
                self.image_fs_extract_retry.is_some(),
                "--image-fs-extract-retry",
                "layers are unpacked from the verified local store",
            ),
            (
                self.force_build_metadata.is_some(),
                "--force-build-metadata",
                "metadata is always recorded",
            ),
            (
                self.materialize.is_some(),
                "--materialize",
                "the final filesystem is always built",
            ),
            (
                self.preserve_context.is_some(),
                "--preserve-context",
                "the context is never changed",
            ),
            (
                !self.credential_helpers.is_empty(),
                "--credential-helpers",
                "helpers come from the docker config.json",
            ),
        ];
        given
            .iter()
            .filter(|(given, _, _)| *given)
            .map(|(_, flag, why)| format!("{flag} has no effect in rbuild: {why}"))
            .collect()
    }

    /// The `--git` options, checked.
    pub fn git_flags(&self) -> Result<GitOptions> {
        let mut flags = GitOptions::default();
        for item in self.git.iter().flat_map(|g| g.split(',')) {
            let (key, value) = item.split_once('=').ok_or_else(|| {
                anyhow!("--git {item:?}: expected KEY=VALUE (branch, single-branch, recurse-submodules, insecure-skip-tls)")
            })?;
            let boolean = || -> Result<bool> {
                value
                    .parse()
                    .map_err(|_| anyhow!("--git {key}={value:?}: expected true or false"))
            };
            match key {
                "branch" if !value.is_empty() => flags.branch = Some(value.to_string()),
                "single-branch" => flags.single_branch = boolean()?,
                "recurse-submodules" => flags.recurse_submodules = boolean()?,
                "insecure-skip-tls" => flags.insecure_skip_tls = boolean()?,
                _ => {
                    return Err(anyhow!(
                        "--git {item:?}: unknown option (branch, single-branch, recurse-submodules, insecure-skip-tls)"
                    ))
                }
            }
        }
        Ok(flags)
    }
}

/// Remote contexts rbuild does not fetch: one line saying so and what to do instead.
fn check_context(context: &str) -> Result<()> {
    let instead = "download it and pass --context tar://FILE (or a directory)";
    let refused = |what: &str| {
        Err(anyhow!(
            "--context {context}: {what} contexts are not supported; {instead}"
        ))
    };
    if context.starts_with("s3://") {
        return refused("S3");
    }
    if context.starts_with("gs://") {
        return refused("Google Cloud Storage");
    }
    if context.starts_with("azblob://") || context.contains(".blob.core.windows.net") {
        return refused("Azure Blob Storage");
    }
    if (context.starts_with("https://") || context.starts_with("http://"))
        && rbuild::GitContext::parse(context).is_none()
    {
        return refused("remote tarball (a git repository URL ends in .git)");
    }
    Ok(())
}

/// Checks of flag values that depend on each other; one clear line per mistake.
pub fn check(args: &BuildArgs) -> Result<()> {
    check_context(&args.context)?;
    if let Some(bucket) = &args.kaniko.bucket {
        return Err(anyhow!(
            "--bucket {bucket}: Google Cloud Storage contexts are not supported; download the \
             tarball and pass --context tar://FILE"
        ));
    }
    if let Some(level) = args.compression_level {
        let (name, range) = match args.compression {
            CompressionArg::Gzip => ("gzip", 1..=9),
            CompressionArg::Zstd => ("zstd", 1..=19),
        };
        // Kaniko's default is -1: "the compressor's default".
        if level != -1 && !range.contains(&level) {
            return Err(anyhow!(
                "--compression-level {level}: {name} takes {} to {} (or -1 for its default)",
                range.start(),
                range.end()
            ));
        }
    }
    args.kaniko.git_flags()?;
    crate::args::parse_key_values("--annotation", &args.kaniko.annotations)?;
    Ok(())
}

/// `KANIKO_REGISTRY_MIRROR` adds a mirror after the `--registry-mirror` ones, as Kaniko does.
pub fn registry_mirrors(flags: &[String]) -> Vec<String> {
    let mut mirrors = flags.to_vec();
    if let Some(mirror) = std::env::var("KANIKO_REGISTRY_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        mirrors.push(mirror);
    }
    mirrors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rbuild").chain(args.iter().copied()))
    }

    #[test]
    fn repeated_scalar_flags_last_one_wins() {
        let cli = parse(&[
            "--verbosity",
            "info",
            "--verbosity",
            "debug",
            "--no-push",
            "--no-push=false",
        ])
        .unwrap();
        assert_eq!(cli.build.verbosity, "debug");
        assert!(!cli.build.no_push);
        let cli = parse(&["-d", "a/b:1", "-d", "c/d:2"]).unwrap();
        assert_eq!(
            cli.build.destinations,
            ["a/b:1", "c/d:2"],
            "repeatable flags keep all"
        );
    }

    #[test]
    fn invalid_values_are_errors() {
        assert!(parse(&["--verbosity", "bogus"]).is_err());
        assert!(parse(&["--snapshot-mode=bogus"]).is_err());
        assert!(parse(&["--snapshotMode", "redo"]).is_ok());
        for (compression, level, ok) in [
            ("zstd", "20", false),
            ("zstd", "19", true),
            ("gzip", "12", false),
            ("gzip", "9", true),
            ("gzip", "-1", true),
            ("gzip", "0", false),
        ] {
            let cli = parse(&["--compression", compression, "--compression-level", level]).unwrap();
            assert_eq!(check(&cli.build).is_ok(), ok, "{compression} {level}");
        }
    }

    #[test]
    fn git_options_parse_like_kaniko() {
        let cli = parse(&[
            "--git",
            "branch=v1,single-branch=true",
            "--git",
            "recurse-submodules=true",
        ])
        .unwrap();
        assert_eq!(
            cli.build.kaniko.git_flags().unwrap(),
            GitOptions {
                branch: Some("v1".into()),
                single_branch: true,
                recurse_submodules: true,
                insecure_skip_tls: false
            }
        );
        for bad in ["branch", "bogus=1", "single-branch=maybe"] {
            let cli = parse(&["--git", bad]).unwrap();
            assert!(check(&cli.build).is_err(), "{bad}");
        }
    }
}
