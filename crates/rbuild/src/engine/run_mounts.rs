//! `RUN --mount`: each parsed mount turned into what the sandbox mounts (host paths ready,
//! locks held) for the duration of one step.
//!
//! - `bind`: from the context (a filtered copy when `.dockerignore` hides something), a stage
//!   or an image; `source=` resolved inside that root; read-only unless `rw` (the sandbox then
//!   gives the step a throwaway overlay). Its content feeds the step key through the plan's
//!   inputs, not here.
//! - `cache`: a directory of the store kept across builds (see [`super::cache_mount`]),
//!   seeded from a stage's `source=` when created.
//! - `secret`: from the request's secrets; a file in the step's private tmpfs and/or an
//!   environment variable (`env=`); a missing one fails with `required=true`, else is skipped.
//! - `tmpfs`; `ssh` is refused.

use super::cache_mount::CacheMountDir;
use super::tree_copy::copy_tree;
use super::{Env, StageResult};
use crate::copy::staging::resolve_in_root;
use crate::error::BuildError;
use rbuild_dockerfile::{Mount, MountType, RunInstruction};
use rbuild_plan::{Step, StepInput};
use rbuild_sandbox::{Mount as SandboxMount, MountKind};
use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

/// The sandbox mounts of one RUN step and what must stay alive while it runs.
#[derive(Debug, Default)]
pub(super) struct PreparedMounts {
    /// Mounts, in the Dockerfile's order.
    pub(super) mounts: Vec<SandboxMount>,
    /// `NAME=value` of secrets exposed with `env=` (never logged).
    pub(super) env: Vec<String>,
    /// Cache directories in use (their locks are released after the step).
    _caches: Vec<CacheMountDir>,
    /// Materialised image roots and filtered context copies, removed after the step.
    _dirs: Vec<tempfile::TempDir>,
}

