//! The build: flags → `BuildRequest`, progress printed as it comes, push, digest files.

use crate::args::{
    parse_build_args, parse_key_values, parse_secrets, parse_ttl, read_dockerfile_arg,
};
use crate::cli::{BuildArgs, CompressionArg, ImageFormatArg, IsolationArg};
use crate::progress::Progress;
use anyhow::{anyhow, Context, Result};
use rbuild::oci::{Platform, Reference};
use rbuild::registry::{CredentialChain, RegistryOptions, RetryPolicy};
use rbuild::{
    BuildError, BuildRequest, Builder, Compression, ContextSource, ImageFormat, Isolation, Remote,
};
use std::path::PathBuf;
use std::sync::Arc;

/// What the process exits with when the build fails: the failing RUN's own code, else 1.
pub struct BuildFailure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn run(args: &BuildArgs) -> Result<(), BuildFailure> {
    build(args).map_err(|error| {
        let code = error
            .downcast_ref::<BuildError>()
            .and_then(BuildError::exit_code)
            .and_then(|c| u8::try_from(c).ok())
            .filter(|c| *c != 0)
            .unwrap_or(1);
        BuildFailure { code, error }
    })
}

fn build(args: &BuildArgs) -> Result<()> {
    crate::kaniko_flags::check(args)?;
    let progress = Arc::new(
        Progress::new(args.log_format, args.kaniko.log_timestamp).with_profile(args.profile),
    );
    for note in args.kaniko.no_op_notes() {
        tracing::debug!("{note}");
    }
    let destinations = args
        .destinations
        .iter()
        .map(|d| Reference::parse(d).map_err(|e| anyhow!("--destination {d}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    if args.kaniko.dryrun {
        return dry_run(args, &progress);
    }
    if destinations.is_empty()
        && !args.no_push
        && args.tar_path.is_none()
        && args.oci_layout_path.is_none()
    {
        return Err(anyhow!(
            "no --destination given: name where to push the image, or pass --no-push \
             (optionally with --tar-path or --oci-layout-path)"
        ));
    }

    let options = registry_options(args)?;
    // Certificate files are read now: a missing one is reported before anything is built.
    options.check_certificate_files()?;
    let remote = Remote::new(options, CredentialChain::from_env())
        .context("cannot start the registry client")?;
    remote.client().set_progress(progress.transfer_callback());
    let store_dir = args.cache_dir.clone().unwrap_or_else(default_store_dir);
    let builder = Builder::new(&store_dir)?
        .with_isolation(match args.isolation {
            IsolationArg::Auto => Isolation::Auto,
            IsolationArg::Userns => Isolation::Userns,
            IsolationArg::Chroot => Isolation::Chroot,
        })
        .with_remote(&remote)
        .with_progress(progress.callback());

    let request = BuildRequest {
        context: ContextSource::parse(&args.context),
        context_sub_path: args.context_sub_path.clone(),
        dockerfile: read_dockerfile_arg(
            &args.dockerfile,
            &args.context,
            args.context_sub_path.as_deref(),
        )?,
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        platform: args
            .platform
            .as_deref()
            .map(|p| Platform::parse(p).map_err(|e| anyhow!("--custom-platform {p}: {e}")))
            .transpose()?,
        labels: parse_key_values("--label", &args.labels)?
            .into_iter()
            .collect(),
        annotations: parse_key_values("--annotation", &args.kaniko.annotations)?
            .into_iter()
            .collect(),
        source_date_epoch: source_date_epoch(args.reproducible)?,
        format: match args.image_format {
            ImageFormatArg::Oci => ImageFormat::Oci,
            ImageFormatArg::Docker => ImageFormat::Docker,
        },
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        compression_level: args.compression_level,
        // The store name and the name of --tar-path/--oci-layout-path outputs: the first
        // destination (also with --no-push); the store's default otherwise.
        image_name: destinations.first().map(|d| d.to_string()),
        oci_layout_path: args.oci_layout_path.clone(),
        docker_archive_path: args.tar_path.clone(),
        digest_file: args.digest_file.clone(),
        single_snapshot: args.single_snapshot,
        allow_security_insecure: args.allow.iter().any(|a| a == "security.insecure"),
        network: match args.network {
            crate::cli::NetworkArg::Host => rbuild::sandbox::Network::Host,
            crate::cli::NetworkArg::None => rbuild::sandbox::Network::None,
            crate::cli::NetworkArg::Sandbox => rbuild::sandbox::Network::Sandbox,
        },
        secrets: parse_secrets(&args.secrets)?,
        destinations: if args.no_push {
            Vec::new()
        } else {
            destinations.clone()
        },
        cache: args.cache,
        cache_repo: args
            .cache_repo
            .as_deref()
            .map(|r| Reference::parse(r).map_err(|e| anyhow!("--cache-repo {r}: {e}")))
            .transpose()?,
        cache_ttl: args.cache_ttl.as_deref().map(parse_ttl).transpose()?,
        cache_copy_layers: args.cache_copy_layers,
        cache_run_layers: args.cache_run_layers,
        no_cache: args.no_cache,
        report: args.reports.clone(),
        provenance: args.provenance,
        sbom: args.sbom,
        sbom_files: args.sbom_files,
        attest_format: match args.attest_format {
            crate::cli::AttestFormatArg::Referrers => rbuild::AttestFormat::Referrers,
            crate::cli::AttestFormatArg::Buildkit => rbuild::AttestFormat::Buildkit,
        },
        no_push_cache: args.kaniko.no_push_cache,
        ..BuildRequest::default()
    };
    // As Kaniko: wrong credentials or a read-only repository fail before any step runs.
    if !args.kaniko.skip_push_permission_check {
        remote.check_push_permissions(&request.destinations)?;
    }
    let outcome = builder.build(request)?;
    progress.built(&outcome);

    if outcome.pushed.is_empty() {
        progress.note("not pushed (--no-push or no --destination)");
    }
    for result in &outcome.pushed {
        progress.pushed(result);
    }
    for path in &args.reports {
        progress.note(&format!("report written to {}", path.display()));
    }
    write_name_files(args, &destinations, outcome.digest.as_str())?;
    Ok(())
}

fn registry_options(args: &BuildArgs) -> Result<RegistryOptions> {
    let mut options = RegistryOptions {
        insecure_push: args.insecure,
        insecure_pull: args.insecure_pull,
        insecure_registries: args.insecure_registries.clone(),
        skip_tls_verify_push: args.skip_tls_verify,
        skip_tls_verify_pull: args.skip_tls_verify_pull,
        skip_tls_verify_registries: args.skip_tls_verify_registries.clone(),
        registry_mirrors: crate::kaniko_flags::registry_mirrors(&args.registry_mirrors),
        skip_default_registry_fallback: args.kaniko.skip_default_registry_fallback,
        push_ignore_immutable_tag_errors: args.kaniko.push_ignore_immutable_tag_errors,
        ..RegistryOptions::default()
    };
    options.retry = RetryPolicy {
        max_retries: args.push_retry.max(args.image_download_retry),
        ..RetryPolicy::default()
    };
    for (host, path) in parse_key_values("--registry-certificate", &args.registry_certificates)? {
        options.ca_certificates.push((host, PathBuf::from(path)));
    }
    for (host, pair) in parse_key_values("--registry-client-cert", &args.registry_client_certs)? {
        let (cert, key) = pair.split_once(',').ok_or_else(|| {
            anyhow!("--registry-client-cert {host}={pair}: expected HOST=CERT_PATH,KEY_PATH")
        })?;
        options
            .client_certificates
            .push((host, PathBuf::from(cert), PathBuf::from(key)));
    }
    options.registry_maps = parse_key_values("--registry-map", &args.registry_maps)?;
    Ok(options)
}

/// `--dryrun`: the Dockerfile read and planned with the build's arguments (base images are not
/// resolved), its warnings shown; nothing is built or pushed.
fn dry_run(args: &BuildArgs, progress: &Progress) -> Result<()> {
    let text = match read_dockerfile_arg(
        &args.dockerfile,
        &args.context,
        args.context_sub_path.as_deref(),
    )? {
        rbuild::DockerfileSource::Text(text) => text,
        rbuild::DockerfileSource::Path(path) => {
            let path = if path.is_absolute() {
                path
            } else {
                PathBuf::from(&args.context).join(path)
            };
            crate::args::read_dockerfile_text(&path.to_string_lossy())?
        }
    };
    let request = rbuild::PlanRequest {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        platform: args
            .platform
            .as_deref()
            .map(|p| Platform::parse(p).map_err(|e| anyhow!("--custom-platform {p}: {e}")))
            .transpose()?,
    };
    let planned = rbuild::plan_dockerfile(&text, &request)
        .map_err(|e| anyhow!(e.render(&args.dockerfile)))?;
    for warning in &planned.plan.warnings {
        progress.warning(&warning.render(&args.dockerfile));
    }
    let steps: usize = planned.plan.stages.iter().map(|s| s.steps.len()).sum();
    progress.note(&format!(
        "--dryrun: {} stage(s), {steps} step(s) planned; nothing built or pushed",
        planned.plan.stages.len()
    ));
    Ok(())
}

/// `SOURCE_DATE_EPOCH` wins; `--reproducible` alone means 0.
fn source_date_epoch(reproducible: bool) -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("SOURCE_DATE_EPOCH={v}: not a number of seconds")),
        _ => Ok(reproducible.then_some(0)),
    }
}

/// The store: `$XDG_CACHE_HOME/rbuild`, else `~/.cache/rbuild`, else a directory in /tmp.
pub(crate) fn default_store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("rbuild");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache/rbuild");
    }
    std::env::temp_dir().join("rbuild")
}

fn write_name_files(args: &BuildArgs, destinations: &[Reference], digest: &str) -> Result<()> {
    if let Some(path) = &args.image_name_with_digest_file {
        let text: String = destinations
            .iter()
            .map(|d| format!("{}@{digest}\n", d.name()))
            .collect();
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.image_name_tag_with_digest_file {
        let text: String = destinations
            .iter()
            .map(|d| format!("{}:{}@{digest}\n", d.name(), d.tag().unwrap_or("latest")))
            .collect();
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
