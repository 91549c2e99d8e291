//! What the host allows, and the one message that explains why no isolation mode works.

use std::path::PathBuf;

/// Facts about the host that decide which isolation mode can work. Read with
/// [`HostFacts::read`]; tests build their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Effective uid of the builder.
    pub euid: u32,
    /// `/proc/sys/user/max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// Debian's `/proc/sys/kernel/unprivileged_userns_clone`.
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu's `/proc/sys/kernel/apparmor_restrict_unprivileged_userns`.
    pub apparmor_restricts_userns: Option<u64>,
    /// `NoNewPrivs: 1` (Kubernetes `allowPrivilegeEscalation: false`): setuid `newuidmap` is
    /// powerless.
    pub no_new_privs: bool,
    /// A seccomp filter is installed (`Seccomp: 2`).
    pub seccomp_filter: bool,
    /// The AppArmor profile confining us, if any.
    pub apparmor_profile: Option<String>,
    /// Parts of `/proc` are over-mounted (container runtimes' masked paths), which forbids a
    /// fresh `/proc` mount in a user namespace.
    pub proc_masked: bool,
    /// `newuidmap` and `newgidmap` are installed.
    pub has_newidmap: bool,
    /// What the user-namespace probe reported, if it failed.
    pub userns_error: Option<String>,
    /// What the chroot probe reported, if it failed.
    pub chroot_error: Option<String>,
    /// The mode was not forced (`auto`): the message names `--isolation chroot` as the
    /// explicit, weaker choice.
    pub chroot_offered: bool,
}

/// Finds an executable on `PATH` (`/usr/sbin:/usr/bin:/sbin:/bin` when unset).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
}

/// Whether `/proc/self/mountinfo` text shows mounts below `/proc` other than binfmt_misc.
pub fn proc_is_masked(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        let mount_point = l.split(' ').nth(4).unwrap_or("");
        mount_point.starts_with("/proc/") && !mount_point.starts_with("/proc/sys/fs/binfmt_misc")
    })
}

