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

/// Installs the subscriber: plain lines, or with `--log-format json` one JSON object per event
/// (`{"timestamp"?, "level", "fields": {"message"}}`), so warnings reach log collectors without
/// breaking one-object-per-line. `--log-timestamp` adds the time (RFC 3339, UTC).
pub fn init(verbosity: &str, format: LogFormatArg, timestamps: bool) {
    use tracing_subscriber::fmt::time::SystemTime;
    let builder = tracing_subscriber::fmt()
        .with_writer(crate::progress::LogWriter::default)
        .with_max_level(level(verbosity))
        .with_target(false)
        .with_ansi(format == LogFormatArg::Color);
    let _ = match (format == LogFormatArg::Json, timestamps) {
        (true, true) => builder.json().with_timer(SystemTime).try_init(),
        (true, false) => builder.json().without_time().try_init(),
        (false, true) => builder.with_timer(SystemTime).try_init(),
        (false, false) => builder.without_time().try_init(),
    };
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