impl Env<'_> {
    /// Prepares every `--mount` of `run`; `scratch` is the step's scratch dir (removed after
    /// the step), where filtered context copies for bind mounts are made. Secrets never go
    /// there: their bytes are handed to the sandbox.
    pub(super) fn prepare_mounts(
        &self,
        step: &Step,
        run: &RunInstruction,
        stage: &StageResult,
        results: &BTreeMap<usize, StageResult>,
        scratch: &Path,
    ) -> Result<PreparedMounts, BuildError> {
        let mut prepared = PreparedMounts::default();
        let mut bind_inputs = step.inputs.iter();
        let workdir = stage.image.config.config.working_dir.clone();
        for (i, mount) in run.mounts.iter().enumerate() {
            let spec = run.mount_specs.get(i).map(String::as_str).unwrap_or("");
            let fail = |reason: String| {
                self.step_error(step, format!("RUN failed: --mount={spec}: {reason}"))
            };
            let target = mount
                .target
                .as_deref()
                .map(|t| absolute_target(&workdir, t));
            match mount.kind {
                MountType::Ssh => {
                    return Err(fail(
                        "type=ssh is not supported (rbuild forwards no SSH agent)".into(),
                    ))
                }
                MountType::Tmpfs => {
                    let target = target.ok_or_else(|| fail("a target is required".into()))?;
                    prepared.mounts.push(SandboxMount {
                        target,
                        kind: MountKind::Tmpfs { size: mount.size },
                    });
                }
                MountType::Cache => {
                    let target = target.ok_or_else(|| fail("a target is required".into()))?;
                    let id = mount
                        .id
                        .clone()
                        .filter(|id| !id.is_empty())
                        .unwrap_or_else(|| target.clone());
                    let cache =
                        CacheMountDir::acquire(self.builder.store.root(), &id, mount.sharing)
                            .map_err(fail)?;
                    if cache.fresh {
                        self.seed_cache(mount, &cache.dir, results).map_err(fail)?;
                    }
                    prepared.mounts.push(SandboxMount {
                        target,
                        kind: MountKind::Cache {
                            source: cache.dir.clone(),
                            uid: mount.uid.unwrap_or(0),
                            gid: mount.gid.unwrap_or(0),
                            mode: mount.mode.unwrap_or(0o755),
                            fresh: cache.fresh,
                        },
                    });
                    prepared._caches.push(cache);
                }
                MountType::Bind => {
                    let target = target.ok_or_else(|| fail("a target is required".into()))?;
                    let input = bind_inputs.next().ok_or_else(|| {
                        fail("the plan lists no input for this bind mount".into())
                    })?;
                    let source = self
                        .bind_source(input, mount, results, scratch, &mut prepared._dirs)
                        .map_err(fail)?;
                    prepared.mounts.push(SandboxMount {
                        target,
                        kind: MountKind::Bind {
                            source,
                            readwrite: !mount.read_only,
                        },
                    });
                }
                MountType::Secret => {
                    self.secret_mount(mount, target, &mut prepared)
                        .map_err(fail)?;
                }
            }
        }
        Ok(prepared)
    }

    fn secret_mount(
        &self,
        mount: &Mount,
        target: Option<String>,
        prepared: &mut PreparedMounts,
    ) -> Result<(), String> {
        let id = [&mount.id, &mount.source]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
            .or_else(|| {
                target
                    .as_deref()
                    .and_then(|t| t.rsplit('/').next())
                    .map(String::from)
            })
            .filter(|id| !id.is_empty())
            .ok_or("a secret mount needs an id or a target")?;
        let Some(source) = self.secrets.get(&id) else {
            if mount.required {
                return Err(format!(
                    "secret {id:?} is required but was not given (--secret id={id},src=PATH)"
                ));
            }
            tracing::debug!(%id, "optional secret not given: not mounted");
            return Ok(());
        };
        let bytes = source.read().map_err(|e| format!("secret {id:?}: {e}"))?;
        if let Some(var) = mount.env.as_deref().filter(|v| !v.is_empty()) {
            let value = std::str::from_utf8(&bytes)
                .ok()
                .filter(|v| !v.contains('\0'))
                .ok_or_else(|| {
                    format!("secret {id:?} cannot go into env {var}: not text without NUL bytes")
                })?;
            prepared.env.push(format!("{var}={value}"));
        }
        let target = match (target, &mount.env) {
            (Some(t), _) => t,
            (None, Some(env)) if !env.is_empty() => return Ok(()),
            (None, _) => format!("/run/secrets/{id}"),
        };
        prepared.mounts.push(SandboxMount {
            target,
            kind: MountKind::Secret {
                // The bytes travel to the sandbox over its control socket and are written
                // only into the step's private tmpfs: never to a disk.
                content: rbuild_sandbox::SecretBytes(bytes),
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
                mode: mount.mode.unwrap_or(0o400),
            },
        });
        Ok(())
    }

    /// The host path a bind mount shows: `source=` inside the context, stage or image the
    /// plan resolved `from=` to.
    fn bind_source(
        &self,
        input: &StepInput,
        mount: &Mount,
        results: &BTreeMap<usize, StageResult>,
        scratch: &Path,
        held: &mut Vec<tempfile::TempDir>,
    ) -> Result<PathBuf, String> {
        let source = mount.source.as_deref().unwrap_or("/");
        let (root, label) = match input {
            StepInput::Context { .. } => {
                (self.context.root().to_path_buf(), "build context".into())
            }
            StepInput::Stage { index, .. } => {
                let result = results
                    .get(index)
                    .ok_or_else(|| format!("stage {index} was not built"))?;
                (
                    self.stage_root(result).map_err(|e| e.to_string())?,
                    format!("stage {}", result.label),
                )
            }
            StepInput::Image { reference, .. } => {
                let (_, manifest, config) = self
                    .find_image(reference, &rbuild_oci::Platform::host())
                    .map_err(|e| format!("image {reference}: {e}"))?;
                let dir = self
                    .materialise(&manifest.layers, &config.rootfs.diff_ids)
                    .map_err(|e| e.to_string())?;
                let root = dir.path().to_path_buf();
                held.push(dir);
                (root, format!("image {reference}"))
            }
            StepInput::Url { .. } => return Err("a URL cannot be bind-mounted".into()),
        };
        let resolved = resolve_in_root(&root, &format!("/{source}"))
            .ok_or_else(|| format!("source {source:?}: too many symlinks in {label}"))?;
        let rel = resolved.trim_start_matches('/');
        let path = if rel.is_empty() {
            root.clone()
        } else {
            root.join(rel)
        };
        let not_found = || format!("source {source:?} not found in {label}");
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(not_found());
        }
        let ignore = self.context.ignore();
        if matches!(input, StepInput::Context { .. }) && !ignore.is_empty() {
            let rel = if rel.is_empty() { "." } else { rel };
            if rel != "." && ignore.is_ignored(rel) {
                return Err(not_found());
            }
            let dir = tempfile::Builder::new()
                .prefix("bind-")
                .tempdir_in(scratch)
                .map_err(|e| format!("cannot create a copy dir in {}: {e}", scratch.display()))?;
            let copy = dir.path().join("src");
            copy_tree(&path, rel, &copy, Some(ignore), false)
                .map_err(|e| format!("copying {source:?} from the build context: {e}"))?;
            held.push(dir);
            return Ok(copy);
        }
        Ok(path)
    }

    /// A new cache directory with `from=STAGE` starts as a copy of that stage's `source=`
    /// (BuildKit seeds it the same way). Images as `from=` are not supported for seeding: the
    /// cache then starts empty, with a warning.
    fn seed_cache(
        &self,
        mount: &Mount,
        dir: &Path,
        results: &BTreeMap<usize, StageResult>,
    ) -> Result<(), String> {
        let Some(from) = mount.from.as_deref() else {
            return Ok(());
        };
        let Some(result) = results
            .values()
            .find(|r| r.label.eq_ignore_ascii_case(from))
        else {
            tracing::warn!(
                from,
                "cache mount from= an image is not seeded; it starts empty"
            );
            return Ok(());
        };
        let root = self.stage_root(result).map_err(|e| e.to_string())?;
        let source = mount.source.as_deref().unwrap_or("/");
        let resolved = resolve_in_root(&root, &format!("/{source}"))
            .ok_or_else(|| format!("source {source:?}: too many symlinks in stage {from}"))?;
        let path = root.join(resolved.trim_start_matches('/'));
        if !path.is_dir() {
            return Err(format!(
                "source {source:?} is not a directory in stage {from}"
            ));
        }
        copy_tree(&path, ".", dir, None, true)
            .map_err(|e| format!("seeding the cache from stage {from}: {e}"))
    }

    /// The finished stage's filesystem, materialised on first use (shared with `COPY --from`).
    pub(super) fn stage_root(&self, result: &StageResult) -> Result<PathBuf, BuildError> {
        let mut guard = result.frozen.lock().unwrap_or_else(|e| e.into_inner());
        let diff_ids = &result.image.config.rootfs.diff_ids;
        self.bring_up_to_date(&mut guard, &result.layers, diff_ids)?;
        Ok(guard
            .as_ref()
            .map(|t| t.path().to_path_buf())
            .unwrap_or_default())
    }
}

/// A mount target as BuildKit takes it: relative to the working directory, lexically cleaned
/// (the WORKDIR rule).
fn absolute_target(workdir: &str, target: &str) -> String {
    rbuild_plan::normalize_workdir(workdir, target)
}

#[cfg(test)]
mod tests {
    use super::absolute_target;

    #[test]
    fn targets_are_taken_from_the_workdir_and_cleaned() {
        assert_eq!(absolute_target("/app", "cache"), "/app/cache");
        assert_eq!(absolute_target("", "cache"), "/cache");
        assert_eq!(absolute_target("/app", "/x/../y/./z/"), "/y/z");
        assert_eq!(absolute_target("/app", "../../etc"), "/etc");
    }
}