impl HostFacts {
    /// Reads the facts of this process and host (probe results left empty).
    pub fn read() -> HostFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let profile = std::fs::read_to_string("/proc/self/attr/current")
            .ok()
            .map(|p| p.trim_end_matches(['\0', '\n']).trim().to_owned())
            .filter(|p| !p.is_empty() && p != "unconfined");
        HostFacts {
            euid: nix::unistd::geteuid().as_raw(),
            max_user_namespaces: read_number("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: read_number("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restricts_userns: read_number(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
            no_new_privs: status_field(&status, "NoNewPrivs:").as_deref() == Some("1"),
            seccomp_filter: status_field(&status, "Seccomp:").as_deref() == Some("2"),
            apparmor_profile: profile,
            proc_masked: proc_is_masked(
                &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            ),
            has_newidmap: find_in_path("newuidmap").is_some()
                && find_in_path("newgidmap").is_some(),
            userns_error: None,
            chroot_error: None,
            chroot_offered: false,
        }
    }

    /// The single message given when the chosen mode does not work: every cause found, and
    /// the Kubernetes `securityContext` (or host setting) that removes it.
    pub fn explain_no_isolation(&self) -> String {
        let mut causes: Vec<String> = Vec::new();
        let mut fixes: Vec<&str> = Vec::new();
        if self.max_user_namespaces == Some(0) {
            causes.push("user.max_user_namespaces=0".into());
            fixes.push("set the node sysctl user.max_user_namespaces=15000");
        }
        if self.unprivileged_userns_clone == Some(0) && self.euid != 0 {
            causes.push("kernel.unprivileged_userns_clone=0".into());
            fixes.push("set the node sysctl kernel.unprivileged_userns_clone=1");
        }
        if self.apparmor_restricts_userns == Some(1) && self.euid != 0 {
            causes.push("kernel.apparmor_restrict_unprivileged_userns=1".into());
            fixes.push("allow userns for this binary in AppArmor or set the sysctl to 0");
        }
        if self.seccomp_filter {
            causes.push("a seccomp profile (it may block unshare/mount)".into());
            fixes.push("securityContext.seccompProfile.type: Unconfined");
        }
        if let Some(p) = &self.apparmor_profile {
            causes.push(format!("the AppArmor profile {p:?}"));
            fixes.push("securityContext.appArmorProfile.type: Unconfined");
        }
        if self.proc_masked {
            causes.push("a masked /proc".into());
            fixes.push("securityContext.procMount: Unmasked (with hostUsers: false)");
        }
        if self.euid != 0 && !self.has_newidmap {
            causes.push("no newuidmap/newgidmap".into());
            fixes.push("install the uidmap package in the image");
        }
        if self.euid != 0 && self.no_new_privs {
            causes.push("no_new_privs (setuid newuidmap cannot work)".into());
            fixes.push("securityContext.allowPrivilegeEscalation: true");
        }
        if self.euid != 0 {
            causes.push("not running as root, so chroot mode is impossible".into());
            fixes.push("or securityContext.runAsUser: 0 with capabilities SYS_ADMIN and SYS_CHROOT for --isolation=chroot");
        }
        let mut msg = String::from("cannot isolate RUN steps: ");
        match (&self.userns_error, &self.chroot_error) {
            (_, Some(c)) => msg.push_str(&format!("--isolation chroot does not work here ({c})")),
            (Some(e), None) => msg.push_str(&format!("user namespaces do not work here ({e})")),
            (None, None) => msg.push_str("user namespaces do not work here"),
        }
        if causes.is_empty() {
            msg.push_str(
                "; no known cause found: check the container runtime's seccomp/AppArmor profile",
            );
        } else {
            msg.push_str(&format!("; causes: {}", causes.join(", ")));
            msg.push_str(&format!("; fix: {}", fixes.join("; ")));
        }
        if self.chroot_offered && self.euid == 0 {
            msg.push_str(
                "; or, for trusted Dockerfiles only, pass --isolation chroot (RUN is then not isolated from the builder, as under Kaniko)",
            );
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_each_cause_and_its_fix() {
        let facts = HostFacts {
            euid: 1000,
            max_user_namespaces: Some(0),
            no_new_privs: true,
            seccomp_filter: true,
            proc_masked: true,
            has_newidmap: false,
            userns_error: Some("unshare(CLONE_NEWUSER): ENOSPC".into()),
            ..HostFacts::default()
        };
        let m = facts.explain_no_isolation();
        for needle in [
            "user.max_user_namespaces=0",
            "seccompProfile",
            "procMount: Unmasked",
            "allowPrivilegeEscalation: true",
            "uidmap",
            "ENOSPC",
            "runAsUser: 0",
        ] {
            assert!(m.contains(needle), "{needle} missing in {m}");
        }
        assert!(!m.contains('\n'));
    }

    #[test]
    fn root_is_not_told_about_newuidmap() {
        let facts = HostFacts {
            euid: 0,
            max_user_namespaces: Some(0),
            ..HostFacts::default()
        };
        let m = facts.explain_no_isolation();
        assert!(!m.contains("uidmap") && !m.contains("runAsUser"), "{m}");
        assert!(!m.contains("--isolation chroot"), "{m}");
        let m = HostFacts {
            chroot_offered: true,
            ..facts
        }
        .explain_no_isolation();
        assert!(m.contains("pass --isolation chroot"), "{m}");
    }

    #[test]
    fn masked_proc_is_seen_in_mountinfo() {
        let plain = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
                     23 22 0:5 / /proc rw - proc proc rw\n\
                     24 23 0:6 / /proc/sys/fs/binfmt_misc rw - binfmt_misc x rw\n";
        assert!(!proc_is_masked(plain));
        let masked = format!("{plain}25 23 0:7 / /proc/kcore rw - tmpfs tmpfs rw\n");
        assert!(proc_is_masked(&masked));
    }
}
