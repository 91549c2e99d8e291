//! The times of the finished image: a layer keeps the time it was built (restored from its
//! cache record on a hit), and the image's `created` and the entries of metadata steps take
//! the time of the newest layer. An unchanged rebuild, from any machine, so gives the same
//! config and the same manifest digest; a build that makes a layer gets that build's time.

use crate::timestamp::parse_rfc3339;
use rbuild_oci::ImageConfig;

/// Sets `config.created` to the newest layer's history time and gives the entries this build
/// stamped with `build_time` without making a layer (metadata steps) that time too. With a
/// fixed clock (`SOURCE_DATE_EPOCH`) every time is already `build_time`, and the caller
/// does not use this.
pub(super) fn settle(config: &mut ImageConfig, build_time: &str) {
    let newest = config
        .history
        .iter()
        .filter(|h| !h.empty_layer)
        .filter_map(|h| {
            let created = h.created.as_deref()?;
            Some((parse_rfc3339(created)?, created))
        })
        .max_by_key(|(seconds, _)| *seconds)
        .map(|(_, created)| created.to_string())
        .unwrap_or_else(|| build_time.to_string());
    for entry in &mut config.history {
        if entry.empty_layer && entry.created.as_deref() == Some(build_time) {
            entry.created = Some(newest.clone());
        }
    }
    config.created = Some(newest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_oci::History;

    fn config(history: Vec<History>) -> ImageConfig {
        ImageConfig {
            history,
            ..ImageConfig::default()
        }
    }

    fn entry(created: &str, empty: bool) -> History {
        History {
            created: Some(created.into()),
            empty_layer: empty,
            ..History::default()
        }
    }

    #[test]
    fn the_newest_layer_dates_the_image_and_its_metadata_steps() {
        let now = "2026-12-06T10:00:00.5Z";
        let mut config = config(vec![
            entry("2024-01-01T00:00:00Z", false),    // the base's layer
            entry("2024-01-01T00:00:01Z", true),     // the base's CMD
            entry("2026-12-01T08:00:00.25Z", false), // a cache hit
            entry(now, true),                        // ENV of this build
            entry("2026-11-30T08:00:00Z", false),    // an older cache hit
        ]);
        settle(&mut config, now);
        assert_eq!(config.created.as_deref(), Some("2026-12-01T08:00:00.25Z"));
        assert_eq!(
            config.history[3].created.as_deref(),
            Some("2026-12-01T08:00:00.25Z")
        );
        assert_eq!(
            config.history[1].created.as_deref(),
            Some("2024-01-01T00:00:01Z"),
            "the base's entries keep their times"
        );
    }

    #[test]
    fn a_layer_made_now_dates_the_image_now() {
        let now = "2026-12-06T10:00:00Z";
        let mut config = config(vec![
            entry("2024-01-01T00:00:00Z", false),
            entry(now, false),
        ]);
        settle(&mut config, now);
        assert_eq!(config.created.as_deref(), Some(now));
    }

    #[test]
    fn no_layer_times_at_all_give_the_build_time() {
        let now = "2026-12-06T10:00:00Z";
        let mut config = config(vec![entry(now, true)]);
        settle(&mut config, now);
        assert_eq!(config.created.as_deref(), Some(now));
    }
}
