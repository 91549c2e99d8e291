//! Deleting the build's scratch trees off the critical path: a stage's filesystem once no
//! step needs it, what a RUN step's merge moved aside. Deleting tens of thousands of files
//! takes seconds of journal writes; one thread does it while the build goes on, and the build
//! waits for it only at its very end ([`Reaper::finish`], or when the reaper is dropped), so
//! that nothing it made is left behind when it returns.

use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// A directory to delete: removed (never following a symlink) when dropped, as
/// [`tempfile::TempDir`] does.
pub(super) type Doomed = tempfile::TempDir;

/// One background thread deleting the directories it is given, in order.
pub(super) struct Reaper {
    queue: Mutex<Option<Sender<Doomed>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reaper {
    /// A reaper whose thread starts with the first directory given.
    pub(super) fn new() -> Reaper {
        Reaper {
            queue: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// Hands `dir` over for deletion; if no thread can be started, it is deleted now.
    pub(super) fn delete(&self, dir: Doomed) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_none() {
            let (tx, rx) = channel::<Doomed>();
            let spawned = std::thread::Builder::new()
                .name("rbuild-reaper".into())
                .spawn(move || {
                    for dir in rx {
                        let path = dir.path().to_path_buf();
                        if let Err(e) = dir.close() {
                            tracing::warn!(path = %path.display(), error = %e, "scratch directory not removed");
                        }
                    }
                });
            match spawned {
                Ok(handle) => {
                    *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
                    *queue = Some(tx);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no reaper thread: deleting in place");
                    drop(dir);
                    return;
                }
            }
        }
        if let Some(tx) = queue.as_ref() {
            // The thread only stops once the queue is closed: a send cannot fail before.
            if let Err(returned) = tx.send(dir) {
                drop(returned.0);
            }
        }
    }

    /// Waits until every directory handed over is deleted.
    pub(super) fn finish(&self) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(handle) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if handle.join().is_err() {
                tracing::warn!("the scratch reaper panicked; the build's work directory is removed with the build");
            }
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_is_gone_once_finished() {
        let base = tempfile::tempdir().unwrap();
        let reaper = Reaper::new();
        let mut paths = Vec::new();
        for i in 0..5 {
            let dir = tempfile::tempdir_in(base.path()).unwrap();
            for j in 0..50 {
                std::fs::write(dir.path().join(format!("f{i}-{j}")), "x").unwrap();
            }
            // A symlink out of the tree is removed, not followed.
            std::os::unix::fs::symlink(base.path(), dir.path().join("out")).unwrap();
            paths.push(dir.path().to_path_buf());
            reaper.delete(dir);
        }
        reaper.finish();
        for p in &paths {
            assert!(!p.exists(), "{} left", p.display());
        }
        assert!(base.path().exists());
        // Usable again after finishing (a new thread).
        let dir = tempfile::tempdir_in(base.path()).unwrap();
        let p = dir.path().to_path_buf();
        reaper.delete(dir);
        drop(reaper);
        assert!(!p.exists());
    }
}
