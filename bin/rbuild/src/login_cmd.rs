//! `rbuild login REGISTRY -u USER --password-stdin`, as `docker login` does.

use crate::cli::LoginArgs;
use anyhow::{anyhow, Context, Result};
use rbuild::registry::{write_login, CredentialChain, Secret};
use std::io::Read;

pub fn run(args: &LoginArgs) -> Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(anyhow!("no password on standard input"));
    }
    let chain = CredentialChain::from_env();
    let path = chain
        .login_file()
        .ok_or_else(|| anyhow!("no docker config file to write: set DOCKER_CONFIG or HOME"))?
        .to_path_buf();
    write_login(
        &path,
        &args.registry,
        &args.username,
        &Secret::new(password),
        None,
    )
    .map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "credentials for {} stored in {}",
        args.registry,
        path.display()
    );
    Ok(())
}
