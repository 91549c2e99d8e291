//! Writing a whole tree as a layer, beside `tar -c | gzip -6 | sha256sum` on the same tree.
//!
//! `cargo bench -p rbuild-layer --bench write_layer` generates a 500 MB / 20,000-file tree
//! (deterministic pseudo-random content, mixed text-like and random blocks) under a temp dir,
//! then prints a table: throughput (MB/s of uncompressed input) and peak RSS of each layer write,
//! measured in a child process (this binary re-run with `--child-write`, reading its own
//! `VmHWM`). `RBUILD_BENCH_MB=50` makes a smaller tree for a quick run (files scale with it).
#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rbuild_layer::{Compression, LayerOptions, LayerWriter};

const CHILD_FLAG: &str = "--child-write";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD_FLAG) {
        child_write(Path::new(&args[i + 1]), &args[i + 2]);
        return;
    }
    let mb: u64 = std::env::var("RBUILD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let files = (20_000 * mb / 500).max(100);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("tree");
    let started = Instant::now();
    let bytes = generate_tree(&root, mb * 1_000_000, files);
    println!(
        "tree: {files} files, {:.1} MB, generated in {:.1}s (host: {} cores)",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Read everything once so that every contestant starts from the page cache.
    let warm = run_shell(&format!(
        "tar -C {} -cf - . | cat > /dev/null",
        root.display()
    ));
    let _ = warm;

    println!();
    println!(
        "| {:<38} | {:>8} | {:>9} | {:>11} | {:>12} |",
        "writer", "seconds", "MB/s", "peak RSS MB", "output MB"
    );
    println!(
        "|{:-<40}|{:->10}|{:->11}|{:->13}|{:->14}|",
        "", "", "", "", ""
    );
    let row = |name: &str, secs: f64, rss_kb: Option<u64>, out: Option<u64>| {
        println!(
            "| {:<38} | {:>8.2} | {:>9.1} | {:>11} | {:>12} |",
            name,
            secs,
            bytes as f64 / 1e6 / secs,
            rss_kb.map_or("-".to_owned(), |kb| format!("{:.1}", kb as f64 / 1024.0)),
            out.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / 1e6)),
        );
    };

    let gzip_pipeline = run_shell(&format!(
        "tar -C {} -cf - . | gzip -6 | sha256sum",
        root.display()
    ));
    row("tar -c | gzip -6 | sha256sum", gzip_pipeline, None, None);
    let (secs, rss, out) = measure_child(&root, "gzip");
    row(
        "rbuild-layer gzip 6 (+diffID, digest)",
        secs,
        Some(rss),
        Some(out),
    );
    println!(
        "|{:-<40}|{:->10}|{:->11}|{:->13}|{:->14}|",
        "", "", "", "", ""
    );
    if Command::new("zstd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let zstd_pipeline = run_shell(&format!(
            "tar -C {} -cf - . | zstd -3 -q -c | sha256sum",
            root.display()
        ));
        row("tar -c | zstd -3 | sha256sum", zstd_pipeline, None, None);
    }
    let (secs, rss, out) = measure_child(&root, "zstd");
    row(
        "rbuild-layer zstd 3 (+diffID, digest)",
        secs,
        Some(rss),
        Some(out),
    );
    let (secs, rss, out) = measure_child(&root, "none");
    row(
        "rbuild-layer uncompressed (+diffID)",
        secs,
        Some(rss),
        Some(out),
    );
    println!();
    println!(
        "gzip speed-up over the pipeline: {:.2}x",
        gzip_pipeline / measure_child(&root, "gzip").0
    );
}

/// Wall-clock seconds of one `sh -c` command.
fn run_shell(script: &str) -> f64 {
    let started = Instant::now();
    let status = Command::new("sh")
        .args(["-c", script])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sh");
    assert!(status.success(), "{script} failed");
    started.elapsed().as_secs_f64()
}

/// Runs this binary as a child that writes the layer; returns (seconds, peak RSS kB, bytes out).
fn measure_child(root: &Path, compression: &str) -> (f64, u64, u64) {
    let exe = std::env::current_exe().expect("own path");
    let output = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(root)
        .arg(compression)
        .output()
        .expect("child");
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    (
        fields[0].parse().unwrap(),
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
    )
}

/// The child: writes the layer to a null sink and prints "seconds peak_rss_kb bytes_out".
fn child_write(root: &Path, compression: &str) {
    let compression = match compression {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        _ => Compression::None,
    };
    let writer = LayerWriter::new(LayerOptions {
        compression,
        level: None,
        source_date_epoch: Some(0),
        threads: None,
    });
    let started = Instant::now();
    let info = writer
        .write_tree(root, std::io::sink())
        .expect("layer write");
    let secs = started.elapsed().as_secs_f64();
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!("{secs} {hwm} {}", info.size);
}

/// A xorshift generator: the same tree on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORDS: &[&str] = &[
    "the",
    "layer",
    "image",
    "build",
    "container",
    "return",
    "function",
    "struct",
    "impl",
    "error",
    "value",
    "config",
    "path",
    "file",
    "directory",
    "#include",
    "<stdio.h>",
    "int",
    "main",
    "void",
    "static",
    "const",
    "char",
    "if",
    "else",
    "for",
    "while",
    "0x1f",
    "{",
    "}",
    "(",
    ")",
    ";",
    "=",
    "license",
    "Copyright",
    "usr",
    "lib",
    "share",
    "doc",
    "README",
    "version",
    "1.2.3",
    "debian",
];

/// Writes about `total` bytes in `files` files over a few hundred directories: file sizes
/// vary from a few hundred bytes to a few hundred kB; content is 3 parts text-like (compresses
/// about 4:1) to 1 part random (does not compress), in 4 KiB blocks.
fn generate_tree(root: &Path, total: u64, files: u64) -> u64 {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mean = total / files;
    let mut written = 0u64;
    let mut block = Vec::with_capacity(4096);
    for i in 0..files {
        let dir: PathBuf = root.join(format!("d{:03}/s{:02}", i % 300, (i / 300) % 40));
        fs::create_dir_all(&dir).expect("mkdir");
        // Sizes from mean/16 to 4*mean, with the remaining budget spent evenly at the end.
        let remaining_files = files - i;
        let budget = total.saturating_sub(written);
        let size = if remaining_files == 1 {
            budget
        } else {
            let r = rng.next() % 1000;
            let scaled = match r {
                0..=499 => mean / 16 + (rng.next() % (mean / 2 + 1)),
                500..=899 => mean / 2 + (rng.next() % (mean + 1)),
                _ => mean * 2 + (rng.next() % (mean * 2 + 1)),
            };
            scaled.min(budget / remaining_files * 4 + 1)
        };
        let mut file = std::io::BufWriter::new(
            fs::File::create(dir.join(format!("f{i:05}.dat"))).expect("create"),
        );
        let mut left = size;
        while left > 0 {
            block.clear();
            if rng.next() % 4 == 0 {
                while block.len() < 4096 {
                    block.extend_from_slice(&rng.next().to_le_bytes());
                }
            } else {
                while block.len() < 4096 {
                    let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                    block.extend_from_slice(w.as_bytes());
                    block.push(if rng.next() % 12 == 0 { b'\n' } else { b' ' });
                }
            }
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n]).expect("write");
            left -= n as u64;
        }
        written += size;
    }
    written
}
