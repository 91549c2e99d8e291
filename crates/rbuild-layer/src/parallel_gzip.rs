//! gzip on several cores, as pigz does, with output that does not depend on the number of
//! threads or on timing.
//!
//! The tar stream arrives in fixed-size chunks. Each chunk is deflated on its own (raw deflate,
//! primed with the previous chunk's last 32 KiB as dictionary, so the ratio barely suffers) and
//! ends with a sync flush, which aligns it to a byte boundary so that the pieces can simply be
//! concatenated; an empty final block, a gzip header and the CRC-32/size trailer make one
//! ordinary single-member gzip stream. The collector (the calling thread) writes pieces in order
//! and hashes them: the blob digest.
//!
//! The output is a function of the tar bytes and the level only, whatever the number of threads,
//! their speed or the sizes in which the tar arrived:
//! - chunk boundaries are fixed offsets of the tar stream (every `CHUNK_SIZE` bytes, see
//!   `ChunkSink`), however the file reads were split;
//! - each piece is compressed by a compressor created for it alone. A reused one is *not*
//!   equivalent: zlib-rs' `reset` (as zlib's `deflateReset`) clears the hash heads but keeps the
//!   previous input in its window, and the match finder reads window bytes past the current
//!   input, so a piece's bytes depended on which chunk the same worker had compressed before —
//!   that is, on scheduling (issue #12, item 5). A fresh compressor's window is zeroed.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use flate2::{Compress, FlushCompress, Status};
use rbuild_oci::Digest;

use crate::error::LayerError;
use crate::profile::{Phase, TimedDigest, WriteProfile};

/// The deflate window: how much of the previous chunk primes the next one.
const WINDOW: usize = 32 * 1024;

/// gzip header: no name, no mtime (0), OS "unknown" (255), as Go's gzip writer.
fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]
}

struct Job {
    seq: u64,
    data: Vec<u8>,
    dictionary: Vec<u8>,
}

enum Done {
    Piece {
        seq: u64,
        data: Vec<u8>,
        compressed: Vec<u8>,
    },
    Failed(String),
    /// All jobs were dispatched: how many, and whether the tar stream was complete.
    Dispatched {
        count: u64,
        complete: bool,
    },
}

/// Compresses the chunks arriving on `rx` (ended by an empty chunk) with `workers` threads and
/// writes one gzip stream to `out`; returns the digest and size of what was written.
pub(crate) fn gzip_chunks<W: Write>(
    rx: Receiver<Vec<u8>>,
    recycle: SyncSender<Vec<u8>>,
    level: u32,
    workers: usize,
    out: W,
    profile: &WriteProfile,
) -> Result<(Digest, u64), LayerError> {
    let workers = workers.max(1);
    let (job_tx, job_rx) = sync_channel::<Job>(workers * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Done>(workers * 2 + 2);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || deflate_worker(level, &job_rx, &done_tx, profile));
        }
        // Only the workers hold the job receiver: when they are all gone, dispatching stops.
        drop(job_rx);
        let dispatch_done = done_tx;
        scope.spawn(move || dispatch(rx, job_tx, dispatch_done));
        collect(
            done_rx,
            recycle,
            level,
            TimedDigest::new(out, profile),
            profile,
        )
    })
}

/// Numbers the chunks and gives each the tail of the previous one as its dictionary.
fn dispatch(rx: Receiver<Vec<u8>>, jobs: SyncSender<Job>, done: SyncSender<Done>) {
    let mut seq = 0u64;
    let mut previous_tail: Vec<u8> = Vec::new();
    let mut complete = false;
    for data in rx {
        if data.is_empty() {
            complete = true;
            break;
        }
        let tail_start = data.len().saturating_sub(WINDOW);
        let next_tail = data[tail_start..].to_vec();
        let dictionary = std::mem::replace(&mut previous_tail, next_tail);
        if jobs
            .send(Job {
                seq,
                data,
                dictionary,
            })
            .is_err()
        {
            break; // The workers are gone: the collector reports why.
        }
        seq += 1;
    }
    drop(jobs);
    let _ = done.send(Done::Dispatched {
        count: seq,
        complete,
    });
}

