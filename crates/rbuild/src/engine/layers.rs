//! Layers of a stage: written into the store, applied to the stage's filesystem, squashed.

use super::layer_upload::{LayerUpload, UploadTee};
use super::{Env, StageResult};
use crate::error::BuildError;
use crate::history;
use crate::request::ImageFormat;
use crate::runner::AfterRun;
use rbuild_layer::{ChangeSet, LayerInfo, LayerWriter, WriteProfile};
use rbuild_oci::{Descriptor, Digest, Reference};
use rbuild_store::CacheRecord;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stage's filesystem on disk and how many of the stage's layers it holds: layers recorded
/// after it was made (cache hits) are applied only when a later step needs the files.
pub(super) struct Tree {
    dir: tempfile::TempDir,
    applied: usize,
}

impl Tree {
    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory, for deleting.
    pub fn into_dir(self) -> tempfile::TempDir {
        self.dir
    }
}

/// A step's layer as the stage records it: made now or reused from a cache record.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StepLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    pub created_by: String,
    pub layer_op: bool,
    /// The history time the layer got when it was built (`None`: this build's time).
    pub created: Option<String>,
}

/// What a layer is written from: a tree, the changes in it, and owners to record instead of
/// the files' (a builder that is not root cannot give files their owners).
pub(super) struct LayerSource<'a> {
    /// The tree.
    pub root: &'a Path,
    /// The changed paths.
    pub changes: &'a ChangeSet,
    /// Owners by path relative to `root`.
    pub owners: &'a rbuild_layer::OwnerMap,
}

