//! Deleting the build's scratch trees off the critical path: a stage's filesystem once no
//! step needs it, what a RUN step's merge moved aside, a step's scratch directory.
//!
//! Deleting tens of thousands of files takes seconds of journal writes (100,000 small files:
//! 9 s on the benchmark machine). A tree handed over is moved (one `rename`) into the work
//! area's `trash` directory, private like the rest of it, and a background thread deletes
//! what is there while the build goes on. The build does not wait for it: what is left when
//! the process ends is deleted by the next build's thread, or by `rbuild prune`
//! ([`empty_trash`]). Trash is never read: nothing in it looks like a tree a build could use.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

/// The name of the trash directory in the work area.
pub(crate) const TRASH: &str = "trash";

/// Moves doomed trees into the trash and wakes the thread that empties it.
pub(super) struct Reaper {
    trash: PathBuf,
    wake: Mutex<Option<Sender<()>>>,
    /// Names trees uniquely in the trash (with the process id and the time).
    moved: AtomicU64,
}

impl Reaper {
    /// A reaper over the work area's trash `trash` (created when first needed); its thread
    /// starts now, emptying what earlier builds left there.
    pub(super) fn new(trash: PathBuf) -> Reaper {
        let reaper = Reaper {
            trash,
            wake: Mutex::new(None),
            moved: AtomicU64::new(0),
        };
        if std::fs::read_dir(&reaper.trash).is_ok_and(|mut d| d.next().is_some()) {
            reaper.wake();
        }
        reaper
    }

    /// Hands `dir` over for deletion: moved into the trash, or deleted now when it cannot be.
    pub(super) fn delete(&self, dir: tempfile::TempDir) {
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            crate::timestamp::BuildTime::now().seconds,
            self.moved.fetch_add(1, Ordering::Relaxed)
        );
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.trash);
        let moved = made.and_then(|()| std::fs::rename(dir.path(), self.trash.join(&name)));
        match moved {
            Ok(()) => {
                // Moved away: nothing left for the TempDir to delete.
                let _ = dir.keep();
                self.wake();
            }
            Err(e) => {
                tracing::debug!(path = %dir.path().display(), error = %e, "not moved to the trash: deleted now");
                drop(dir);
            }
        }
    }

    /// Makes sure the emptying thread runs and will look at the trash again.
    fn wake(&self) {
        let mut wake = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = wake.as_ref() {
            if tx.send(()).is_ok() {
                return;
            }
        }
        let (tx, rx) = channel::<()>();
        let trash = self.trash.clone();
        let spawned = std::thread::Builder::new()
            .name("rbuild-reaper".into())
            .spawn(move || {
                // Empty the trash, then again each time more arrives; the thread ends when
                // the build is over (the sender dropped) and the trash is empty, or with the
                // process (what it had not deleted waits for the next build).
                loop {
                    empty_trash(&trash);
                    if rx.recv().is_err() {
                        empty_trash(&trash);
                        return;
                    }
                    while rx.try_recv().is_ok() {}
                }
            });
        match spawned {
            Ok(_) => *wake = Some(tx),
            Err(e) => {
                tracing::debug!(error = %e, "no reaper thread: emptying the trash now");
                empty_trash(&self.trash);
            }
        }
    }
}

/// Deletes everything in the trash directory `trash` (never following a symlink). Entries
/// another process deletes at the same time are skipped; failures are debug notes (the next
/// build tries again).
pub(crate) fn empty_trash(trash: &Path) {
    let Ok(root) = rbuild_fs::Root::open(trash) else {
        return;
    };
    let names = match root.read_dir("") {
        Ok(names) => names,
        Err(e) => {
            tracing::debug!(path = %trash.display(), error = %e, "trash not listed");
            return;
        }
    };
    for name in names {
        if let Err(e) = root.remove(&name) {
            tracing::debug!(path = %trash.join(&name).display(), error = %e, "not deleted from the trash");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_go_to_the_trash_and_the_trash_is_emptied() {
        let base = tempfile::tempdir().unwrap();
        let trash = base.path().join("trash");
        let outside = base.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "k").unwrap();
        let reaper = Reaper::new(trash.clone());
        let mut paths = Vec::new();
        for i in 0..5 {
            let dir = tempfile::tempdir_in(base.path()).unwrap();
            for j in 0..50 {
                std::fs::write(dir.path().join(format!("f{i}-{j}")), "x").unwrap();
            }
            // A symlink out of the tree is removed, never followed.
            std::os::unix::fs::symlink(&outside, dir.path().join("out")).unwrap();
            paths.push(dir.path().to_path_buf());
            reaper.delete(dir);
            // Moved away at once, whatever the thread has done yet.
            assert!(!paths[i].exists());
        }
        drop(reaper);
        // The thread empties the trash once the reaper is gone (or the next one does).
        let next = Reaper::new(trash.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::read_dir(&trash).unwrap().next().is_some() {
            assert!(std::time::Instant::now() < deadline, "trash not emptied");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(next);
        assert!(outside.join("keep").exists(), "nothing outside is removed");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&trash).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700, "the trash is private");
    }

    #[test]
    fn empty_trash_removes_read_only_trees() {
        let base = tempfile::tempdir().unwrap();
        let tree = base.path().join("t/a/b");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f"), "x").unwrap();
        std::fs::set_permissions(
            base.path().join("t/a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o500),
        )
        .unwrap();
        empty_trash(base.path());
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);
    }
}
