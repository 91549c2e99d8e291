//! COPY and ADD steps: the request from the instruction, the source root (context, stage or
//! image), staging, the layer.

use super::layers::LayerSource;
use super::{Env, StageResult};
use crate::copy::{
    self,
    chmod::Chmod,
    owner::{needs_account_files, resolve_owner},
    staging::Staging,
    CopyRequest, SourceRoot,
};
use crate::dockerignore::IgnoreMatcher;
use crate::error::BuildError;
use rbuild_dockerfile::CopySource;
use rbuild_layer::ChangeSet;
use rbuild_oci::Digest;
use rbuild_plan::Step;
use std::collections::BTreeMap;
use std::path::Path;

impl Env<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_request<'s>(
        &self,
        keyword: &'static str,
        sources: &'s [CopySource],
        dest: &'s str,
        chown: Option<&str>,
        chmod: Option<&str>,
        parents: bool,
        excludes: &[String],
        unpack: bool,
        checksum: Option<String>,
        stage: &mut StageResult,
        step: &Step,
    ) -> Result<CopyRequest<'s>, BuildError> {
        let chown = match chown {
            None => None,
            Some(spec) => {
                if needs_account_files(spec) {
                    self.ensure_rootfs(stage)?;
                }
                Some(
                    resolve_owner(spec, stage.rootfs.as_ref().map(|t| t.path()))
                        .map_err(|e| self.step_error(step, format!("{keyword} failed: {e}")))?,
                )
            }
        };
        let chmod = chmod
            .map(Chmod::parse)
            .transpose()
            .map_err(|e| self.step_error(step, format!("{keyword} failed: {e}")))?;
        let excludes = IgnoreMatcher::parse(&excludes.join("\n"))
            .map_err(|e| self.step_error(step, format!("{keyword} failed: {e}")))?;
        Ok(CopyRequest {
            keyword,
            sources,
            dest,
            workdir: stage.image.config.config.working_dir.clone(),
            chown,
            chmod,
            parents,
            excludes,
            unpack,
            checksum,
            time: self.time.seconds,
            url_options: self
                .builder
                .remote
                .as_ref()
                .map(|r| r.client().options().clone()),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_step(
        &self,
        step: &Step,
        request: &CopyRequest<'_>,
        from: Option<FromSource>,
        link: bool,
        stage: &mut StageResult,
        results: &BTreeMap<usize, StageResult>,
        record: Option<&Digest>,
    ) -> Result<(Digest, bool), BuildError> {
        if !link {
            self.ensure_rootfs(stage)?;
        }
        let tree_root;
        let image_dir;
        // Not root: files on disk carry this user's ids, not the image's; the layers say.
        let is_root = rustix::process::geteuid().is_root();
        let mut recorded = rbuild_layer::OwnerMap::new();
        let open_tree = |dir: &Path| rbuild_fs::Root::open(dir).map_err(BuildError::fs(dir));
        let root = match &from {
            None => SourceRoot {
                root: self.context.fs_root(),
                label: "build context".into(),
                ignore: Some(self.context.ignore()),
                keep_owner: false,
                owners: None,
            },
            Some(FromSource::Stage(index)) => {
                let source = results
                    .get(index)
                    .ok_or_else(|| BuildError::Plan(format!("stage {index} was not built")))?;
                let dir = self.stage_root(source)?;
                tree_root = open_tree(&dir)?;
                if !is_root {
                    recorded = self.layer_owners(&source.layers, false)?;
                }
                SourceRoot {
                    root: &tree_root,
                    label: format!("stage {}", source.label),
                    ignore: None,
                    keep_owner: true,
                    owners: (!is_root).then_some(&recorded),
                }
            }
            Some(FromSource::Image(reference)) => {
                let (_, manifest, config) = self
                    .find_image(reference, &rbuild_oci::Platform::host())
                    .map_err(|e| BuildError::BaseImage {
                        reference: reference.clone(),
                        reason: e.to_string(),
                    })?;
                image_dir = self.materialise(&manifest.layers, &config.rootfs.diff_ids)?;
                tree_root = open_tree(image_dir.path())?;
                if !is_root {
                    recorded = self.layer_owners(&manifest.layers, false)?;
                }
                SourceRoot {
                    root: &tree_root,
                    label: format!("image {reference}"),
                    ignore: None,
                    keep_owner: true,
                    owners: (!is_root).then_some(&recorded),
                }
            }
        };
        let dir = self.scratch_dir("copy")?;
        let rootfs = if link {
            None
        } else {
            stage.rootfs.as_ref().map(|t| t.path())
        };
        let mut staging = Staging::new(
            dir.path().join("tree"),
            rootfs,
            request.chown.unwrap_or((0, 0)),
            self.time.seconds,
        );
        if let Some(chmod) = &request.chmod {
            staging.set_new_dir_mode(chmod.apply(0o755, true));
        }
        if rootfs.is_some() && !is_root {
            staging.set_stage_owners(self.layer_owners(&stage.layers, true)?);
        }
        std::fs::create_dir(staging.root()).map_err(BuildError::io("create", staging.root()))?;
        let started = std::time::Instant::now();
        copy::stage_copy(request, &root, &mut staging).map_err(|m| self.step_error(step, m))?;
        let (tree, owners) = staging.finish_with_owners()?;
        stage.phases.run = started.elapsed();
        let mut text = String::from(request.keyword);
        for source in request.sources {
            match source {
                CopySource::Path(p) => text.push_str(&format!(" {p}")),
                CopySource::Heredoc(h) => text.push_str(&format!(" <<{}", h.name)),
            }
        }
        text.push_str(&format!(" {}", request.dest));
        let started = std::time::Instant::now();
        let changes = ChangeSet::whole_tree(&tree)?;
        stage.phases.snapshot = started.elapsed();
        let layer = LayerSource {
            root: &tree,
            changes: &changes,
            owners: &owners,
        };
        let done = self.commit_layer_with_owners(stage, &layer, text, true, record)?;
        // The staging tree is the layer's content as applying it makes it (owners included:
        // the builder's own when it is not root, as an apply by it gives).
        self.keep_step_result(stage, crate::runner::AfterRun::MergeUpper, &tree);
        self.reaper.delete(dir);
        Ok(done)
    }
}

impl Env<'_> {
    /// The owners the layers give their paths (directories only with `dirs_only`; the last
    /// layer's word for each), read from the tar headers.
    fn layer_owners(
        &self,
        layers: &[rbuild_oci::Descriptor],
        dirs_only: bool,
    ) -> Result<rbuild_layer::OwnerMap, BuildError> {
        let mut owners = rbuild_layer::OwnerMap::new();
        self.ensure_blobs(layers)?;
        for layer in layers {
            let blob = self.builder.store.open_blob(&layer.digest)?;
            let (_, plain) = rbuild_layer::decompressed(blob)?;
            let bad = |e: std::io::Error| BuildError::Io {
                what: "read the layer",
                path: layer.digest.to_string().into(),
                source: e,
            };
            let mut archive = tar::Archive::new(plain);
            for entry in archive.entries().map_err(bad)? {
                let entry = entry.map_err(bad)?;
                let header = entry.header();
                if dirs_only && header.entry_type() != tar::EntryType::Directory {
                    continue;
                }
                let path: std::path::PathBuf = entry
                    .path()
                    .map_err(bad)?
                    .components()
                    .filter(|c| matches!(c, std::path::Component::Normal(_)))
                    .collect();
                let (Ok(uid), Ok(gid)) = (header.uid(), header.gid()) else {
                    continue;
                };
                let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
                    continue;
                };
                owners.insert(path, (uid, gid));
            }
        }
        Ok(owners)
    }
}

pub(super) enum FromSource {
    Stage(usize),
    Image(String),
}
