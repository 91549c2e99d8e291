//! What a cache key was made of, kept beside the cache record so that a miss can be
//! explained (DESIGN.md §2, "cache records carry their inputs' description"): the parent key,
//! and for the step and the metadata steps chained since the previous layer step, the digest
//! of the expanded instruction, the names and digests of the ARG/ENV values it saw, and the
//! digests of its sources, file by file. Names and digests only: never a value, so a record
//! can be stored and shown without leaking a build arg or a secret.
//!
//! [`explain_miss`] compares the description of the closest earlier record of a step with
//! the current one and says, in one [`MissReason`], why the keys differ.

use rbuild_oci::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many files a step's description lists one by one; a step reading more keeps only the
/// digest of them all (its miss then says "its sources changed").
pub const MAX_DESCRIBED_FILES: usize = 10_000;

/// Where a step's chain starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ParentKind {
    /// The stage's base image (the parent key is its base key).
    Image,
    /// `FROM scratch`.
    Scratch,
    /// Another stage of the Dockerfile, by file index.
    Stage {
        /// Its file index.
        index: usize,
    },
    /// The previous layer step of the same stage, by line.
    Step {
        /// Its line in the Dockerfile.
        line: usize,
    },
}

/// One step of the chain: the layer step itself or a metadata step before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInputs {
    /// The instruction keyword.
    pub keyword: String,
    /// Its line.
    pub line: usize,
    /// The step digest (expanded instruction, observed values, platform): with the same
    /// values, a different one means the instruction changed.
    pub step: Digest,
    /// The ARG/ENV names the step observes, with the digest of each value (`None`: unset).
    pub values: BTreeMap<String, Option<Digest>>,
    /// The digests of its inputs, in order (context sources, another stage's files...).
    pub inputs: Vec<Digest>,
    /// Context files read, by path, each with the digest of its content, mode and type; empty
    /// when there were more than [`MAX_DESCRIBED_FILES`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Digest>,
}

/// What a layer step's cache key was made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// The key the chain starts from.
    pub parent: Digest,
    /// What that key is.
    pub parent_kind: ParentKind,
    /// The metadata steps since the parent, then the step itself (last).
    pub steps: Vec<StepInputs>,
}

impl KeyInputs {
    /// The description as stored beside a record (compact JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored description; `None` when it is not one (a record of another version, or a
    /// hostile cache entry: a miss is then just not explained).
    pub fn from_json(text: &str) -> Option<KeyInputs> {
        serde_json::from_str(text).ok()
    }
}

/// Why a step's key differs from its closest earlier record's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
#[non_exhaustive]
pub enum MissReason {
    /// The base image resolved to another digest.
    BaseImageChanged,
    /// The stage this one is built `FROM` changed.
    BaseStageChanged {
        /// That stage's file index.
        stage: usize,
    },
    /// The steps before it are not the ones of the earlier record (the Dockerfile changed
    /// above it, or another Dockerfile shares the cache).
    StepsBeforeChanged,
    /// The previous layer step missed (or hit another record).
    ParentMissed {
        /// Its line.
        line: usize,
    },
    /// The value of an ARG or ENV the step (or a metadata step before it) sees changed.
    ValueChanged {
        /// The first changed name.
        name: String,
        /// Whether it is a build arg of the build (`--build-arg`), as the caller knows;
        /// [`explain_miss`] says false.
        build_arg: bool,
        /// How many more names changed.
        more: usize,
    },
    /// A context file the step reads changed (content, mode, type), appeared or went.
    FileChanged {
        /// The first changed path (in path order).
        path: String,
        /// How many more changed.
        more: usize,
    },
    /// Its sources changed (too many to list, or another stage's or image's files).
    SourcesChanged,
    /// The instruction itself changed (on this line).
    InstructionChanged {
        /// Its keyword.
        keyword: String,
        /// Its line.
        line: usize,
    },
    /// Same inputs: the entry is gone (expired, pruned, or never pushed).
    EntryGone,
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let more = |f: &mut std::fmt::Formatter<'_>, n: usize, what: &str| match n {
            0 => Ok(()),
            1 => write!(f, " (and 1 more {what})"),
            n => write!(f, " (and {n} more {what}s)"),
        };
        match self {
            MissReason::BaseImageChanged => write!(f, "base image digest changed"),
            MissReason::BaseStageChanged { stage } => write!(f, "base stage {stage} changed"),
            MissReason::StepsBeforeChanged => write!(f, "the steps before it changed"),
            MissReason::ParentMissed { line } => write!(f, "parent step (line {line}) missed"),
            MissReason::ValueChanged {
                name,
                build_arg,
                more: n,
            } => {
                let kind = if *build_arg { "build arg" } else { "variable" };
                write!(f, "{kind} {name} changed")?;
                more(f, *n, "variable")
            }
            MissReason::FileChanged { path, more: n } => {
                write!(f, "{path} changed")?;
                more(f, *n, "file")
            }
            MissReason::SourcesChanged => write!(f, "its sources changed"),
            MissReason::InstructionChanged { keyword, line } => {
                write!(f, "the {keyword} instruction on line {line} changed")
            }
            MissReason::EntryGone => write!(
                f,
                "same inputs, but no cache entry (expired, pruned or never pushed)"
            ),
        }
    }
}

