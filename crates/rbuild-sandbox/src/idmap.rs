//! The uid/gid maps of a step's user namespace, how they are written, and the translation of
//! the ids found in the upper dir back to the ids the step used.
//!
//! Three plans, chosen by [`IdMapPlan::for_host`]:
//! - root (real root, or root of a user namespace the builder entered with
//!   [`crate::enter_rootless_userns`]): every id of the current namespace maps to itself
//!   (`0 0 4294967295` on the host), written directly. The upper dir holds the container's ids
//!   as they are.
//! - a user with `/etc/subuid` and `/etc/subgid` ranges and `newuidmap`/`newgidmap`: container
//!   id 0 is the user, ids 1.. are the subordinate ranges in order (as rootless Podman does).
//!   A file that the step chowned to 100 appears outside as `subuid_start + 99`: the engine
//!   must translate the upper dir's owners with [`IdMap::uid_to_container`] /
//!   [`IdMap::gid_to_container`] before writing the layer.
//! - otherwise a single id: container root is the user, nothing else exists; `setgroups` is
//!   denied; `chown` to another id and `USER 1000` fail inside the step.

use serde::{Deserialize, Serialize};

/// One line of `/proc/<pid>/uid_map`: `count` ids from `inside` map to `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapEntry {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// Number of ids.
    pub count: u32,
}

/// The uid and gid maps of a step's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// uid map lines.
    pub uids: Vec<IdMapEntry>,
    /// gid map lines.
    pub gids: Vec<IdMapEntry>,
}

/// How the parent writes the maps for the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapMethod {
    /// Write `/proc/<pid>/{uid,gid}_map` directly (real root).
    Direct,
    /// Run the setuid `newuidmap` / `newgidmap` helpers (subordinate ranges).
    NewIdMap,
    /// Deny `setgroups`, then write the single own id directly (no privilege needed).
    SingleId,
}

/// The maps plus how to install them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapPlan {
    /// The maps.
    pub map: IdMap,
    /// How they are written.
    pub method: MapMethod,
}

fn to_container(entries: &[IdMapEntry], host: u32) -> Option<u32> {
    entries.iter().find_map(|e| {
        let off = host.checked_sub(e.outside)?;
        (off < e.count).then(|| e.inside + off)
    })
}

fn to_host(entries: &[IdMapEntry], inside: u32) -> Option<u32> {
    entries.iter().find_map(|e| {
        let off = inside.checked_sub(e.inside)?;
        (off < e.count).then(|| e.outside + off)
    })
}

impl IdMap {
    /// The id the step saw for a file owned by host uid `host` (None: unmapped, shown as
    /// `nobody` inside).
    pub fn uid_to_container(&self, host: u32) -> Option<u32> {
        to_container(&self.uids, host)
    }
    /// Same for gids.
    pub fn gid_to_container(&self, host: u32) -> Option<u32> {
        to_container(&self.gids, host)
    }
    /// The host uid behind container uid `inside`.
    pub fn uid_to_host(&self, inside: u32) -> Option<u32> {
        to_host(&self.uids, inside)
    }
    /// The host gid behind container gid `inside`.
    pub fn gid_to_host(&self, inside: u32) -> Option<u32> {
        to_host(&self.gids, inside)
    }
    /// Whether container uid `inside` exists in this namespace.
    pub fn maps_uid(&self, inside: u32) -> bool {
        self.uid_to_host(inside).is_some()
    }
}

/// Formats map lines as the kernel's `uid_map` file wants them.
pub fn proc_map_text(entries: &[IdMapEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("{} {} {}\n", e.inside, e.outside, e.count))
        .collect()
}

/// The ranges `/etc/subuid` (or `/etc/subgid`) text gives to a user, by name or numeric id.
/// Malformed lines are skipped, as shadow-utils does.
pub fn subordinate_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != id && Some(who) != name {
                return None;
            }
            let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
            (count > 0).then_some((start, count))
        })
        .collect()
}

fn with_ranges(own: u32, ranges: &[(u32, u32)]) -> Vec<IdMapEntry> {
    let mut out = vec![IdMapEntry {
        inside: 0,
        outside: own,
        count: 1,
    }];
    let mut next = 1u32;
    for &(start, count) in ranges {
        let Some(end) = next.checked_add(count) else {
            break;
        };
        out.push(IdMapEntry {
            inside: next,
            outside: start,
            count,
        });
        next = end;
    }
    out
}

