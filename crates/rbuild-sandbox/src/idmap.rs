//! The uid/gid maps of a step's user namespace, how they are written, and the translation of
//! the ids found in the upper dir back to the ids the step used.
//!
//! Four plans, chosen by [`IdMapPlan::for_host`]:
//! - real root (root of the initial user namespace): the step's ids 0–65535 map onto an
//!   unprivileged range, never onto host root: root's `/etc/subuid` and `/etc/subgid` ranges
//!   when it has them, else [`ROOT_DEFAULT_RANGE_START`] (moved up past any range that
//!   `/etc/subuid` gives to a user). The maps are written directly. The layers under the step
//!   keep the container's ids on disk and are shown to the step through idmapped mounts
//!   ([`IdMapPlan::idmapped_layers`]); files the step creates land in the upper dir with the
//!   range's host ids, translated back with [`IdMap::uid_to_container`] exactly as for a
//!   rootless builder. A step's root is therefore never host uid 0: it cannot write host
//!   sysctls, keep a setuid-root file on the host, or own anything of the builder's.
//! - root of a user namespace that is not the initial one (the builder entered one with
//!   [`crate::enter_rootless_userns`], or runs in a user-namespaced container): every id of
//!   the current namespace maps to itself, written directly. That root is already an
//!   unprivileged host user; the upper dir holds the container's ids as they are.
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

/// First host id of the range that real root's steps get when `/etc/subuid` (or
/// `/etc/subgid`) has no line for root: 2^31 − 2^24, far above Debian's `useradd` ranges
/// (which start at 100000 and grow by 65536 a user). Moved up in steps of
/// [`ROOT_RANGE_SIZE`] while it overlaps a range that those files give to any user.
pub const ROOT_DEFAULT_RANGE_START: u32 = 2_130_706_432;

/// Number of ids a real-root builder's steps get (container ids 0–65535).
pub const ROOT_RANGE_SIZE: u32 = 65_536;

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
    /// The layers (and bind sources) hold container ids on disk and must be shown to the step
    /// through idmapped mounts with [`IdMapPlan::map`] (real root, whose steps run in a
    /// shifted range).
    pub idmapped_layers: bool,
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

/// Every `(owner, start, count)` line of `/etc/subuid`-style text; malformed lines and empty
/// ranges are skipped, as shadow-utils does.
fn subid_lines(text: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    text.lines().filter_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        (count > 0 && start.checked_add(count).is_some()).then_some((who, start, count))
    })
}

/// Sorts ranges and merges the ones that overlap or touch, so that no host id is given twice
/// (Debian's `useradd` may add a second line for a user that already has one, and
/// `newuidmap` refuses overlapping ranges).
pub fn merge_ranges(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (start, count) in ranges {
        let end = u64::from(start) + u64::from(count);
        match out.last_mut() {
            Some((s, c)) if u64::from(start) <= u64::from(*s) + u64::from(*c) => {
                let merged_end = end.max(u64::from(*s) + u64::from(*c));
                *c = u32::try_from(merged_end - u64::from(*s)).unwrap_or(u32::MAX);
            }
            _ => out.push((start, count)),
        }
    }
    out
}

/// The ranges `/etc/subuid` (or `/etc/subgid`) text gives to a user, by name or numeric id,
/// merged (see [`merge_ranges`]). Malformed lines are skipped, as shadow-utils does.
pub fn subordinate_ranges(text: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    merge_ranges(
        subid_lines(text)
            .filter(|(who, ..)| *who == id || Some(*who) == name)
            .map(|(_, start, count)| (start, count))
            .collect(),
    )
}

/// The first [`ROOT_RANGE_SIZE`] ids that real root's steps map onto: root's own subordinate
/// ranges when they hold that many, else [`ROOT_DEFAULT_RANGE_START`] moved past every range
/// of `taken` (all lines of `/etc/subuid` and `/etc/subgid`).
fn root_range(own: &[(u32, u32)], taken: &str) -> Vec<(u32, u32)> {
    let total: u64 = own.iter().map(|&(_, c)| u64::from(c)).sum();
    if total >= u64::from(ROOT_RANGE_SIZE) {
        let mut left = ROOT_RANGE_SIZE;
        let mut out = Vec::new();
        for &(start, count) in own {
            if left == 0 {
                break;
            }
            let n = count.min(left);
            out.push((start, n));
            left -= n;
        }
        return out;
    }
    let mut start = ROOT_DEFAULT_RANGE_START;
    let overlaps = |s: u32| {
        let (a0, a1) = (u64::from(s), u64::from(s) + u64::from(ROOT_RANGE_SIZE));
        subid_lines(taken).any(|(_, b, c)| {
            let (b0, b1) = (u64::from(b), u64::from(b) + u64::from(c));
            a0 < b1 && b0 < a1
        })
    };
    while overlaps(start) {
        match start.checked_add(ROOT_RANGE_SIZE) {
            Some(next) if next.checked_add(ROOT_RANGE_SIZE).is_some() => start = next,
            _ => break,
        }
    }
    vec![(start, ROOT_RANGE_SIZE)]
}

