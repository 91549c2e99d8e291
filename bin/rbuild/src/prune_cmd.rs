//! `rbuild prune`: the local store's step cache, trimmed.

use crate::cli::PruneArgs;
use anyhow::{anyhow, Context, Result};
use rbuild::store::{PruneOptions, Store};

pub fn run(args: &PruneArgs) -> Result<()> {
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(crate::build_cmd::default_store_dir);
    let store = Store::open(&dir).with_context(|| format!("--cache-dir {}", dir.display()))?;
    let options = PruneOptions {
        all: args.all,
        keep_storage: args.keep_storage.as_deref().map(parse_size).transpose()?,
        ..PruneOptions::default()
    };
    let report = store.prune(&options)?;
    // Scratch trees earlier builds left to their background deleter.
    rbuild::Builder::new(&dir)
        .with_context(|| format!("--cache-dir {}", dir.display()))?
        .empty_trash();
    println!(
        "pruned {} cache records and {} blobs ({} bytes); {} bytes kept in {}",
        report.removed_records,
        report.gc.removed_blobs.len(),
        report.gc.removed_bytes,
        report.kept_bytes,
        dir.display()
    );
    Ok(())
}

/// `500MB`, `10GB`, `2GiB`, `1024`: a size in bytes (decimal units as Docker's
/// `--keep-storage`, binary ones with `i`).
fn parse_size(text: &str) -> Result<u64> {
    let bad = || anyhow!("--keep-storage {text:?}: expected a size such as 500MB, 10GB or 2GiB");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0_f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("1.5kb").unwrap(), 1500);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("").is_err());
    }
}