/// Why `now` misses where `prev` (the closest earlier record of the same step) was recorded.
pub fn explain_miss(prev: &KeyInputs, now: &KeyInputs) -> MissReason {
    if prev.parent_kind != now.parent_kind {
        return MissReason::StepsBeforeChanged;
    }
    if prev.parent != now.parent {
        return match now.parent_kind {
            ParentKind::Image | ParentKind::Scratch => MissReason::BaseImageChanged,
            ParentKind::Stage { index } => MissReason::BaseStageChanged { stage: index },
            ParentKind::Step { line } => MissReason::ParentMissed { line },
        };
    }
    let shape = |k: &KeyInputs| {
        k.steps
            .iter()
            .map(|s| s.keyword.clone())
            .collect::<Vec<_>>()
    };
    let last = now.steps.last();
    if shape(prev) != shape(now) {
        return MissReason::InstructionChanged {
            keyword: last.map(|s| s.keyword.clone()).unwrap_or_default(),
            line: last.map(|s| s.line).unwrap_or_default(),
        };
    }
    // Earliest cause first: a metadata step before the layer step, then the step itself.
    for (before, after) in prev.steps.iter().zip(&now.steps) {
        if let Some(reason) = explain_step(before, after) {
            return reason;
        }
    }
    MissReason::EntryGone
}

fn explain_step(prev: &StepInputs, now: &StepInputs) -> Option<MissReason> {
    let names: BTreeSet<&String> = prev.values.keys().chain(now.values.keys()).collect();
    let changed: Vec<&String> = names
        .into_iter()
        .filter(|n| prev.values.get(*n) != now.values.get(*n))
        .collect();
    if let Some(first) = changed.first() {
        return Some(MissReason::ValueChanged {
            name: (*first).clone(),
            build_arg: false,
            more: changed.len() - 1,
        });
    }
    if prev.step != now.step {
        return Some(MissReason::InstructionChanged {
            keyword: now.keyword.clone(),
            line: now.line,
        });
    }
    if prev.inputs != now.inputs {
        let paths: BTreeSet<&String> = prev.files.keys().chain(now.files.keys()).collect();
        let changed: Vec<&String> = paths
            .into_iter()
            .filter(|p| prev.files.get(*p) != now.files.get(*p))
            .collect();
        return Some(match changed.first() {
            Some(first) => MissReason::FileChanged {
                path: (*first).clone(),
                more: changed.len() - 1,
            },
            None => MissReason::SourcesChanged,
        });
    }
    None
}

