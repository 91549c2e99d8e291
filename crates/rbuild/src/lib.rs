//! rbuild: build OCI images from Dockerfiles without a daemon.
//!
//! This crate is what other build tools embed, and what the `rbuild` command line calls:
//!
//! - [`plan_dockerfile`]: Dockerfile text → the layer plan (`rbuild plan`);
//! - [`Builder`]: configured once (content store, RUN runner, progress callback), then
//!   [`Builder::build`] turns a [`BuildRequest`] (context, Dockerfile, build args, target,
//!   labels, outputs) into a [`BuildOutcome`] (manifest digest, manifest, config, per-step
//!   reports), with progress events ([`BuildEvent`]) and cancellation ([`CancelToken`], which
//!   also stops a running RUN). Stages run in waves of the plan's dependency graph, the
//!   independent ones concurrently; FROM scratch, an image of the store (pulled into it first
//!   through a [`Remote`] when missing) or an earlier stage; ONBUILD triggers; COPY/ADD with BuildKit's semantics (see [`copy`]); the image config and
//!   history exactly as BuildKit writes them; layers written by `rbuild-layer` into
//!   `rbuild-store`; the image committed to the store and exported as an OCI layout and/or a
//!   docker-archive. RUN goes through a [`StepRunner`]: by default `rbuild-sandbox`, probed at
//!   the first RUN with the [`Isolation`] asked for ([`Builder::with_isolation`]); the program
//!   must then call [`run_sandbox_helper_if_requested`] first thing in `main`, since the
//!   sandbox re-executes it as its helper. [`NoRunner`] refuses RUN with a clear error.
//! - `RUN --mount`: `type=cache` (a directory kept across builds under
//!   `<store>/cache-mounts/`, keyed by `id` or the target, `sharing=shared|private|locked`,
//!   `uid/gid/mode`, seeded `from=` a stage when created), `type=bind` (the context after
//!   `.dockerignore`, a stage or an image; read-only unless `rw`, whose writes are discarded;
//!   its content is part of the step key), `type=secret` (from [`BuildRequest::secrets`], a
//!   [`SecretSource`] per id: a file at `/run/secrets/<id>` or the target, mode 0400, and/or
//!   an environment variable with `env=`; `required=true` fails when it is missing; never in a
//!   layer, a log, an error, a key, the history or the config), `type=tmpfs`; `type=ssh` is
//!   refused. `RUN --network=none` has only loopback, `host`/`default` the host's network.
//!   Mount points never reach the layer. Proxy build args (`HTTP_PROXY`, `no_proxy`...) reach
//!   every RUN without an `ARG` and stay out of the history, config and keys.
//! - A step cache in the store: every step's key chains its parent's, the expanded step, the
//!   ARG/ENV values it observes and the digest of its inputs (COPY sources: content, mode,
//!   owner, never mtime); a layer step whose key has a record reuses its layer
//!   ([`StepStatus::Cached`]) without touching the filesystem. An ARG step never enters the
//!   chain, so a build arg changes only the keys of the steps that see it (its name in their
//!   expansion, every RUN). All keys are computed before anything runs.
//! - A registry layer cache ([`BuildRequest::cache`], `cache_repo`, `cache_ttl`,
//!   `cache_copy_layers`, `cache_run_layers`, as Kaniko's flags): one tag per step record in
//!   the cache repository (the record key's hex), each a small OCI image manifest (the layer,
//!   a minimal config, annotations with the diffID, history text and creation time); every
//!   record of the plan is probed at once before the first step; built layers are pushed in
//!   the background (joined before [`Builder::build`] returns; failures are warnings in
//!   [`BuildOutcome::warnings`]). Every step is cached by default (`cache_copy_layers` and
//!   `cache_run_layers` are true; false opts a kind of step out). Lazy: base layers and cache
//!   hits (local or remote) are neither downloaded nor unpacked until a later step that runs
//!   needs the filesystem, so a fully cached build downloads no layer, and its push mounts
//!   the layers registry-side ([`BuildOutcome::remote_layers`]). A hit restores the history
//!   time its layer was built at, and the image's `created` is the newest layer's (unless
//!   `SOURCE_DATE_EPOCH` fixes every time), so an unchanged rebuild from an empty store gives
//!   the same manifest digest.
//! - [`BuildContext`] with `.dockerignore` ([`IgnoreMatcher`], Docker's own rules).
//! - [`Remote`]: pushes a built image from the store to any number of destinations.
//! - Report and attestations ([`BuildRequest::report`], `provenance`, `sbom`,
//!   `attest_format`; see [`attest`]): a JSON or HTML build report written at the end of
//!   every build (a failed one too), SLSA provenance and an SPDX SBOM attached to the pushed
//!   image as OCI 1.1 referrers (or BuildKit's attestation index), and written into the OCI
//!   layout.
//!
//! The underlying crates are re-exported, so an embedder needs only this one dependency:
//! [`dockerfile`] (parsing and word expansion), [`plan`] (the layer-plan IR), [`oci`] (digests,
//! references, manifests, configs), [`store`] (the content store), [`registry`] (options and
//! credentials of [`Remote`]) and [`sandbox`].
//!
//! ```
//! use rbuild::{plan_dockerfile, PlanRequest};
//!
//! let text = "FROM busybox AS build\nRUN echo hi > /hi\nFROM scratch\nCOPY --from=build /hi /\n";
//! let planned = plan_dockerfile(text, &PlanRequest::default()).unwrap();
//! assert_eq!(planned.plan.stages.len(), 2);
//! ```
//!
//! Building an image from a directory, with a fixed timestamp (so the digest is reproducible):
//!
//! ```
//! use rbuild::{Builder, BuildRequest, ContextSource, DockerfileSource};
//!
//! let work = tempfile::tempdir().unwrap();
//! let context = work.path().join("ctx");
//! std::fs::create_dir(&context).unwrap();
//! std::fs::write(context.join("hello.txt"), "hello\n").unwrap();
//! let builder = Builder::new(work.path().join("store")).unwrap();
//! let outcome = builder
//!     .build(BuildRequest {
//!         context: ContextSource::Dir(context),
//!         dockerfile: DockerfileSource::Text("FROM scratch\nCOPY hello.txt /\nCMD [\"/hello\"]\n".into()),
//!         source_date_epoch: Some(0),
//!         ..BuildRequest::default()
//!     })
//!     .unwrap();
//! assert_eq!(outcome.manifest.layers.len(), 1);
//! assert_eq!(outcome.config.config.cmd, Some(vec!["/hello".to_string()]));
//! ```
//!
//! # In your program: the helper entry point, pushing, async callers
//!
//! `RUN` steps run in a sandbox that re-executes the running program as its helper, so a
//! program that builds Dockerfiles with `RUN` **must call [`run_sandbox_helper_if_requested`]
//! first thing in `main`** (it returns at once in the ordinary process). Forgetting it makes
//! the first `RUN` fail with "neither user namespaces nor chroot work here". A [`Remote`]
//! pulls bases and pushes the result to [`BuildRequest::destinations`], with the registry
//! options and credentials (docker config, `credHelpers`) the CLI uses.
//!
//! [`Builder::build`] blocks. It may be called from an async task (`#[tokio::main]`): it then
//! runs on a thread of its own (so does every [`Remote`] method), though
//! `tokio::task::spawn_blocking` keeps the runtime's worker free meanwhile. A complete program,
//! also in `examples/build_and_push.rs` (built and run by the tests):
//!
//! ```no_run
//! use rbuild::oci::Reference;
//! use rbuild::registry::{CredentialChain, RegistryOptions};
//! use rbuild::{BuildRequest, Builder, ContextSource, Remote};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     rbuild::run_sandbox_helper_if_requested(); // first thing: RUN needs it
//!     let remote = Remote::new(RegistryOptions::default(), CredentialChain::from_env())?;
//!     let builder = Builder::new("/var/cache/rbuild")?.with_remote(&remote);
//!     let request = BuildRequest {
//!         context: ContextSource::Dir("./app".into()),
//!         destinations: vec![Reference::parse("registry.example.com/team/app:1.0")?],
//!         ..BuildRequest::default()
//!     };
//!     let outcome = tokio::task::spawn_blocking(move || builder.build(request)).await??;
//!     for pushed in &outcome.pushed {
//!         println!("{}@{}", pushed.reference, pushed.digest);
//!     }
//!     Ok(())
//! }
//! ```

