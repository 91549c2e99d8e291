//! Go's `time.ParseDuration`, for `HEALTHCHECK` intervals.

use crate::shell::go_quote;
use std::time::Duration;

/// Parses `s` as Go does (`1h2m3.5s`, `300ms`, `-1s`, `0`), returning signed nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(s));
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_part = &r[..frac_len];
            rest = &r[frac_len..];
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(invalid());
            }
        } else if int_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(s)));
        }
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(s)
                ))
            }
        };
        let limit: i128 = 1 << 63;
        let mut v: i128 = 0;
        for c in int_part.bytes() {
            v = v * 10 + i128::from(c - b'0');
            if v > limit {
                return Err(invalid());
            }
        }
        let mut nanos = v * scale;
        if !frac_part.is_empty() {
            let mut f: i128 = 0;
            let mut div: i128 = 1;
            for c in frac_part.bytes().take(30) {
                f = f * 10 + i128::from(c - b'0');
                div *= 10;
            }
            nanos += f * scale / div;
        }
        total += nanos;
        if total > limit {
            return Err(invalid());
        }
    }
    if neg {
        total = -total;
    }
    if total > i128::from(i64::MAX) || total < i128::from(i64::MIN) {
        return Err(invalid());
    }
    Ok(total)
}

/// BuildKit's `parseOptInterval`: absent or zero is `None`; anything under 1ms is an error.
pub(crate) fn parse_interval(flag: &str, value: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let nanos = parse_go_duration(v)?;
    if nanos == 0 {
        return Ok(None);
    }
    if nanos < 1_000_000 {
        return Err(format!(
            "Interval {} cannot be less than 1ms",
            go_quote(flag)
        ));
    }
    Ok(Some(Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h2m3.5s").unwrap(), 3_723_500_000_000);
        assert_eq!(parse_go_duration("300ms").unwrap(), 300_000_000);
        assert_eq!(parse_go_duration(".5s").unwrap(), 500_000_000);
        assert_eq!(parse_go_duration("-1s").unwrap(), -1_000_000_000);
        assert_eq!(parse_go_duration("0").unwrap(), 0);
        assert_eq!(
            parse_go_duration("5").unwrap_err(),
            "time: missing unit in duration \"5\""
        );
        assert_eq!(
            parse_go_duration("5x").unwrap_err(),
            "time: unknown unit \"x\" in duration \"5x\""
        );
        assert_eq!(
            parse_go_duration("").unwrap_err(),
            "time: invalid duration \"\""
        );
        assert!(parse_go_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("interval", Some("0s")).unwrap(), None);
        assert_eq!(
            parse_interval("interval", Some("5s")).unwrap(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_interval("interval", Some("10us")).unwrap_err(),
            "Interval \"interval\" cannot be less than 1ms"
        );
    }
}