/// What the host offers, read by [`HostIds::read`]; a plain struct so tests can give any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIds {
    /// Effective uid of the builder.
    pub uid: u32,
    /// Effective gid of the builder.
    pub gid: u32,
    /// The builder's user name, if `/etc/passwd` lists it.
    pub name: Option<String>,
    /// Contents of `/etc/subuid` (empty if missing).
    pub subuid: String,
    /// Contents of `/etc/subgid` (empty if missing).
    pub subgid: String,
    /// Both `newuidmap` and `newgidmap` are on `PATH`.
    pub has_newidmap: bool,
    /// The ids that exist in the current user namespace (`/proc/self/uid_map`), as
    /// `(first, count)`; the whole range on the host.
    pub own_uids: Vec<(u32, u32)>,
    /// Same for gids (`/proc/self/gid_map`).
    pub own_gids: Vec<(u32, u32)>,
}

/// The `inside` ranges of a `/proc/self/uid_map`-style text.
pub fn own_ranges(map_text: &str) -> Vec<(u32, u32)> {
    map_text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let inside = f.next()?.parse().ok()?;
            let _outside: u32 = f.next()?.parse().ok()?;
            Some((inside, f.next()?.parse().ok()?))
        })
        .collect()
}

impl HostIds {
    /// Reads the current process's identity and the host's files.
    pub fn read() -> HostIds {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name);
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        HostIds {
            uid,
            gid,
            name,
            subuid: read("/etc/subuid"),
            subgid: read("/etc/subgid"),
            has_newidmap: crate::detect::find_in_path("newuidmap").is_some()
                && crate::detect::find_in_path("newgidmap").is_some(),
            own_uids: own_ranges(&read("/proc/self/uid_map")),
            own_gids: own_ranges(&read("/proc/self/gid_map")),
        }
    }
}

impl IdMapPlan {
    /// The best plan for this host; `force_single` asks for the single-id fallback.
    pub fn for_host(host: &HostIds, force_single: bool) -> IdMapPlan {
        let single = || IdMapPlan {
            map: IdMap {
                uids: vec![IdMapEntry {
                    inside: 0,
                    outside: host.uid,
                    count: 1,
                }],
                gids: vec![IdMapEntry {
                    inside: 0,
                    outside: host.gid,
                    count: 1,
                }],
            },
            method: MapMethod::SingleId,
        };
        if force_single {
            return single();
        }
        if host.uid == 0 {
            let identity = |own: &[(u32, u32)]| -> Vec<IdMapEntry> {
                if own.is_empty() {
                    return vec![IdMapEntry {
                        inside: 0,
                        outside: 0,
                        count: u32::MAX,
                    }];
                }
                own.iter()
                    .map(|&(first, count)| IdMapEntry {
                        inside: first,
                        outside: first,
                        count,
                    })
                    .collect()
            };
            return IdMapPlan {
                map: IdMap {
                    uids: identity(&host.own_uids),
                    gids: identity(&host.own_gids),
                },
                method: MapMethod::Direct,
            };
        }
        let name = host.name.as_deref();
        let subuids = subordinate_ranges(&host.subuid, name, host.uid);
        let subgids = subordinate_ranges(&host.subgid, name, host.uid);
        if host.has_newidmap && !subuids.is_empty() && !subgids.is_empty() {
            return IdMapPlan {
                map: IdMap {
                    uids: with_ranges(host.uid, &subuids),
                    gids: with_ranges(host.gid, &subgids),
                },
                method: MapMethod::NewIdMap,
            };
        }
        single()
    }
}

