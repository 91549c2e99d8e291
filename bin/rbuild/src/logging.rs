//! The libraries' `tracing` events (warnings such as a corrupt cache record, an attribute that
//! could not be copied) on stderr, at the level `--verbosity` asks for.

use crate::cli::LogFormatArg;
use tracing_subscriber::filter::LevelFilter;

/// Kaniko's `--verbosity` names → the least severe library event shown. `info` (the default)
/// shows warnings and errors: the step lines are rbuild's info output already.
pub fn level(verbosity: &str) -> LevelFilter {
    match verbosity {
        "panic" | "fatal" | "error" => LevelFilter::ERROR,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => LevelFilter::WARN,
    }
}

/// Installs the subscriber. With `--log-format json` only errors are shown (as plain lines
/// would break one-JSON-object-per-line consumers, warnings reach the build's JSON summary).
pub fn init(verbosity: &str, format: LogFormatArg) {
    let max = match format {
        LogFormatArg::Json => LevelFilter::ERROR,
        _ => level(verbosity),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(max)
        .with_target(false)
        .without_time()
        .with_ansi(format == LogFormatArg::Color)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaniko_verbosity_names_map_to_levels() {
        assert_eq!(level("info"), LevelFilter::WARN);
        assert_eq!(level("warn"), LevelFilter::WARN);
        assert_eq!(level("fatal"), LevelFilter::ERROR);
        assert_eq!(level("debug"), LevelFilter::DEBUG);
        assert_eq!(level("trace"), LevelFilter::TRACE);
    }
}
