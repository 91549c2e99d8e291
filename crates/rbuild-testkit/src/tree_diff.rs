//! Comparing two [`ImageTree`]s: the candidate's (rbuild's) against the oracle's (Buildah's),
//! every path's type, mode, owner, size, content, link target, hardlink group and xattrs, and
//! the config fields a Dockerfile sets, minus what an [`AllowList`] accepts.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::allow_list::{AllowList, Aspect, KnownDifference};
use crate::image_tree::{describe, show_bytes, ImageTree, TreeEntry};

/// One difference found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The path (`/etc/passwd`) or config field (`config Env`) concerned.
    pub subject: String,
    /// Which aspect of a path, `None` for a config field.
    pub aspect: Option<Aspect>,
    /// What differs, candidate first: `mode 0644 != 0755`.
    pub detail: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.detail)
    }
}

/// The result of a comparison.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Differences no allowance covers.
    pub differences: Vec<Difference>,
    /// Differences accepted, with the known difference that explains each.
    pub allowed: Vec<(Difference, KnownDifference)>,
}

impl Diff {
    /// Whether the images agree (allowed differences aside).
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} difference(s) between candidate (rbuild) and oracle (buildah), {} allowed:",
            self.differences.len(),
            self.allowed.len()
        )?;
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        for (d, known) in &self.allowed {
            writeln!(f, "  allowed ({}): {d}", known.name())?;
        }
        Ok(())
    }
}

/// Compares `candidate` with `oracle`, accepting what `allow` covers.
pub fn compare(candidate: &ImageTree, oracle: &ImageTree, allow: &AllowList) -> Diff {
    let mut diff = Diff::default();
    let mut record = |d: Difference| {
        let known = match d.aspect {
            Some(aspect) => allow.find_path(&d.subject, aspect),
            None => allow.find_config(d.subject.trim_start_matches("config ")),
        };
        match known {
            Some(a) => diff.allowed.push((d, a.known)),
            None => diff.differences.push(d),
        }
    };
    compare_entries(&candidate.entries, &oracle.entries, &mut record);
    compare_config(candidate, oracle, &mut record);
    diff
}

fn compare_entries(
    candidate: &[TreeEntry],
    oracle: &[TreeEntry],
    record: &mut impl FnMut(Difference),
) {
    let (mut i, mut j) = (0, 0);
    while i < candidate.len() || j < oracle.len() {
        let order = match (candidate.get(i), oracle.get(j)) {
            (Some(c), Some(o)) => c.path.cmp(&o.path),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                let c = &candidate[i];
                record(path_difference(
                    c,
                    Aspect::OnlyInCandidate,
                    format!("only in candidate ({})", describe(c)),
                ));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                let o = &oracle[j];
                record(path_difference(
                    o,
                    Aspect::OnlyInOracle,
                    format!("only in oracle ({})", describe(o)),
                ));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                compare_entry(&candidate[i], &oracle[j], record);
                i += 1;
                j += 1;
            }
        }
    }
}

fn path_difference(entry: &TreeEntry, aspect: Aspect, detail: String) -> Difference {
    Difference {
        subject: entry.path.clone(),
        aspect: Some(aspect),
        detail,
    }
}