impl IdMapPlan {
    /// Writes the maps of the user namespace of process `pid` (which must already have
    /// unshared it), as [`IdMapPlan::method`] says.
    pub(crate) fn install(&self, pid: u32) -> Result<(), crate::SandboxError> {
        use crate::SandboxError;
        use std::process::{Command, Stdio};
        let map = &self.map;
        let err = |what: String, e: std::io::Error| SandboxError::IdMap(format!("{what}: {e}"));
        let write = |file: &str, text: &str| {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, text)
                .map_err(|e| err(format!("writing {path:?} ({:?})", text.trim()), e))
        };
        match self.method {
            MapMethod::Direct => {
                write("uid_map", &proc_map_text(&map.uids))?;
                write("gid_map", &proc_map_text(&map.gids))
            }
            MapMethod::SingleId => {
                write("setgroups", "deny")?;
                write("uid_map", &proc_map_text(&map.uids))?;
                write("gid_map", &proc_map_text(&map.gids))
            }
            MapMethod::NewIdMap => {
                for (tool, entries) in [("newuidmap", &map.uids), ("newgidmap", &map.gids)] {
                    let mut cmd = Command::new(tool);
                    cmd.arg(pid.to_string());
                    for e in entries {
                        cmd.args([
                            e.inside.to_string(),
                            e.outside.to_string(),
                            e.count.to_string(),
                        ]);
                    }
                    let out = cmd
                        .stdin(Stdio::null())
                        .output()
                        .map_err(|e| err(format!("running {tool}"), e))?;
                    if !out.status.success() {
                        return Err(SandboxError::IdMap(format!(
                            "{tool} {}: {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        )));
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(subuid: &str, newidmap: bool) -> HostIds {
        HostIds {
            uid: 1000,
            gid: 1000,
            name: Some("alice".into()),
            subuid: subuid.into(),
            subgid: subuid.into(),
            has_newidmap: newidmap,
            ..HostIds::default()
        }
    }

    #[test]
    fn root_of_a_user_namespace_mirrors_its_own_ranges() {
        let own =
            own_ranges("         0       1000          1\n         1     100000      65536\n");
        assert_eq!(own, vec![(0, 1), (1, 65536)]);
        let host = HostIds {
            own_uids: own.clone(),
            own_gids: own,
            ..HostIds::default()
        };
        let p = IdMapPlan::for_host(&host, false);
        assert_eq!(p.method, MapMethod::Direct);
        assert_eq!(proc_map_text(&p.map.uids), "0 0 1\n1 1 65536\n");
        assert_eq!(p.map.uid_to_container(100), Some(100));
    }

    #[test]
    fn root_maps_everything_to_itself() {
        let p = IdMapPlan::for_host(&HostIds::default(), false);
        assert_eq!(p.method, MapMethod::Direct);
        assert_eq!(p.map.uid_to_container(100), Some(100));
        assert_eq!(p.map.gid_to_host(101), Some(101));
        assert_eq!(proc_map_text(&p.map.uids), "0 0 4294967295\n");
    }

    #[test]
    fn user_with_ranges_maps_root_to_self_and_the_rest_to_subordinates() {
        let p = IdMapPlan::for_host(&user("bob:1:2\nalice:100000:65536\n", true), false);
        assert_eq!(p.method, MapMethod::NewIdMap);
        assert_eq!(p.map.uid_to_host(0), Some(1000));
        assert_eq!(p.map.uid_to_host(100), Some(100_099));
        assert_eq!(p.map.uid_to_container(100_099), Some(100));
        assert_eq!(p.map.uid_to_container(1000), Some(0));
        assert_eq!(p.map.uid_to_container(5), None);
        assert_eq!(p.map.uid_to_host(65537), None);
        assert_eq!(proc_map_text(&p.map.uids), "0 1000 1\n1 100000 65536\n");
    }

    #[test]
    fn several_ranges_follow_each_other_and_numeric_owner_matches() {
        let r = subordinate_ranges(
            "1000:200000:10\nx\nalice:300000:5\nalice:1:0\n",
            Some("alice"),
            1000,
        );
        assert_eq!(r, vec![(200_000, 10), (300_000, 5)]);
        let m = with_ranges(1000, &r);
        assert_eq!(to_host(&m, 11), Some(300_000));
        assert_eq!(to_container(&m, 300_004), Some(15));
    }

    #[test]
    fn no_range_or_no_newuidmap_or_forced_gives_a_single_id() {
        for p in [
            IdMapPlan::for_host(&user("", true), false),
            IdMapPlan::for_host(&user("alice:100000:65536", false), false),
            IdMapPlan::for_host(&user("alice:100000:65536", true), true),
            IdMapPlan::for_host(&HostIds::default(), true),
        ] {
            assert_eq!(p.method, MapMethod::SingleId);
            assert_eq!(p.map.uids.len(), 1);
            assert!(!p.map.maps_uid(1));
        }
    }
}
