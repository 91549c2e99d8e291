//! Where the time of a layer write goes: producing the tar (reading the files, writing
//! headers), compressing, hashing (diffID and blob digest) and writing the blob out. The
//! parts run on several threads at once, so each is the time its threads spent on it, summed:
//! they overlap in wall time and can add up to more than it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time spent in each part of the layer writes it was given to (see
/// [`LayerWriter::profiled`](crate::LayerWriter::profiled)); shared, so the threads of a
/// write add to it as they go.
#[derive(Debug, Default)]
pub struct WriteProfile {
    tar: AtomicU64,
    compress: AtomicU64,
    hash: AtomicU64,
    output: AtomicU64,
}

/// A part of a layer write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    Tar,
    Compress,
    Hash,
    Output,
}

impl WriteProfile {
    /// Producing the tar stream: walking the change set, reading file contents and metadata,
    /// writing headers (without hashing it or waiting for the compressor).
    pub fn tar(&self) -> Duration {
        read(&self.tar)
    }

    /// Compressing (summed over the compressing threads; zero for an uncompressed layer).
    pub fn compress(&self) -> Duration {
        read(&self.compress)
    }

    /// sha256 of the tar (the diffID) and of the blob (its digest).
    pub fn hash(&self) -> Duration {
        read(&self.hash)
    }

    /// Writing the blob to its destination (the store's file, and whatever tees from it).
    pub fn output(&self) -> Duration {
        read(&self.output)
    }

    pub(crate) fn add(&self, phase: Phase, time: Duration) {
        let counter = match phase {
            Phase::Tar => &self.tar,
            Phase::Compress => &self.compress,
            Phase::Hash => &self.hash,
            Phase::Output => &self.output,
        };
        counter.fetch_add(
            u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Runs `f`, adding its time to `phase`.
    pub(crate) fn time<T>(&self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.add(phase, start.elapsed());
        out
    }
}

fn read(counter: &AtomicU64) -> Duration {
    Duration::from_nanos(counter.load(Ordering::Relaxed))
}

/// A writer adding the time spent in `inner` to [`Phase::Output`].
pub(crate) struct TimedOutput<'p, W> {
    pub(crate) inner: W,
    pub(crate) profile: &'p WriteProfile,
}

impl<W: std::io::Write> std::io::Write for TimedOutput<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.profile.time(Phase::Output, || self.inner.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.profile.time(Phase::Output, || self.inner.flush())
    }
}

/// The blob's digest writer over [`TimedOutput`], adding the hashing time (its own time
/// less the output's) to [`Phase::Hash`].
pub(crate) struct TimedDigest<'p, W: std::io::Write> {
    inner: rbuild_oci::DigestWriter<TimedOutput<'p, W>>,
    profile: &'p WriteProfile,
}

impl<'p, W: std::io::Write> TimedDigest<'p, W> {
    pub(crate) fn new(out: W, profile: &'p WriteProfile) -> Self {
        TimedDigest {
            inner: rbuild_oci::DigestWriter::new(TimedOutput {
                inner: out,
                profile,
            }),
            profile,
        }
    }

    /// The digest and size of everything written.
    pub(crate) fn finish(self) -> (rbuild_oci::Digest, u64) {
        let (_, digest, size) = self.inner.finish();
        (digest, size)
    }
}

impl<W: std::io::Write> std::io::Write for TimedDigest<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let output_before = self.profile.output();
        let start = Instant::now();
        let n = self.inner.write(buf);
        let output = self.profile.output().saturating_sub(output_before);
        self.profile
            .add(Phase::Hash, start.elapsed().saturating_sub(output));
        n
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