impl Env<'_> {
    /// Writes a layer into the store (owners from `layer.owners` where given, else the
    /// files'), records it in the stage and, under `record`, in the step cache.
    pub(super) fn commit_layer_with_owners(
        &self,
        stage: &mut StageResult,
        layer: &LayerSource<'_>,
        created_by: String,
        layer_op: bool,
        record: Option<&Digest>,
    ) -> Result<(Digest, bool), BuildError> {
        let keyword = created_by.split(' ').next().unwrap_or_default();
        let (descriptor, diff_id) = self.store_layer(stage, keyword, |writer, out| {
            writer.write_with_owners(layer.root, layer.changes, layer.owners, out)
        })?;
        let digest = descriptor.digest.clone();
        let step_layer = StepLayer {
            descriptor,
            diff_id,
            created_by,
            layer_op,
            created: Some(self.created.to_string()),
        };
        self.add_step_layer(stage, step_layer, record);
        Ok((digest, false))
    }

    /// Writes a layer with `write` (given the writer for the stage: compressed, or not for a
    /// layer that stays local) into the store, streaming it to the registry when it is part
    /// of the pushed image. Returns its descriptor and diffID.
    fn store_layer(
        &self,
        stage: &mut StageResult,
        keyword: &str,
        write: impl FnOnce(
            &LayerWriter,
            UploadTee<'_, &mut rbuild_store::BlobWriter>,
        ) -> Result<LayerInfo, rbuild_layer::LayerError>,
    ) -> Result<(Descriptor, Digest), BuildError> {
        let store = &self.builder.store;
        let layer_writer = match self.layer_stays_local(stage, keyword) {
            true => &self.local_layer_writer,
            false => self.layer_writer,
        };
        let mut upload = match (&self.stream_to, &self.builder.remote, stage.final_image) {
            (Some(to), Some(remote), true) => LayerUpload::start(remote, to)
                .map_err(|e| tracing::warn!(error = %e, "layer not streamed to the registry"))
                .ok(),
            _ => None,
        };
        let profile = Arc::new(WriteProfile::default());
        let mut writer = store.blob_writer()?;
        // The report's scan of a final layer reads its tar as it is written.
        let scanner = self
            .layer_scan
            .filter(|_| stage.final_image)
            .map(crate::attest_sink::TarScanner::start);
        let stage_writer = layer_writer.profiled(profile.clone());
        let stage_writer = match &scanner {
            Some(scanner) => stage_writer.copying_tar_to(scanner.sender()),
            None => stage_writer,
        };
        let info = write(
            &stage_writer,
            UploadTee {
                out: &mut writer,
                upload: upload.as_mut(),
            },
        )?;
        drop(stage_writer);
        if let Some(scanner) = scanner {
            scanner.finish(store, &info.diff_id);
        }
        let committing = Instant::now();
        let (digest, size) = writer.commit(Some(&info.digest), Some(info.size))?;
        if !self.lease.claim(std::slice::from_ref(&digest))? {
            return Err(BuildError::Plan(format!(
                "layer {digest} vanished from the store as it was written (removed by hand?)"
            )));
        }
        let phases = &mut stage.phases;
        phases.tar += profile.tar();
        phases.compress += profile.compress();
        phases.hash += profile.hash();
        // The blob's writes include the upload queue's waits, counted as upload.
        let waited = upload.as_ref().map_or(Duration::ZERO, |u| u.waited());
        phases.store_write += profile.output().saturating_sub(waited) + committing.elapsed();
        phases.upload += waited;
        if let Some(upload) = upload {
            let cached_remotely = self
                .registry_cache
                .as_ref()
                .is_some_and(|c| c.kinds.wants(keyword));
            if cached_remotely {
                // The registry cache's entry mounts the blob from the image's repository,
                // which it can only once the upload is finished.
                let finishing = Instant::now();
                upload.finish_or_warn(&digest);
                stage.phases.upload += finishing.elapsed();
            } else {
                // The registry checks and commits the blob while the next step runs; the
                // push waits for it (`FinishingUploads::wait`).
                self.finishing_uploads.start(upload, digest.clone());
            }
        }
        let media_type = match self.format {
            ImageFormat::Oci => info.media_type.clone(),
            ImageFormat::Docker => {
                rbuild_layer::docker_media_type(layer_writer.options().compression)
            }
        };
        tracing::debug!(%digest, size, "layer committed");
        Ok((Descriptor::new(media_type, digest, size), info.diff_id))
    }

    /// Adds a step's new layer to the stage and records it under `record` in the step cache
    /// (and the registry cache, for the kinds it keeps).
    fn add_step_layer(&self, stage: &mut StageResult, layer: StepLayer, record: Option<&Digest>) {
        let store = &self.builder.store;
        if let Some(record) = record {
            let mut entry = CacheRecord {
                descriptors: vec![layer.descriptor.clone()],
                ..CacheRecord::default()
            };
            let notes = [
                ("diff_id", layer.diff_id.to_string()),
                ("created_by", layer.created_by.clone()),
                ("layer_op", layer.layer_op.to_string()),
                (
                    "created",
                    layer
                        .created
                        .clone()
                        .unwrap_or_else(|| self.created.to_string()),
                ),
                // For `--cache-ttl` (the history time may be SOURCE_DATE_EPOCH's).
                (
                    "recorded",
                    crate::timestamp::BuildTime::now().seconds.to_string(),
                ),
            ];
            for (name, value) in notes {
                entry.annotations.insert(name.into(), value);
            }
            if let Err(e) = store.put_cache_record(record, &entry) {
                tracing::warn!(%record, error = %e, "step cache record not written");
            }
            if let Some(cache) = &self.registry_cache {
                let keyword = layer.created_by.split(' ').next().unwrap_or_default();
                if cache.kinds.wants(keyword) {
                    cache.push(store, record, layer.clone(), &stage.image.config);
                }
            }
        }
        self.record_layer(stage, layer);
    }

    /// A step of the built image whose layer is not in the cache, but whose uncompressed
    /// layer is (the same step ran in a stage that stayed on this machine): that blob is
    /// compressed now (the same bytes as compressing while writing, see
    /// [`LayerWriter::compress_tar`]) and recorded, instead of running the step again.
    pub(super) fn try_compress_local(
        &self,
        record: Option<&Digest>,
        stage: &mut StageResult,
    ) -> Result<Option<Digest>, BuildError> {
        let Some(record) = record.filter(|_| !self.no_cache && stage.final_image) else {
            return Ok(None);
        };
        let store = &self.builder.store;
        let local = local_record_key(record);
        let Ok(Some(entry)) = store.get_cache_record(&local) else {
            return Ok(None);
        };
        let Some(recorded) = super::cache::recorded_layer(&entry) else {
            return Ok(None);
        };
        let (plain, diff_id) = (&recorded.descriptor, recorded.diff_id.clone());
        // Only this crate's own uncompressed layers, whose digest is their diffID.
        if plain.digest != diff_id {
            return Ok(None);
        }
        // Claimed under the store lock: a prune running now keeps it while it is read.
        if !self.lease.claim(std::slice::from_ref(&plain.digest))? {
            return Ok(None);
        }
        let keyword = recorded.created_by.split(' ').next().unwrap_or_default();
        let blob = store.open_blob(&plain.digest)?;
        let (descriptor, compressed_diff_id) =
            self.store_layer(stage, keyword, |writer, out| {
                writer.compress_tar(std::io::BufReader::new(blob), out)
            })?;
        if compressed_diff_id != diff_id {
            // The stored blob is not what its record says: build the step instead.
            tracing::warn!(record = %local, "uncompressed layer does not match its record");
            return Ok(None);
        }
        tracing::debug!(%record, digest = %descriptor.digest, "compressed a local layer for the image");
        let digest = descriptor.digest.clone();
        let layer = StepLayer {
            descriptor,
            diff_id,
            ..recorded
        };
        self.add_step_layer(stage, layer, Some(record));
        Ok(Some(digest))
    }

    /// Whether a layer of `stage` made by a `keyword` step never leaves the machine: its stage
    /// is not part of the built image and the registry cache does not export such layers.
    /// Such layers are stored uncompressed (compressing them would be wasted work).
    pub(super) fn layer_stays_local(&self, stage: &StageResult, keyword: &str) -> bool {
        !stage.final_image
            && !self
                .registry_cache
                .as_ref()
                .is_some_and(|c| c.kinds.wants(keyword))
    }

    /// The key of the record of a `keyword` step's layer in `stage`: uncompressed layers are
    /// recorded apart from compressed ones (same step, another blob).
    pub(super) fn layer_record_key(
        &self,
        stage: &StageResult,
        keyword: &str,
        key: &Digest,
    ) -> Digest {
        let record = self.record_key(key);
        match self.layer_stays_local(stage, keyword) {
            true => local_record_key(&record),
            false => record,
        }
    }

    /// Adds a layer to the stage (layers, diffIDs, history, with the time it was built).
    /// Nothing is downloaded or unpacked: [`Env::ensure_rootfs`] applies it when a later
    /// step needs the files.
    pub(super) fn record_layer(&self, stage: &mut StageResult, layer: StepLayer) {
        let created = layer.created.as_deref().unwrap_or(self.created);
        let entry = history::entry(layer.created_by, true, layer.layer_op, created);
        stage.layers.push(layer.descriptor);
        stage.image.config.rootfs.diff_ids.push(layer.diff_id);
        stage.image.config.history.push(entry);
    }

    /// `--single-snapshot`: replaces the stage's own layers by one layer of everything they
    /// changed over the base (deletions as whiteouts); their history entries stay, all but
    /// the last layer entry marked empty.
    pub(super) fn squash(&self, stage: &mut StageResult) -> Result<(), BuildError> {
        let own = stage.layers.len() - stage.base_layers;
        if own <= 1 {
            return Ok(());
        }
        let dir = self.materialise(
            &stage.layers[..stage.base_layers],
            &stage.image.config.rootfs.diff_ids[..stage.base_layers],
        )?;
        self.ensure_blobs(&stage.layers[stage.base_layers..])?;
        let before = rbuild_layer::TreeScan::scan(dir.path())?;
        let own_diff_ids = &stage.image.config.rootfs.diff_ids[stage.base_layers..];
        for (layer, diff_id) in stage.layers[stage.base_layers..].iter().zip(own_diff_ids) {
            self.apply_checked(layer, diff_id, dir.path())?;
        }
        let after = rbuild_layer::TreeScan::scan(dir.path())?;
        let changes = rbuild_layer::diff(&before, &after);
        let store = &self.builder.store;
        let mut writer = store.blob_writer()?;
        let info = self.layer_writer.write(dir.path(), &changes, &mut writer)?;
        let (digest, size) = writer.commit(Some(&info.digest), Some(info.size))?;
        let media_type = match self.format {
            ImageFormat::Oci => info.media_type.clone(),
            ImageFormat::Docker => {
                rbuild_layer::docker_media_type(self.layer_writer.options().compression)
            }
        };
        stage.layers.truncate(stage.base_layers);
        stage.layers.push(Descriptor::new(media_type, digest, size));
        let diff_ids = &mut stage.image.config.rootfs.diff_ids;
        diff_ids.truncate(stage.base_layers);
        diff_ids.push(info.diff_id);
        let own_history = &mut stage.image.config.history[stage.base_history..];
        if let Some(last) = own_history.iter().rposition(|h| !h.empty_layer) {
            for (i, h) in own_history.iter_mut().enumerate() {
                h.empty_layer = h.empty_layer || i != last;
            }
        }
        Ok(())
    }

    pub(super) fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir, BuildError> {
        tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(self.scratch)
            .map_err(BuildError::io("create a directory in", self.scratch))
    }

    /// After a step's layer is recorded: makes the stage's filesystem hold the step's result
    /// the cheap way when that is the same as applying the layer (a RUN changed it in place;
    /// a RUN's upper dir, or a COPY's staging tree, holds the layer's files as an apply would
    /// make them and is moved in), so that the next step does not apply the layer just
    /// written. A merge that fails leaves the filesystem unusable: it is dropped and made
    /// again from the layers when a step needs it.
    pub(super) fn keep_step_result(&self, stage: &mut StageResult, after: AfterRun, upper: &Path) {
        let started = Instant::now();
        let layers = stage.layers.len();
        let Some(tree) = stage.rootfs.as_mut().filter(|t| t.applied + 1 == layers) else {
            return;
        };
        match after {
            AfterRun::ApplyLayer => {}
            AfterRun::InPlace => tree.applied = layers,
            AfterRun::MergeUpper => {
                let merged = self.scratch_dir("trash").and_then(|trash| {
                    let merged =
                        rbuild_layer::merge_overlay_upper(upper, tree.path(), trash.path());
                    self.reaper.delete(trash);
                    Ok(merged?)
                });
                match merged {
                    Ok(report) => {
                        tracing::debug!(?report, "step's files moved into the stage's filesystem");
                        tree.applied = layers;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the step's files could not be moved into the stage's filesystem; it is made again from the layers");
                        if let Some(tree) = stage.rootfs.take() {
                            self.reaper.delete(tree.into_dir());
                        }
                    }
                }
            }
        }
        stage.phases.apply += started.elapsed();
    }

    /// Makes the stage's filesystem hold all its layers: materialised on first need, and
    /// the layers recorded since (cache hits) applied once a step needs them.
    pub(super) fn ensure_rootfs(&self, stage: &mut StageResult) -> Result<(), BuildError> {
        let started = Instant::now();
        let diff_ids = &stage.image.config.rootfs.diff_ids;
        self.bring_up_to_date(&mut stage.rootfs, &stage.layers, diff_ids)?;
        stage.phases.apply += started.elapsed();
        Ok(())
    }

    /// Makes `tree` hold all of `layers`: a new tree of them if there is none, else the ones
    /// it lacks applied (after downloading those the store lacks).
    pub(super) fn bring_up_to_date(
        &self,
        tree: &mut Option<Tree>,
        layers: &[Descriptor],
        diff_ids: &[Digest],
    ) -> Result<(), BuildError> {
        match tree {
            None => {
                *tree = Some(Tree {
                    dir: self.materialise(layers, diff_ids)?,
                    applied: layers.len(),
                });
            }
            Some(tree) if tree.applied < layers.len() => {
                let (pending, pending_ids) = (&layers[tree.applied..], &diff_ids[tree.applied..]);
                self.ensure_blobs(pending)?;
                for (layer, diff_id) in pending.iter().zip(pending_ids) {
                    self.apply_checked(layer, diff_id, tree.dir.path())
                        .map_err(|e| self.blame_cache_entry(layer, e))?;
                }
                tree.applied = layers.len();
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Applies `layers` from the store onto a fresh directory, each checked against its media
    /// type and its entry of `diff_ids` (the image config's) as it is unpacked. A layer that
    /// is not what the image says fails the build, and the partly unpacked directory is
    /// removed.
    pub(super) fn materialise(
        &self,
        layers: &[Descriptor],
        diff_ids: &[Digest],
    ) -> Result<tempfile::TempDir, BuildError> {
        if layers.len() != diff_ids.len() {
            // The store refuses such images: this would be a bug in the engine's bookkeeping.
            return Err(BuildError::Plan(format!(
                "internal error: {} layers but {} diffIDs to check them against",
                layers.len(),
                diff_ids.len()
            )));
        }
        self.ensure_blobs(layers)?;
        let dir = self.scratch_dir("rootfs")?;
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            self.apply_checked(layer, diff_id, dir.path())
                .map_err(|e| self.blame_cache_entry(layer, e))?;
        }
        Ok(dir)
    }

    /// Applies the store's blob `layer` onto `dir`, checked against its media type and
    /// `diff_id` as it is unpacked (base layers, registry-cache layers and our own alike).
    fn apply_checked(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        dir: &Path,
    ) -> Result<(), BuildError> {
        let blob = self.builder.store.open_blob(&layer.digest)?;
        let image_layer = rbuild_layer::ImageLayer {
            digest: &layer.digest,
            media_type: &layer.media_type,
            diff_id,
        };
        rbuild_layer::apply_image_layer(std::io::BufReader::new(blob), dir, &image_layer, true)?;
        Ok(())
    }

    /// An error applying `layer`, said to come from the registry cache entry that described
    /// it (a lying or damaged entry), with what to do; other errors as they are.
    fn blame_cache_entry(&self, layer: &Descriptor, error: BuildError) -> BuildError {
        let Some(cache) = &self.registry_cache else {
            return error;
        };
        if self.blob_holder(&layer.digest).as_ref() != Some(cache.repo()) {
            return error;
        }
        BuildError::Registry(format!(
            "registry cache {}: the entry for layer {} does not describe it ({error}); delete \
             the cache repository's tags (or the repository) or build with --no-cache",
            cache.repo(),
            layer.digest
        ))
    }

    /// Notes that the registry repository `holder` has the blob `digest` (a registry cache
    /// entry's layer, a base image's layer left remote).
    pub(super) fn add_blob_source(&self, digest: &Digest, holder: &Reference) {
        self.blob_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.clone(), holder.clone());
    }

    /// The registry repository known to hold the blob `digest`.
    pub(super) fn blob_holder(&self, digest: &Digest) -> Option<Reference> {
        self.blob_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned()
    }

    /// Downloads those of `layers` the store lacks from the repositories known to hold them.
    pub(super) fn ensure_blobs(&self, layers: &[Descriptor]) -> Result<(), BuildError> {
        let store = &self.builder.store;
        let mut fetches = Vec::new();
        for layer in layers {
            if store.has_blob(&layer.digest) {
                continue;
            }
            match (self.blob_holder(&layer.digest), &self.builder.remote) {
                (Some(holder), Some(remote)) => fetches.push((remote, holder, layer)),
                _ => {
                    return Err(BuildError::Registry(format!(
                        "layer {} is neither in the store nor in a known registry repository",
                        layer.digest
                    )))
                }
            }
        }
        // The layers under a step that runs come down at once (a few at a time); they are
        // unpacked in order as they are applied.
        for batch in fetches.chunks(PARALLEL_FETCHES) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(remote, holder, layer)| {
                        scope.spawn(move || {
                            tracing::debug!(digest = %layer.digest, from = %holder, "fetching a layer");
                            remote.fetch_blob_into_store(store, holder, layer)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(BuildError::Registry("a layer download panicked".into()))
                        })
                    })
                    .collect::<Result<Vec<_>, BuildError>>()
            })?;
        }
        Ok(())
    }
}

/// How many layers are downloaded at once.
const PARALLEL_FETCHES: usize = 4;

/// The record of an uncompressed (local) layer made by the step whose compressed layer is
/// recorded under `record`.
fn local_record_key(record: &Digest) -> Digest {
    let mut e = rbuild_plan::KeyEncoder::new("local-layer-record");
    e.field("record", record.as_str().as_bytes());
    e.finish()
}
