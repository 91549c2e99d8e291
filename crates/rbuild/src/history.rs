//! The `created_by` strings of image history, exactly as BuildKit's Dockerfile front end
//! (`dockerfile2llb`) writes them, and the Go formatting they rely on (`%q` of a string list,
//! `%v` of a list, `time.Duration`'s `String`).

use rbuild_dockerfile::go_quote;
use rbuild_oci::History;
use std::time::Duration;

/// The comment BuildKit puts on every history entry it writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// A history entry as BuildKit's `commitToHistory` writes it. `layer_op` is true for steps that
/// ran an operation on the filesystem state (RUN, COPY, ADD): they get the ` # buildkit` suffix.
pub fn entry(created_by: String, with_layer: bool, layer_op: bool, created: &str) -> History {
    let created_by = if layer_op {
        format!("{created_by} # buildkit")
    } else {
        created_by
    };
    History {
        created: Some(created.to_string()),
        created_by: Some(created_by),
        author: None,
        comment: Some(HISTORY_COMMENT.to_string()),
        empty_layer: !with_layer,
    }
}

/// Go's `fmt.Sprintf("%q", []string{...})`: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `fmt.Sprintf("%v", []string{...})`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// `RUN` text: BuildKit's `runCommandString`, `|N K=V ...` for the build args in scope followed
/// by the command line (the shell prepended for the shell form).
pub fn run_command_string(args: &[(String, String)], command_line: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !args.is_empty() {
        parts.push(format!("|{}", args.len()));
        parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(command_line.iter().cloned());
    parts.join(" ")
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `500ms`, `10µs`, `7ns`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 1_000_000));
    }
    let total_secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let seconds = fraction(secs * 1_000_000_000 + sub, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / unit` with the fractional digits Go prints (trailing zeros dropped).
fn fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_micros(10)), "10µs");
        assert_eq!(go_duration(Duration::from_nanos(7)), "7ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
    }

    #[test]
    fn lists_print_as_go_does() {
        let l = vec!["/bin/sh".to_string(), "-c".into(), "echo \"hi\"".into()];
        assert_eq!(go_quoted_list(&l), r#"["/bin/sh" "-c" "echo \"hi\""]"#);
        assert_eq!(go_list(&l[..2]), "[/bin/sh -c]");
        assert_eq!(go_quoted_list(&[]), "[]");
    }

    #[test]
    fn run_strings_carry_the_args_prefix() {
        let cmd = vec!["/bin/sh".to_string(), "-c".into(), "make".into()];
        assert_eq!(run_command_string(&[], &cmd), "/bin/sh -c make");
        let args = vec![
            ("A".to_string(), "1".to_string()),
            ("B".into(), "x y".into()),
        ];
        assert_eq!(
            run_command_string(&args, &cmd),
            "|2 A=1 B=x y /bin/sh -c make"
        );
    }

    #[test]
    fn entries_mark_layers_and_buildkit_ops() {
        let h = entry("COPY a /b".into(), true, true, "1970-01-01T00:00:00Z");
        assert_eq!(h.created_by.as_deref(), Some("COPY a /b # buildkit"));
        assert!(!h.empty_layer);
        let h = entry("ENV A=1".into(), false, false, "1970-01-01T00:00:00Z");
        assert_eq!(h.created_by.as_deref(), Some("ENV A=1"));
        assert!(h.empty_layer);
        assert_eq!(h.comment.as_deref(), Some(HISTORY_COMMENT));
    }
}
