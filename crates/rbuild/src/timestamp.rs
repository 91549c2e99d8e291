//! RFC 3339 timestamps for `created` fields, without a date library: the config and history
//! need only UTC formatting of a Unix time.

use std::time::{SystemTime, UNIX_EPOCH};

/// The build's clock: fixed by `SOURCE_DATE_EPOCH` (reproducible builds) or the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildTime {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second (always 0 for a fixed epoch).
    pub nanos: u32,
}

impl BuildTime {
    /// A fixed time (`SOURCE_DATE_EPOCH`).
    pub fn fixed(seconds: i64) -> BuildTime {
        BuildTime { seconds, nanos: 0 }
    }

    /// The current time.
    pub fn now() -> BuildTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        BuildTime {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// `1970-01-01T00:00:00Z`, with fractional seconds (Go's `RFC3339Nano`) when not whole.
    pub fn rfc3339(&self) -> String {
        let days = self.seconds.div_euclid(86_400);
        let secs_of_day = self.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (
            secs_of_day / 3600,
            (secs_of_day % 3600) / 60,
            secs_of_day % 60,
        );
        let frac = if self.nanos == 0 {
            String::new()
        } else {
            format!(".{:09}", self.nanos)
                .trim_end_matches('0')
                .to_string()
        };
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{frac}Z")
    }
}

/// The Unix seconds of a UTC RFC 3339 time (`2023-11-14T22:13:20Z`, fractions ignored), as
/// [`BuildTime::rfc3339`] writes it; `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(BuildTime::fixed(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            BuildTime::fixed(1_700_000_000).rfc3339(),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            BuildTime::fixed(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        let t = BuildTime {
            seconds: 0,
            nanos: 120_000_000,
        };
        assert_eq!(t.rfc3339(), "1970-01-01T00:00:00.12Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for s in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&BuildTime::fixed(s).rfc3339()), Some(s));
        }
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.12Z"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2023-13-01T00:00:00Z"), None);
    }
}