pub use rbuild_attest as attest;
pub use rbuild_dockerfile as dockerfile;
pub use rbuild_oci as oci;
pub use rbuild_plan as plan;
pub use rbuild_registry as registry;
pub use rbuild_sandbox as sandbox;
pub use rbuild_store as store;

mod attest_sink;
pub mod context;
pub mod copy;
pub mod dockerignore;
mod engine;
mod error;
pub mod history;
pub mod image_state;
mod input_digest;
mod off_runtime;
mod planning;
mod proxy_env;
mod remote;
mod request;
mod runner;
mod sandbox_runner;
mod secrets;
mod store_resolver;
mod timestamp;
mod unchanged_dirs;
mod work_area;

pub use context::{BuildContext, ContextSource};
pub use dockerignore::IgnoreMatcher;
pub use engine::{Builder, ProgressFn};
pub use error::BuildError;
pub use planning::{plan_dockerfile, plan_dockerfile_with, PlanRequest, Planned};
pub use rbuild_oci::Compression;
pub use rbuild_sandbox::run_helper_if_requested as run_sandbox_helper_if_requested;
pub use remote::Remote;
pub use request::{
    default_cache_repo, AttestFormat, BuildEvent, BuildOutcome, BuildRequest, CancelToken,
    DockerfileSource, ImageFormat, StepPhases, StepReport, StepStatus,
};
pub use runner::{Isolation, NoRunner, RunChanges, RunError, RunRequest, StepRunner};
pub use sandbox_runner::{LazySandboxRunner, SandboxRunner};
pub use secrets::SecretSource;
pub use store_resolver::StoreResolver;
pub use timestamp::BuildTime;