/// Map lines giving container ids 0.. to `ranges` in order.
fn from_zero(ranges: &[(u32, u32)]) -> Vec<IdMapEntry> {
    let mut next = 0u32;
    ranges
        .iter()
        .map(|&(start, count)| {
            let e = IdMapEntry {
                inside: next,
                outside: start,
                count,
            };
            next += count;
            e
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
    /// The process is in the initial user namespace (`/proc/self/uid_map` is
    /// `0 0 4294967295`): its root is the host's root.
    pub initial_userns: bool,
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
        let uid_map = read("/proc/self/uid_map");
        HostIds {
            initial_userns: own_ranges(&uid_map) == [(0, u32::MAX)]
                && uid_map.split_whitespace().nth(1) == Some("0"),
            uid,
            gid,
            name,
            subuid: read("/etc/subuid"),
            subgid: read("/etc/subgid"),
            has_newidmap: crate::detect::find_in_path("newuidmap").is_some()
                && crate::detect::find_in_path("newgidmap").is_some(),
            own_uids: own_ranges(&uid_map),
            own_gids: own_ranges(&read("/proc/self/gid_map")),
        }
    }
}

impl IdMapPlan {
    /// Every id maps to itself (chroot mode: no user namespace).
    pub fn identity() -> IdMapPlan {
        let all = vec![IdMapEntry {
            inside: 0,
            outside: 0,
            count: u32::MAX,
        }];
        IdMapPlan {
            map: IdMap {
                uids: all.clone(),
                gids: all,
            },
            method: MapMethod::Direct,
            idmapped_layers: false,
        }
    }

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
            idmapped_layers: false,
        };
        if force_single {
            return single();
        }
        if host.uid == 0 && host.initial_userns {
            let taken = format!("{}\n{}", host.subuid, host.subgid);
            let root_ranges = |text: &str| {
                from_zero(&root_range(
                    &subordinate_ranges(text, host.name.as_deref(), 0),
                    &taken,
                ))
            };
            return IdMapPlan {
                map: IdMap {
                    uids: root_ranges(&host.subuid),
                    gids: root_ranges(&host.subgid),
                },
                method: MapMethod::Direct,
                idmapped_layers: true,
            };
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
                idmapped_layers: false,
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
                idmapped_layers: false,
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
    fn root_of_a_non_initial_namespace_maps_everything_to_itself() {
        let p = IdMapPlan::for_host(&HostIds::default(), false);
        assert_eq!(p.method, MapMethod::Direct);
        assert_eq!(p.map.uid_to_container(100), Some(100));
        assert_eq!(p.map.gid_to_host(101), Some(101));
        assert_eq!(proc_map_text(&p.map.uids), "0 0 4294967295\n");
    }

    fn real_root(subuid: &str) -> HostIds {
        HostIds {
            name: Some("root".into()),
            subuid: subuid.into(),
            subgid: subuid.into(),
            initial_userns: true,
            ..HostIds::default()
        }
    }

    #[test]
    fn real_root_never_maps_a_step_onto_host_root() {
        // No line for root: the default range, which no user owns.
        let p = IdMapPlan::for_host(&real_root("alice:100000:65536\n"), false);
        assert_eq!(p.method, MapMethod::Direct);
        assert!(p.idmapped_layers);
        assert_eq!(
            proc_map_text(&p.map.uids),
            format!("0 {ROOT_DEFAULT_RANGE_START} 65536\n")
        );
        assert_eq!(p.map.uid_to_host(0), Some(ROOT_DEFAULT_RANGE_START));
        assert_eq!(p.map.uid_to_container(0), None, "host root is not mapped");
        assert!(!p.map.maps_uid(65536));
        // Root's own range, with Debian's duplicate line, merged.
        let p = IdMapPlan::for_host(
            &real_root("root:100000:65536\nroot:100000:65536\nbob:165536:65536\n"),
            false,
        );
        assert_eq!(proc_map_text(&p.map.uids), "0 100000 65536\n");
        assert_eq!(p.map.uid_to_container(100_100), Some(100));
        // Someone owns the default range: the next free block is taken.
        let taken = format!("mallory:{}:10\n", ROOT_DEFAULT_RANGE_START + 5);
        let p = IdMapPlan::for_host(&real_root(&taken), false);
        assert_eq!(
            p.map.uid_to_host(0),
            Some(ROOT_DEFAULT_RANGE_START + ROOT_RANGE_SIZE)
        );
        // A root range too small for 65536 ids is not used.
        let p = IdMapPlan::for_host(&real_root("root:500000:1000\n"), false);
        assert_eq!(p.map.uid_to_host(0), Some(ROOT_DEFAULT_RANGE_START));
        // Two of root's ranges fill the 65536 ids in order.
        let p = IdMapPlan::for_host(&real_root("root:300000:1000\nroot:200000:65536\n"), false);
        assert_eq!(
            proc_map_text(&p.map.uids),
            "0 200000 65536\n",
            "sorted, and the first range already holds enough"
        );
    }

    #[test]
    fn duplicate_and_overlapping_subordinate_lines_are_merged() {
        assert_eq!(
            subordinate_ranges(
                "u:100000:65536\nu:100000:65536\nu:130000:65536\nu:300000:5\nu:300005:5\n",
                Some("u"),
                7
            ),
            vec![(100_000, 95_536), (300_000, 10)]
        );
        assert_eq!(merge_ranges(vec![(5, 1), (1, 2)]), vec![(1, 2), (5, 1)]);
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
