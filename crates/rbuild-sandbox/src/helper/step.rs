//! The step's own process: credentials, working directory, environment, `PATH` lookup, exec.

use std::ffi::CString;
use std::path::Path;

use nix::unistd::{Gid, Uid};

use super::{sys, Ctl};
use crate::protocol::FailKind;
use crate::user::ResolvedUser;

/// Docker's default `PATH` when the step's environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The step's environment: the spec's, plus `PATH` and `HOME` defaults when absent.
pub(crate) fn step_env(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    let has = |k: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(key, _)| key == k))
    };
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

/// Where `program` is found: itself when it contains `/`, else the first executable regular
/// file in the `PATH` of `env`.
pub(crate) fn lookup(program: &str, env: &[String]) -> Option<String> {
    if program.contains('/') {
        return Some(program.to_owned());
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| format!("{}/{program}", d.trim_end_matches('/')))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file())
                && nix::unistd::access(Path::new(p), nix::unistd::AccessFlags::X_OK).is_ok()
        })
}

fn cstrings(items: &[String], what: &str) -> Result<Vec<CString>, String> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| format!("{what} {s:?} contains a NUL byte"))
        })
        .collect()
}

/// Everything the step's process needs to become the step.
pub(crate) struct StepExec<'a> {
    /// Program and arguments.
    pub(crate) argv: &'a [String],
    /// The spec's environment (defaults are added).
    pub(crate) env: &'a [String],
    /// Working directory.
    pub(crate) cwd: &'a str,
    /// The resolved `USER`.
    pub(crate) user: &'a ResolvedUser,
    /// `setgroups` may be called (not denied for the namespace).
    pub(crate) setgroups_allowed: bool,
    /// The capability bounding set to keep.
    pub(crate) caps: &'a [u32],
    /// Install the seccomp filter.
    pub(crate) seccomp: bool,
}

/// Becomes the step: never returns. On failure reports through `ctl` and exits 127.
pub(crate) fn exec_step(ctl: &mut Ctl, req: &StepExec<'_>) -> ! {
    let err = match become_step(req) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    ctl.send_failure(FailKind::Exec, err);
    sys::exit_now(127)
}

fn become_step(req: &StepExec<'_>) -> Result<std::convert::Infallible, String> {
    let user = req.user;
    sys::reset_signal_dispositions();
    // A keyring of its own: the builder's session keys are out of reach (and keyctl is
    // filtered below anyway).
    sys::join_new_session_keyring().map_err(|e| format!("joining a new session keyring: {e}"))?;
    sys::limit_bounding_set(req.caps)
        .map_err(|e| format!("limiting capabilities to Docker's default set: {e}"))?;
    if req.setgroups_allowed {
        let groups: Vec<Gid> = user
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups)
            .map_err(|e| format!("setgroups {:?}: {}", user.additional_gids, e.desc()))?;
    }
    // Installed while we still hold CAP_SYS_ADMIN in our namespace (so without
    // no_new_privs, which would break setuid programs inside the step).
    if req.seccomp {
        super::seccomp::install()?;
    }
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| format!("setgid {}: {}", user.gid, e.desc()))?;
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| format!("setuid {}: {}", user.uid, e.desc()))?;
    nix::unistd::chdir(req.cwd).map_err(|e| format!("chdir {:?}: {}", req.cwd, e.desc()))?;
    let env = step_env(req.env, &user.home);
    let program = lookup(&req.argv[0], &env).ok_or_else(|| {
        format!(
            "exec: {:?}: executable file not found in $PATH",
            req.argv[0]
        )
    })?;
    let c_program = CString::new(program.as_bytes())
        .map_err(|_| format!("program {program:?} contains a NUL byte"))?;
    let c_argv = cstrings(req.argv, "argument")?;
    let c_env = cstrings(&env, "environment entry")?;
    match nix::unistd::execve(&c_program, &c_argv, &c_env) {
        Ok(never) => match never {},
        Err(e) => Err(format!("exec {program:?}: {}", e.desc())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_only_missing_keys() {
        let env = step_env(&["A=1".into(), "HOME=/x".into()], "/root");
        assert_eq!(
            env,
            vec![
                "A=1".to_owned(),
                "HOME=/x".into(),
                format!("PATH={DEFAULT_PATH}")
            ]
        );
        let env = step_env(&["PATH=/p".into()], "/home/app");
        assert_eq!(env, vec!["PATH=/p".to_owned(), "HOME=/home/app".into()]);
    }

    #[test]
    fn lookup_uses_the_step_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tool");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let env = vec![format!("PATH=/nonexistent:{}", dir.path().display())];
        assert_eq!(lookup("tool", &env), None, "not executable yet");
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(lookup("tool", &env).as_deref(), Some(bin.to_str().unwrap()));
        assert_eq!(lookup("./rel/x", &env).as_deref(), Some("./rel/x"));
        assert_eq!(lookup("nope", &env), None);
    }
}
