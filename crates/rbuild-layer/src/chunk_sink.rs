//! The producer side of the write pipeline: tar bytes are gathered into fixed-size chunks,
//! hashed (the diffID) and handed over a bounded channel to the compressing thread. Used
//! buffers come back on a second channel, so the pipeline holds at most a few chunks in memory
//! whatever the layer's size.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender};

use std::time::{Duration, Instant};

use rbuild_oci::{Digest, Sha256Hasher};

use crate::profile::{Phase, WriteProfile};

/// The size of one chunk handed to the compressor.
pub(crate) const CHUNK_SIZE: usize = 256 * 1024;

/// Collects tar bytes into chunks and sends full chunks to the compressing thread.
pub(crate) struct ChunkSink<'p> {
    buf: Vec<u8>,
    profile: &'p WriteProfile,
    /// Time spent waiting for the compressor to take a chunk.
    blocked: Duration,
    /// Time spent hashing (the diffID).
    hashing: Duration,
    filled: usize,
    hasher: Sha256Hasher,
    tx: SyncSender<Vec<u8>>,
    recycled: Receiver<Vec<u8>>,
    /// Where a copy of every chunk goes ([`crate::LayerWriter::copying_tar_to`]), until its
    /// receiver hangs up.
    copy: Option<SyncSender<Vec<u8>>>,
}

impl<'p> ChunkSink<'p> {
    pub(crate) fn new(
        tx: SyncSender<Vec<u8>>,
        recycled: Receiver<Vec<u8>>,
        profile: &'p WriteProfile,
    ) -> Self {
        ChunkSink {
            buf: vec![0; CHUNK_SIZE],
            profile,
            blocked: Duration::ZERO,
            hashing: Duration::ZERO,
            filled: 0,
            copy: None,
            hasher: Sha256Hasher::new(),
            tx,
            recycled,
        }
    }

    /// Appends `data`.
    pub(crate) fn write_bytes(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = data.len().min(CHUNK_SIZE - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == CHUNK_SIZE {
                self.send_chunk()?;
            }
        }
        Ok(())
    }

    /// Appends `len` bytes read from `src` straight into the chunk buffers (no extra copy).
    /// Returns how many bytes were copied: fewer than `len` when `src` ended early.
    pub(crate) fn copy_from(&mut self, src: &mut impl Read, len: u64) -> io::Result<u64> {
        let mut copied = 0u64;
        while copied < len {
            let room = CHUNK_SIZE - self.filled;
            let want = room.min(usize::try_from(len - copied).unwrap_or(usize::MAX));
            let n = match src.read(&mut self.buf[self.filled..self.filled + want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.filled += n;
            copied += n as u64;
            if self.filled == CHUNK_SIZE {
                self.send_chunk()?;
            }
        }
        Ok(copied)
    }

    /// Also sends a copy of every chunk to `copy` (dropped at the end: the receiver's end of
    /// stream).
    pub(crate) fn copying_to(mut self, copy: Option<SyncSender<Vec<u8>>>) -> Self {
        self.copy = copy;
        self
    }

    /// Sends what is left and returns the digest and length of everything written, and the
    /// time spent hashing and waiting for the compressor (not the producer's own work).
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64, Duration)> {
        if self.filled > 0 {
            self.send_chunk()?;
        }
        // The end-of-stream marker: no data chunk is ever empty.
        let started = Instant::now();
        self.tx.send(Vec::new()).map_err(|_| stopped())?;
        let others = self.hashing + self.blocked + started.elapsed();
        let (digest, len) = self.hasher.finish();
        Ok((digest, len, others))
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.hasher.update(&self.buf[..self.filled]);
        let hashing = started.elapsed();
        self.hashing += hashing;
        self.profile.add(Phase::Hash, hashing);
        let next = match self.recycled.try_recv() {
            Ok(mut buf) => {
                buf.resize(CHUNK_SIZE, 0);
                buf
            }
            Err(_) => vec![0; CHUNK_SIZE],
        };
        let mut full = std::mem::replace(&mut self.buf, next);
        full.truncate(self.filled);
        if let Some(copy) = &self.copy {
            // A reader that stopped reading is not this layer's failure.
            if copy.send(full.clone()).is_err() {
                self.copy = None;
            }
        }
        self.filled = 0;
        let start = Instant::now();
        let sent = self.tx.send(full).map_err(|_| stopped());
        self.blocked += start.elapsed();
        sent
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the compressing thread stopped")
}