fn deflate_worker(
    level: u32,
    jobs: &Mutex<Receiver<Job>>,
    done: &SyncSender<Done>,
    profile: &WriteProfile,
) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let message = match profile.time(Phase::Compress, || deflate_piece(level, &job)) {
            Ok(compressed) => Done::Piece {
                seq: job.seq,
                data: job.data,
                compressed,
            },
            Err(e) => Done::Failed(e),
        };
        if done.send(message).is_err() {
            return;
        }
    }
}

/// One chunk as raw deflate blocks ending in a sync flush (byte-aligned, not final), by a
/// compressor of its own (never a reset one: see the module documentation). A chunk that
/// deflate cannot shrink ([`incompressible`]) goes in stored blocks, as zstd stores the
/// blocks it cannot compress: the same size within a few bytes, for none of the CPU.
fn deflate_piece(level: u32, job: &Job) -> Result<Vec<u8>, String> {
    let level = match incompressible(&job.data) {
        true => 0,
        false => level,
    };
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    if level > 0 && !job.dictionary.is_empty() {
        deflate
            .set_dictionary(&job.dictionary)
            .map_err(|e| format!("deflate dictionary: {e}"))?;
    }
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let start_in = deflate.total_in();
    loop {
        let consumed = (deflate.total_in() - start_in) as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity() / 2 + 1024);
        }
        let status = deflate
            .compress_vec(&job.data[consumed..], &mut out, FlushCompress::Sync)
            .map_err(|e| format!("deflate: {e}"))?;
        let consumed = (deflate.total_in() - start_in) as usize;
        // Done when all input is in and the flush fitted (output space was left over).
        if consumed == job.data.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        if status == Status::StreamEnd {
            return Err("deflate ended early".into());
        }
    }
}

/// How much of a chunk the trial compression of [`incompressible`] reads.
const TRIAL: usize = 32 * 1024;

