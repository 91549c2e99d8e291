//! `skopeo`, an independent client (Debian package `skopeo`), to check what rbuild pushed.

use std::path::Path;
use std::process::Command;

use crate::TestkitError;

/// Whether `skopeo` is installed.
pub fn available() -> bool {
    Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether to run skopeo checks: `true` when installed; when it is missing, prints a notice
/// and returns `false`, or panics when `CI` is set (CI must run every check).
// The notice is the point: a skipped check must say why to the person running it.
#[allow(clippy::print_stderr)]
pub fn available_or_skip() -> bool {
    if available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("skopeo not found and CI is set: apt-get install skopeo");
    }
    eprintln!("skipping skopeo check: skopeo not found (apt-get install skopeo)");
    false
}

/// Options for reaching a test registry.
#[derive(Debug, Clone, Default)]
pub struct Access<'a> {
    /// `user:password`, if the registry needs it.
    pub creds: Option<&'a str>,
    /// A directory with `ca.crt` for a TLS registry; `None` means plain HTTP.
    pub cert_dir: Option<&'a Path>,
}

impl Access<'_> {
    fn args(&self, flag: &str) -> Vec<String> {
        let mut args = Vec::new();
        match self.cert_dir {
            Some(dir) => args.push(format!("--{flag}cert-dir={}", dir.display())),
            None => args.push(format!("--{flag}tls-verify=false")),
        }
        if let Some(creds) = self.creds {
            args.push(format!("--{flag}creds={creds}"));
        }
        args
    }
}

fn run(args: &[String]) -> Result<String, TestkitError> {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .map_err(|e| TestkitError::io("run skopeo (apt-get install skopeo)", e))?;
    if !output.status.success() {
        return Err(TestkitError::Image(format!(
            "skopeo {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `skopeo inspect --raw docker://IMAGE`: the manifest bytes the registry serves.
pub fn inspect_raw(image: &str, access: &Access<'_>) -> Result<Vec<u8>, TestkitError> {
    let mut args = vec!["inspect".to_owned(), "--raw".to_owned()];
    args.extend(access.args(""));
    args.push(format!("docker://{image}"));
    run(&args).map(String::into_bytes)
}

/// `skopeo inspect docker://IMAGE` as JSON (digest, layers, architecture…).
pub fn inspect(image: &str, access: &Access<'_>) -> Result<serde_json::Value, TestkitError> {
    let mut args = vec!["inspect".to_owned()];
    args.extend(access.args(""));
    args.push(format!("docker://{image}"));
    let text = run(&args)?;
    serde_json::from_str(&text)
        .map_err(|e| TestkitError::Image(format!("skopeo inspect JSON: {e}")))
}

/// `skopeo copy docker://IMAGE oci:DIR:tag`: downloads and verifies every blob.
pub fn copy_to_oci_dir(image: &str, access: &Access<'_>, dir: &Path) -> Result<(), TestkitError> {
    let mut args = vec!["copy".to_owned(), "--quiet".to_owned()];
    args.extend(access.args("src-"));
    args.push(format!("docker://{image}"));
    args.push(format!("oci:{}:copied", dir.display()));
    run(&args).map(|_| ())
}

/// `skopeo copy` between two registries (same access for both).
pub fn copy_between(from: &str, to: &str, access: &Access<'_>) -> Result<(), TestkitError> {
    let mut args = vec!["copy".to_owned(), "--quiet".to_owned()];
    args.extend(access.args("src-"));
    args.extend(access.args("dest-"));
    args.push(format!("docker://{from}"));
    args.push(format!("docker://{to}"));
    run(&args).map(|_| ())
}

/// `skopeo copy oci:DIR:REF docker://IMAGE`: pushes an image of an OCI layout to a registry.
pub fn copy_from_oci_dir(
    dir: &Path,
    ref_name: &str,
    image: &str,
    access: &Access<'_>,
) -> Result<(), TestkitError> {
    let mut args = vec!["copy".to_owned(), "--quiet".to_owned()];
    args.extend(access.args("dest-"));
    args.push(format!("oci:{}:{ref_name}", dir.display()));
    args.push(format!("docker://{image}"));
    run(&args).map(|_| ())
}
