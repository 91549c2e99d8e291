//! The builder's side of [`crate::Network::Sandbox`]: `slirp4netns` attached to the step's new
//! network namespace, so that the step reaches the outside through a user-mode TCP/IP stack
//! (`10.0.2.100/24`, gateway `10.0.2.2`, DNS forwarder `10.0.2.3`), with the host's loopback
//! refused (`--disable-host-loopback`) and the stack itself sandboxed and filtered
//! (`--enable-sandbox --enable-seccomp`). Abstract Unix sockets belong to network namespaces:
//! the host's are out of reach.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::SandboxError;

/// How long the stack may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `slirp4netns`; killed when dropped (after the step).
pub(crate) struct UserModeNetwork {
    child: Child,
}

fn failed(message: impl Into<String>) -> SandboxError {
    SandboxError::Setup(format!("--network sandbox: {}", message.into()))
}

impl UserModeNetwork {
    /// Whether the stack can be started here, else why not (one line).
    pub(crate) fn check() -> Result<(), SandboxError> {
        if crate::detect::find_in_path("slirp4netns").is_none() {
            return Err(failed(
                "slirp4netns is not installed (Debian: apt-get install slirp4netns)",
            ));
        }
        let tun = std::path::Path::new("/dev/net/tun");
        if nix::unistd::access(
            tun,
            nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
        )
        .is_err()
        {
            return Err(failed(
                "this user cannot open /dev/net/tun (Debian makes it mode 0666; here it is not), which slirp4netns needs",
            ));
        }
        Ok(())
    }

    /// Attaches the stack to the network namespace of process `pid`; `join_userns` when the
    /// builder holds no capability over the step's user namespace (a single-id builder).
    pub(crate) fn attach(pid: u32, join_userns: bool) -> Result<UserModeNetwork, SandboxError> {
        let tool = crate::detect::find_in_path("slirp4netns").ok_or_else(|| {
            failed("slirp4netns is not installed (Debian: apt-get install slirp4netns)")
        })?;
        let (ready_r, ready_w) =
            nix::unistd::pipe().map_err(|e| failed(format!("pipe: {}", e.desc())))?;
        let mut cmd = Command::new(tool);
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            "--ready-fd=3",
        ]);
        if join_userns {
            cmd.arg(format!("--userns-path=/proc/{pid}/ns/user"));
        }
        cmd.args(["--netns-type=path", &format!("/proc/{pid}/ns/net"), "tap0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        crate::helper::pass_as_fd3(&mut cmd, ready_w.as_raw_fd());
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("starting slirp4netns: {e}")))?;
        drop(ready_w);
        let mut ready = std::fs::File::from(ready_r);
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&ready),
            nix::poll::PollFlags::POLLIN,
        )];
        let timeout = nix::poll::PollTimeout::try_from(READY_TIMEOUT.as_millis() as i32)
            .unwrap_or(nix::poll::PollTimeout::MAX);
        let polled = nix::poll::poll(&mut fds, timeout);
        let mut byte = [0u8; 1];
        if !matches!(polled, Ok(n) if n > 0) || ready.read(&mut byte).unwrap_or(0) != 1 {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            let said: Vec<&str> = err
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let said = if said.is_empty() {
                "no message".to_owned()
            } else {
                said.join("; ")
            };
            return Err(failed(format!("slirp4netns did not come up: {said}")));
        }
        Ok(UserModeNetwork { child })
    }
}

impl Drop for UserModeNetwork {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