/// Whether deflate would not shrink `data` (already compressed or random bytes), judged from
/// the data alone so that the output stays a function of the input: its bytes are spread
/// evenly over all 256 values (collision entropy, `-log2(sum p^2)`, of at least 7.97 bits a
/// byte, in integers), and its first 32 KiB do not shrink by 3 % at level 1 (no nearby
/// repeats, which a flat histogram does not rule out). Short chunks are always deflated.
fn incompressible(data: &[u8]) -> bool {
    if data.len() < 4 * TRIAL {
        return false;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let len = data.len() as u64;
    let sum_sq: u64 = counts.iter().map(|c| c * c).sum();
    // sum p^2 <= 2^-7.97, that is sum c^2 * 251 <= len^2.
    if sum_sq.saturating_mul(251) > len * len {
        return false;
    }
    let mut trial = Compress::new(flate2::Compression::new(1), false);
    // Deflate's worst case is a few bytes over its input: twice the room is plenty, and an
    // output that does not fit has not shrunk either.
    let mut out = Vec::with_capacity(2 * TRIAL);
    match trial.compress_vec(&data[..TRIAL], &mut out, FlushCompress::Finish) {
        Ok(_) => out.len() * 100 >= TRIAL * 97,
        Err(_) => false,
    }
}

/// Writes the pieces in order, then the final block and trailer.
fn collect<W: Write>(
    done: Receiver<Done>,
    recycle: SyncSender<Vec<u8>>,
    level: u32,
    mut out: TimedDigest<'_, W>,
    profile: &WriteProfile,
) -> Result<(Digest, u64), LayerError> {
    out.write_all(&header(level)).map_err(LayerError::Output)?;
    let mut crc = crc32fast::Hasher::new();
    let mut isize: u64 = 0;
    let mut waiting: BTreeMap<u64, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut next = 0u64;
    let mut expected: Option<(u64, bool)> = None;
    while expected.is_none_or(|(count, _)| next < count) {
        let message = done
            .recv()
            .map_err(|_| LayerError::Pipeline("a gzip worker stopped"))?;
        match message {
            Done::Piece {
                seq,
                data,
                compressed,
            } => {
                waiting.insert(seq, (data, compressed));
            }
            Done::Failed(reason) => {
                return Err(LayerError::Output(std::io::Error::other(reason)));
            }
            Done::Dispatched { count, complete } => expected = Some((count, complete)),
        }
        while let Some((data, compressed)) = waiting.remove(&next) {
            out.write_all(&compressed).map_err(LayerError::Output)?;
            profile.time(Phase::Compress, || crc.update(&data));
            isize += data.len() as u64;
            let _ = recycle.try_send(data);
            next += 1;
        }
    }
    if expected.is_some_and(|(_, complete)| !complete) {
        // The tar stream failed; leave the gzip stream unfinished (not a valid layer).
        return Err(LayerError::Pipeline("the tar stream ended early"));
    }
    // An empty final block (BFINAL=1, fixed Huffman, end-of-block), then CRC-32 and size.
    out.write_all(&[0x03, 0x00]).map_err(LayerError::Output)?;
    out.write_all(&crc.finalize().to_le_bytes())
        .map_err(LayerError::Output)?;
    out.write_all(&(isize as u32).to_le_bytes())
        .map_err(LayerError::Output)?;
    out.flush().map_err(LayerError::Output)?;
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};
    use std::sync::mpsc::sync_channel;

    use super::{deflate_piece, gzip_chunks, incompressible, Job, WINDOW};
    use crate::chunk_sink::{ChunkSink, CHUNK_SIZE};
    use crate::profile::WriteProfile;

    /// Compressible text-like bytes (words from a xorshift sequence), `len` of them.
    fn text(len: usize) -> Vec<u8> {
        text_seeded(len, 0x9E37_79B9_7F4A_7C15)
    }

    fn text_seeded(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: [&str; 9] = [
            "alpha", "beta", "gamma", "delta", "layer", "image", "build", "return", "struct",
        ];
        let mut x: u64 = seed;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(WORDS[(x % 9) as usize].as_bytes());
            out.push(if x % 7 == 0 { b'\n' } else { b' ' });
        }
        out.truncate(len);
        out
    }

    /// A reader that hands out at most `sizes[i % len]` bytes per call, and now and then
    /// yields or sleeps, so the compressing threads run at varied speeds against it.
    struct Uneven<'a> {
        data: &'a [u8],
        sizes: &'a [usize],
        calls: usize,
    }

    impl Read for Uneven<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let want = self.sizes[self.calls % self.sizes.len()];
            self.calls += 1;
            match self.calls % 1_009 {
                0 => std::thread::sleep(std::time::Duration::from_micros(300)),
                n if n % 5 == 0 => std::thread::yield_now(),
                _ => {}
            }
            let n = want.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Feeds `data` through a `ChunkSink` as the tar thread does (`copy_from` calls of
    /// `copy_len` bytes from a reader returning `read_sizes`) into `gzip_chunks` with
    /// `workers` threads; returns the gzip bytes.
    fn pipeline(data: &[u8], read_sizes: &[usize], copy_len: u64, workers: usize) -> Vec<u8> {
        let profile = WriteProfile::default();
        let profile = &profile;
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(6);
        let mut out = Vec::new();
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || {
                let mut sink = ChunkSink::new(tx, recycle_rx, profile);
                let mut reader = Uneven {
                    data,
                    sizes: read_sizes,
                    calls: 0,
                };
                let mut left = data.len() as u64;
                while left > 0 {
                    let n = copy_len.min(left);
                    assert_eq!(sink.copy_from(&mut reader, n).unwrap(), n);
                    left -= n;
                }
                sink.finish().unwrap()
            });
            let (digest, size) =
                gzip_chunks(rx, recycle_tx, 6, workers, &mut out, profile).unwrap();
            producer.join().unwrap();
            assert_eq!(size, out.len() as u64);
            assert_eq!(digest, rbuild_oci::Digest::sha256_of(&out));
        });
        out
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_read_sizes_timing_or_worker_count() {
        // Not a multiple of the chunk size, so the short last chunk is covered too.
        let data = text(CHUNK_SIZE * 6 + 12_345);
        let reference = pipeline(&data, &[1 << 20], 1 << 20, 1);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&reference[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == data, "the gzip stream does not round-trip");
        let cases: [(&[usize], u64); 4] = [
            (&[1], 4_093),
            (&[7, 4_093, 65_537, 3], 100_003),
            (&[CHUNK_SIZE + 1, 13], 1 << 20),
            (&[1 << 20], 511),
        ];
        for workers in [1, 2, 3, 4] {
            for (read_sizes, copy_len) in cases {
                let got = pipeline(&data, read_sizes, copy_len, workers);
                assert!(
                    got == reference,
                    "{workers} workers, reads of {read_sizes:?}, copies of {copy_len}: \
                     other bytes than 1 worker with 1 MiB reads"
                );
            }
        }
    }

    #[test]
    fn chunks_are_cut_at_fixed_offsets_whatever_the_read_sizes() {
        let data = text(CHUNK_SIZE * 3 + 77);
        for (read_sizes, copy_len) in [(&[1usize][..], 3u64), (&[5, 70_001][..], 99_999)] {
            let (tx, rx) = sync_channel::<Vec<u8>>(16);
            let (_recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(1);
            let profile = WriteProfile::default();
            let mut sink = ChunkSink::new(tx, recycle_rx, &profile);
            let mut reader = Uneven {
                data: &data,
                sizes: read_sizes,
                calls: 0,
            };
            let mut left = data.len() as u64;
            while left > 0 {
                let n = copy_len.min(left);
                sink.copy_from(&mut reader, n).unwrap();
                left -= n;
            }
            sink.finish().unwrap();
            let lens: Vec<usize> = rx.iter().map(|c| c.len()).collect();
            assert_eq!(lens, [CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE, 77, 0]);
        }
    }

    #[test]
    fn a_piece_is_the_same_whatever_its_thread_compressed_before() {
        // With these two inputs, a compressor reset after compressing `a` (instead of one made
        // for `b`) gives other bytes for `b`: the reset keeps `a` in its window.
        let a = text_seeded(CHUNK_SIZE, 134);
        let b = text_seeded(118_981, 252);
        let job_a = Job {
            seq: 0,
            data: a.clone(),
            dictionary: Vec::new(),
        };
        let job_b = Job {
            seq: 1,
            data: b,
            dictionary: a[a.len() - WINDOW..].to_vec(),
        };
        let alone = std::thread::scope(|s| {
            s.spawn(|| deflate_piece(6, &job_b).unwrap())
                .join()
                .unwrap()
        });
        let after_a = std::thread::scope(|s| {
            s.spawn(|| {
                deflate_piece(6, &job_a).unwrap();
                deflate_piece(6, &job_b).unwrap()
            })
            .join()
            .unwrap()
        });
        assert!(
            alone == after_a,
            "the piece depends on the thread's previous job"
        );
    }

    /// xorshift bytes: what deflate cannot shrink.
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn only_chunks_deflate_cannot_shrink_are_judged_incompressible() {
        assert!(incompressible(&random(CHUNK_SIZE, 7)));
        // A tar header's zeros among compressed data do not change the verdict.
        let mut with_header = random(CHUNK_SIZE, 8);
        with_header[1000..1512].fill(0);
        assert!(incompressible(&with_header));
        assert!(!incompressible(&text(CHUNK_SIZE)));
        // A flat histogram with near repeats (4 KiB of random bytes, over and over): deflate
        // shrinks it, so it is deflated.
        let block = random(4096, 9);
        let repeated: Vec<u8> = block.iter().cycle().take(CHUNK_SIZE).copied().collect();
        assert!(!incompressible(&repeated));
        // Short chunks are always deflated.
        assert!(!incompressible(&random(1000, 10)));
    }

    #[test]
    fn stored_chunks_round_trip_and_keep_the_bytes_a_function_of_the_input() {
        // Random, text and repeated-random chunks, and a short random tail.
        let mut data = random(CHUNK_SIZE * 2, 11);
        data.extend(text(CHUNK_SIZE));
        let block = random(4096, 12);
        data.extend(block.iter().cycle().take(CHUNK_SIZE).copied());
        data.extend(random(5000, 13));
        let one = pipeline(&data, &[1 << 20], 1 << 20, 1);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&one[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == data, "the gzip stream does not round-trip");
        for workers in [2, 3] {
            assert!(pipeline(&data, &[4093, 7], 100_003, workers) == one);
        }
        // Stored random chunks cost a few bytes each; the others shrank.
        let stored_overhead = 64;
        assert!(
            one.len() < CHUNK_SIZE * 2 + 5000 + 2 * stored_overhead + CHUNK_SIZE / 2,
            "{} bytes",
            one.len()
        );
    }
}
