//! `rbuild login REGISTRY -u USER --password-stdin`, as `docker login` does: the credentials
//! are checked against the registry first, and stored only when it accepts them.

use crate::args::parse_key_values;
use crate::cli::LoginArgs;
use anyhow::{anyhow, Context, Result};
use rbuild::registry::{write_login, Credential, CredentialChain, RegistryOptions, Secret};
use rbuild::Remote;
use std::io::Read;
use std::path::PathBuf;

pub fn run(args: &LoginArgs) -> Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(anyhow!("no password on standard input"));
    }
    let password = Secret::new(password);
    let mut options = RegistryOptions {
        insecure_push: args.insecure,
        skip_tls_verify_push: args.skip_tls_verify,
        ..RegistryOptions::default()
    };
    for (host, path) in parse_key_values("--registry-certificate", &args.registry_certificates)? {
        options.ca_certificates.push((host, PathBuf::from(path)));
    }
    options.check_certificate_files()?;
    let stored = CredentialChain::from_env();
    let path = stored
        .login_file()
        .ok_or_else(|| anyhow!("no docker config file to write: set DOCKER_CONFIG or HOME"))?
        .to_path_buf();
    // Only these credentials are tried: nothing stored earlier can make a wrong password pass.
    let chain = CredentialChain::empty().with_credential(
        &args.registry,
        Credential::Basic {
            username: args.username.clone(),
            password: password.clone(),
        },
    );
    Remote::new(options, chain)?
        .check_credentials(&args.registry)
        .map_err(|e| anyhow!("{e}; nothing stored"))?;
    write_login(
        &path,
        &args.registry,
        &args.username,
        &password,
        stored.helper_dir(),
    )?;
    eprintln!(
        "login to {} succeeded; credentials stored in {}",
        args.registry,
        path.display()
    );
    Ok(())
}