fn compare_entry(c: &TreeEntry, o: &TreeEntry, record: &mut impl FnMut(Difference)) {
    let mut check = |aspect: Aspect, differs: bool, detail: &dyn Fn() -> String| {
        if differs {
            record(path_difference(c, aspect, detail()));
        }
    };
    check(Aspect::Kind, c.kind != o.kind, &|| {
        format!("type {} != {}", c.kind, o.kind)
    });
    check(Aspect::Mode, c.mode != o.mode, &|| {
        format!("mode {:04o} != {:04o}", c.mode, o.mode)
    });
    check(Aspect::Owner, (c.uid, c.gid) != (o.uid, o.gid), &|| {
        format!("owner {}:{} != {}:{}", c.uid, c.gid, o.uid, o.gid)
    });
    check(Aspect::Size, c.size != o.size, &|| {
        format!("size {} != {}", c.size, o.size)
    });
    check(Aspect::Content, c.sha256 != o.sha256, &|| {
        format!(
            "content {} != {}",
            c.sha256.as_ref().map_or("-", |d| d.as_str()),
            o.sha256.as_ref().map_or("-", |d| d.as_str())
        )
    });
    check(Aspect::LinkTarget, c.link_target != o.link_target, &|| {
        format!(
            "link target {:?} != {:?}",
            c.link_target.as_deref().unwrap_or("-"),
            o.link_target.as_deref().unwrap_or("-")
        )
    });
    check(
        Aspect::Hardlink,
        c.hardlink_group != o.hardlink_group,
        &|| {
            format!(
                "hardlink group {} != {}",
                c.hardlink_group.as_deref().unwrap_or("-"),
                o.hardlink_group.as_deref().unwrap_or("-")
            )
        },
    );
    check(Aspect::Xattrs, c.xattrs != o.xattrs, &|| {
        let show = |e: &TreeEntry| {
            e.xattrs
                .iter()
                .map(|(k, v)| format!("{k}={}", show_bytes(v)))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("xattrs [{}] != [{}]", show(c), show(o))
    });
}

/// The config fields compared: those a Dockerfile sets. `created`, `history` and `rootfs`
/// differ by construction (time, builder, compression) and are not compared.
fn compare_config(candidate: &ImageTree, oracle: &ImageTree, record: &mut impl FnMut(Difference)) {
    let field = |name: &str, c: Value, o: Value, record: &mut dyn FnMut(Difference)| {
        if c != o {
            record(Difference {
                subject: format!("config {name}"),
                aspect: None,
                detail: format!("{c} != {o}"),
            });
        }
    };
    let (cc, oc) = (&candidate.config, &oracle.config);
    field("os", cc.os.clone().into(), oc.os.clone().into(), record);
    field(
        "architecture",
        cc.architecture.clone().into(),
        oc.architecture.clone().into(),
        record,
    );
    field("author", json(&cc.author), json(&oc.author), record);

    let c = json(&cc.config);
    let o = json(&oc.config);
    let empty = serde_json::Map::new();
    let c = c.as_object().unwrap_or(&empty);
    let o = o.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = c.keys().chain(o.keys()).collect();
    for key in keys {
        let cv = c.get(key).cloned().unwrap_or(Value::Null);
        let ov = o.get(key).cloned().unwrap_or(Value::Null);
        match key.as_str() {
            "Labels" => compare_labels(&cv, &ov, record),
            "Env" if cv != ov && sorted(&cv) == sorted(&ov) => {
                field("Env.order", cv, ov, record);
            }
            // Unset (null) against an empty list: the same meaning, told apart so an allowance
            // can accept exactly this and nothing else (found by the first rbuild comparison:
            // Buildah writes `[]` where BuildKit leaves the field out).
            "Entrypoint" | "Cmd" if cv.is_null() && ov.as_array().is_some_and(Vec::is_empty) => {
                field(&format!("{key}.empty"), cv, ov, record);
            }
            _ => field(key, cv, ov, record),
        }
    }
}

fn compare_labels(c: &Value, o: &Value, record: &mut dyn FnMut(Difference)) {
    let empty = serde_json::Map::new();
    let c = c.as_object().unwrap_or(&empty);
    let o = o.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = c.keys().chain(o.keys()).collect();
    for key in keys {
        let cv = c.get(key).cloned().unwrap_or(Value::Null);
        let ov = o.get(key).cloned().unwrap_or(Value::Null);
        if cv != ov {
            record(Difference {
                subject: format!("config Labels.{key}"),
                aspect: None,
                detail: format!("{cv} != {ov}"),
            });
        }
    }
}

fn sorted(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = value
        .as_array()
        .map(|a| a.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    items.sort();
    items
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
