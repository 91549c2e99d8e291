//! gzip on several cores, as pigz does, with output that does not depend on the number of
//! threads or on timing.
//!
//! The tar stream arrives in fixed-size chunks. Each chunk is deflated on its own (raw deflate,
//! primed with the previous chunk's last 32 KiB as dictionary, so the ratio barely suffers) and
//! ends with a sync flush, which aligns it to a byte boundary so that the pieces can simply be
//! concatenated; an empty final block, a gzip header and the CRC-32/size trailer make one
//! ordinary single-member gzip stream. Chunk boundaries depend only on the data, so the same tar
//! always gives the same bytes. The collector (the calling thread) writes pieces in order and
//! hashes them: the blob digest.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use flate2::{Compress, FlushCompress, Status};
use rbuild_oci::{Digest, DigestWriter};

use crate::error::LayerError;

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
) -> Result<(Digest, u64), LayerError> {
    let workers = workers.max(1);
    let (job_tx, job_rx) = sync_channel::<Job>(workers * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<Done>(workers * 2 + 2);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || deflate_worker(level, &job_rx, &done_tx));
        }
        // Only the workers hold the job receiver: when they are all gone, dispatching stops.
        drop(job_rx);
        let dispatch_done = done_tx;
        scope.spawn(move || dispatch(rx, job_tx, dispatch_done));
        collect(done_rx, recycle, level, out)
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

fn deflate_worker(level: u32, jobs: &Mutex<Receiver<Job>>, done: &SyncSender<Done>) {
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let message = match deflate_piece(&mut deflate, &job) {
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

/// One chunk as raw deflate blocks ending in a sync flush (byte-aligned, not final).
fn deflate_piece(deflate: &mut Compress, job: &Job) -> Result<Vec<u8>, String> {
    deflate.reset();
    if !job.dictionary.is_empty() {
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

/// Writes the pieces in order, then the final block and trailer.
fn collect<W: Write>(
    done: Receiver<Done>,
    recycle: SyncSender<Vec<u8>>,
    level: u32,
    out: W,
) -> Result<(Digest, u64), LayerError> {
    let mut out = DigestWriter::new(out);
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
            crc.update(&data);
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
    let (_, digest, size) = out.finish();
    Ok((digest, size))
}
