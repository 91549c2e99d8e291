//! The blob of a layer is the same whether it is written at once, streamed through a writer
//! that takes a few bytes at a time (as the engine's upload tee), compressed later from the
//! uncompressed layer, or compressed on any number of threads.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use rbuild_layer::{Compression, LayerInfo, LayerOptions, LayerWriter};

/// Text files (compressible) and random ones (not), 6 MB in all: several compression chunks.
fn tree(root: &Path) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..60 {
        let path = root.join(format!("d{}/f{i:02}", i % 5));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data: Vec<u8> = if i % 3 == 0 {
            (0..100_000).map(|_| (next() >> 32) as u8).collect()
        } else {
            (0..100_000)
                .map(|_| b"layer image build \n"[(next() % 19) as usize])
                .collect()
        };
        fs::write(path, data).unwrap();
    }
}

fn options(compression: Compression, threads: usize) -> LayerOptions {
    LayerOptions {
        compression,
        level: None,
        source_date_epoch: Some(1_700_000_000),
        threads: Some(threads),
    }
}

/// A writer that accepts at most `step` bytes per call and sometimes fewer.
struct Trickle {
    out: Vec<u8>,
    step: usize,
    calls: usize,
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = buf.len().min(self.step - self.calls % 7);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn direct(root: &Path, compression: Compression, threads: usize) -> (LayerInfo, Vec<u8>) {
    let mut blob = Vec::new();
    let info = LayerWriter::new(options(compression, threads))
        .write_tree(root, &mut blob)
        .unwrap();
    (info, blob)
}

#[test]
fn streamed_later_or_on_any_thread_count_the_blob_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let (plain, tar) = direct(dir.path(), Compression::None, 1);
    assert!(plain.uncompressed_size > 6_000_000);
    assert_eq!(plain.digest, plain.diff_id);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let (reference, blob) = direct(dir.path(), compression, 1);
        assert_eq!(reference.diff_id, plain.diff_id);
        assert_eq!(reference.uncompressed_size, plain.uncompressed_size);
        for threads in [1, 2, 3, 8] {
            let (info, bytes) = direct(dir.path(), compression, threads);
            assert_eq!(info, reference, "{compression:?} on {threads} threads");
            assert!(bytes == blob);

            let mut trickle = Trickle {
                out: Vec::new(),
                step: 4099,
                calls: 0,
            };
            let streamed = LayerWriter::new(options(compression, threads))
                .write_tree(dir.path(), &mut trickle)
                .unwrap();
            assert_eq!(
                streamed, reference,
                "{compression:?} streamed, {threads} threads"
            );
            assert!(
                trickle.calls > blob.len() / 4099,
                "really written in pieces"
            );
            assert!(trickle.out == blob);

            let mut later = Vec::new();
            let compressed = LayerWriter::new(options(compression, threads))
                .compress_tar(&tar[..], &mut later)
                .unwrap();
            assert_eq!(compressed.digest, reference.digest, "{compression:?} later");
            assert_eq!(compressed.diff_id, reference.diff_id);
            assert_eq!(compressed.size, reference.size);
            assert_eq!(compressed.uncompressed_size, reference.uncompressed_size);
            assert!(later == blob);
        }
    }
}

#[test]
fn a_failing_tar_source_gives_an_error_not_a_blob() {
    struct Broken(usize);
    impl io::Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0);
            self.0 -= n;
            Ok(n)
        }
    }
    let error = LayerWriter::new(options(Compression::Gzip, 2))
        .compress_tar(Broken(3 << 20), io::sink())
        .unwrap_err();
    assert!(error.to_string().contains("disk gone"), "{error}");
}

#[test]
fn the_profile_puts_time_where_it_was_spent() {
    struct Slow(Vec<u8>);
    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(std::time::Duration::from_millis(2));
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let profile = std::sync::Arc::new(rbuild_layer::WriteProfile::default());
        let mut out = Slow(Vec::new());
        let writer = LayerWriter::new(options(compression, 2)).profiled(profile.clone());
        writer.write_tree(dir.path(), &mut out).unwrap();
        let (_, blob) = direct(dir.path(), compression, 2);
        assert!(out.0 == blob, "profiling changes nothing in the blob");
        // Every write slept 2 ms: that is output time, not hashing or compressing.
        let writes = blob.len() / (256 * 1024);
        assert!(
            profile.output() >= std::time::Duration::from_millis(2 * writes as u64),
            "{compression:?}: {profile:?}"
        );
        assert!(
            profile.hash() < profile.output(),
            "{compression:?}: {profile:?}"
        );
        assert!(profile.tar() > std::time::Duration::ZERO);
        assert_eq!(
            profile.compress().is_zero(),
            compression == Compression::None,
            "{compression:?}: {profile:?}"
        );
    }
}
