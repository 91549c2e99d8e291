//! Builds a Dockerfile and pushes the image from an async program (`#[tokio::main]`).
//!
//! ```sh
//! cargo run -p rbuild --example build_and_push -- CONTEXT_DIR REGISTRY/REPOSITORY:TAG
//! ```
//!
//! Credentials come from the docker config (`rbuild login`, `docker login`), as for the CLI.
// An example program talks to its user.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::path::{Path, PathBuf};

use rbuild::oci::Reference;
use rbuild::registry::{CredentialChain, RegistryOptions};
use rbuild::{BuildRequest, Builder, ContextSource, Remote};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    // First thing in `main`: RUN steps re-execute this program as the sandbox's helper, and
    // this call turns such a process into the helper (it returns at once otherwise).
    rbuild::run_sandbox_helper_if_requested();

    let mut args = std::env::args().skip(1);
    let (Some(context), Some(destination)) = (args.next(), args.next()) else {
        eprintln!("usage: build_and_push CONTEXT_DIR REGISTRY/REPOSITORY:TAG");
        std::process::exit(2);
    };
    let store = std::env::temp_dir().join("rbuild-example-store");
    let digest = build_and_push(PathBuf::from(context), &destination, &store).await?;
    println!("pushed {destination}@{digest}");
    Ok(())
}

/// Builds `context`'s `Dockerfile` with the content store at `store`, pushes the image to
/// `destination` and returns its manifest digest.
pub async fn build_and_push(
    context: PathBuf,
    destination: &str,
    store: &Path,
) -> Result<String, Box<dyn Error + Send + Sync>> {
    let destination = Reference::parse(destination)?;
    let remote = Remote::new(RegistryOptions::default(), CredentialChain::from_env())?;
    let builder = Builder::new(store)?.with_remote(&remote);
    let request = BuildRequest {
        context: ContextSource::Dir(context),
        destinations: vec![destination],
        ..BuildRequest::default()
    };
    // `build` blocks until the image is built and pushed. Inside a runtime it runs on a thread
    // of its own; `spawn_blocking` also keeps this runtime's worker free meanwhile.
    let outcome = tokio::task::spawn_blocking(move || builder.build(request)).await??;
    Ok(outcome.digest.to_string())
}