/// The digest a value is described by (never the value).
pub fn value_digest(value: &str) -> Digest {
    let mut encoder = crate::KeyEncoder::new("value");
    encoder.field("value", value.as_bytes());
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn step(keyword: &str, line: usize, text: &str) -> StepInputs {
        StepInputs {
            keyword: keyword.into(),
            line,
            step: d(text),
            values: BTreeMap::new(),
            inputs: vec![],
            files: BTreeMap::new(),
        }
    }

    fn inputs(steps: Vec<StepInputs>) -> KeyInputs {
        KeyInputs {
            parent: d("parent"),
            parent_kind: ParentKind::Step { line: 2 },
            steps,
        }
    }

    #[test]
    fn a_changed_build_arg_is_named_never_its_value() {
        let mut prev = step("RUN", 4, "make");
        prev.values
            .insert("GIT_SHA".into(), Some(value_digest("s3cr3t-1")));
        let mut now = prev.clone();
        now.values
            .insert("GIT_SHA".into(), Some(value_digest("s3cr3t-2")));
        now.step = d("other");
        let reason = explain_miss(&inputs(vec![prev]), &inputs(vec![now]));
        assert_eq!(
            reason,
            MissReason::ValueChanged {
                name: "GIT_SHA".into(),
                build_arg: false,
                more: 0
            }
        );
        assert_eq!(reason.to_string(), "variable GIT_SHA changed");
        let reason = MissReason::ValueChanged {
            name: "GIT_SHA".into(),
            build_arg: true,
            more: 2,
        };
        let text = reason.to_string();
        assert_eq!(text, "build arg GIT_SHA changed (and 2 more variables)");
        let json = serde_json::to_string(&reason).unwrap();
        assert!(!json.contains("s3cr3t") && !text.contains("s3cr3t"));
    }

    #[test]
    fn changed_files_are_named_with_a_count_of_the_rest() {
        let mut prev = step("COPY", 2, "COPY . /src");
        for f in ["src/main.rs", "src/lib.rs", "README", "Cargo.toml"] {
            prev.files.insert(f.into(), d(f));
        }
        prev.inputs = vec![d("all")];
        let mut now = prev.clone();
        now.inputs = vec![d("all2")];
        now.files.insert("src/main.rs".into(), d("new"));
        now.files.insert("src/new.rs".into(), d("new"));
        now.files.remove("README");
        let reason = explain_miss(&inputs(vec![prev.clone()]), &inputs(vec![now]));
        assert_eq!(reason.to_string(), "README changed (and 2 more files)");
        // Too many files to list: the sources as a whole.
        let mut big = prev.clone();
        big.files.clear();
        big.inputs = vec![d("x")];
        let mut prev_big = prev;
        prev_big.files.clear();
        assert_eq!(
            explain_miss(&inputs(vec![prev_big]), &inputs(vec![big])),
            MissReason::SourcesChanged
        );
    }

    #[test]
    fn the_parent_and_the_base_come_first() {
        let now = inputs(vec![step("RUN", 5, "x")]);
        let mut prev = now.clone();
        prev.parent = d("old parent");
        prev.steps[0].step = d("y");
        assert_eq!(
            explain_miss(&prev, &now),
            MissReason::ParentMissed { line: 2 }
        );
        let mut now_base = now.clone();
        now_base.parent_kind = ParentKind::Image;
        let mut prev_base = prev.clone();
        prev_base.parent_kind = ParentKind::Image;
        assert_eq!(
            explain_miss(&prev_base, &now_base).to_string(),
            "base image digest changed"
        );
        assert_eq!(
            explain_miss(&prev, &now_base),
            MissReason::StepsBeforeChanged
        );
    }

    #[test]
    fn a_metadata_step_before_the_layer_step_is_the_cause() {
        let mut env = step("ENV", 3, "ENV A=1");
        let prev = inputs(vec![env.clone(), step("RUN", 4, "x")]);
        env.step = d("ENV A=2");
        let now = inputs(vec![env, step("RUN", 4, "x")]);
        assert_eq!(
            explain_miss(&prev, &now).to_string(),
            "the ENV instruction on line 3 changed"
        );
        assert_eq!(explain_miss(&now, &now), MissReason::EntryGone);
    }
}
