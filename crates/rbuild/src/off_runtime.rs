//! Blocking calls that are safe inside an async runtime. [`Builder::build`](crate::Builder::build)
//! and [`Remote`](crate::Remote)'s methods block, and the registry client runs on a runtime of
//! its own: called from a task of the caller's tokio runtime (`#[tokio::main]`), blocking there
//! would panic ("Cannot start a runtime from within a runtime"). Such calls run on a thread of
//! their own instead, the calling task's thread waiting for it.

/// Runs `work` here, or on a scoped thread when this thread is inside a tokio runtime.
pub(crate) fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    tracing::debug!("called inside an async runtime: running on a thread of its own");
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
