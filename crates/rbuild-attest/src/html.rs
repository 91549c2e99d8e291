//! The report as one self-contained HTML page: inline CSS (a light and a dark theme through
//! `prefers-color-scheme`), inline SVG charts drawn here, no script, no external reference.
//! Every text that comes from the build (paths, names, errors) is escaped.

use crate::record::{BuildRecord, StepRecord, StepState};
use std::fmt::Write;

/// Phases in the order their bars are drawn; others follow by name.
const PHASE_ORDER: [&str; 8] = [
    "run", "snapshot", "tar", "compress", "hash", "store", "upload", "apply",
];
const LABEL_WIDTH: f64 = 190.0;
const BAR_WIDTH: f64 = 740.0;
const ROW: f64 = 22.0;

const STYLE: &str = r#"
:root{color-scheme:light dark;--bg:#ffffff;--fg:#1f2328;--muted:#59636e;--grid:#d1d9e0;--panel:#f6f8fa;
--built:#0969da;--cached:#818b98;--failed:#cf222e;--metadata:#9a6700;--unfinished:#bc4c00;
--run:#54aeff;--snapshot:#8250df;--tar:#bf3989;--compress:#1a7f37;--hash:#4d2d00;--store:#6e7781;--upload:#bc4c00;--apply:#0550ae;--other:#57606a}
@media (prefers-color-scheme: dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--grid:#3d444d;--panel:#151b23;
--built:#4493f8;--cached:#656c76;--failed:#f85149;--metadata:#d29922;--unfinished:#db6d28;
--run:#a5d6ff;--snapshot:#ab7df8;--tar:#f778ba;--compress:#3fb950;--hash:#e3b341;--store:#8b949e;--upload:#db6d28;--apply:#79c0ff;--other:#9198a1}}
body{background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1000px;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid var(--grid);padding-bottom:.2em;margin-top:1.6em}
.ok{color:var(--compress)}.bad{color:var(--failed)}.muted{color:var(--muted)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid var(--grid);vertical-align:top}
th{background:var(--panel)}td.num,th.num{text-align:right;white-space:nowrap}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{color:var(--muted)}dd{margin:0}
svg{display:block;max-width:100%;height:auto;margin:.4em 0}svg text{fill:var(--fg);font:12px system-ui,sans-serif}
svg .axis{stroke:var(--grid)}svg .tick{fill:var(--muted)}
.s-built{fill:var(--built)}.s-cached{fill:var(--cached)}.s-failed{fill:var(--failed)}.s-metadata{fill:var(--metadata)}.s-unfinished{fill:var(--unfinished)}
.p-run{fill:var(--run)}.p-snapshot{fill:var(--snapshot)}.p-tar{fill:var(--tar)}.p-compress{fill:var(--compress)}.p-hash{fill:var(--hash)}.p-store{fill:var(--store)}.p-upload{fill:var(--upload)}.p-apply{fill:var(--apply)}.p-other{fill:var(--other)}
.legend span{display:inline-block;margin-right:1em}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em;border-radius:2px}
details{margin:.2em 0}summary{cursor:pointer}
.state-failed{color:var(--failed);font-weight:600}.state-cached{color:var(--muted)}
"#;

/// Renders `record` as a complete HTML page.
pub fn render_html(record: &BuildRecord) -> String {
    let mut h = String::with_capacity(32 << 10);
    let title = record
        .image
        .as_ref()
        .map(|i| i.digest.clone())
        .unwrap_or_else(|| "failed build".into());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>rbuild report: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    summary(&mut h, record);
    timeline(&mut h, record);
    steps_table(&mut h, record);
    layers(&mut h, record);
    size_chart(&mut h, record);
    pushed(&mut h, record);
    if !record.notes.is_empty() {
        h.push_str("<h2>Notes</h2><ul>");
        for n in &record.notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>");
    }
    let _ = writeln!(
        h,
        "<p class=\"muted\">Written by {} ({}). The same data: the JSON report.</p></body></html>",
        esc(&record.builder),
        esc(crate::RECORD_SCHEMA)
    );
    h
}

fn summary(h: &mut String, r: &BuildRecord) {
    h.push_str("<h1>Build report</h1>");
    if r.success {
        h.push_str("<p class=\"ok\"><strong>Succeeded</strong></p>");
    } else {
        let _ = write!(
            h,
            "<p class=\"bad\"><strong>Failed</strong>: <span class=\"mono\">{}</span></p>",
            esc(r.error.as_deref().unwrap_or("unknown error"))
        );
    }
    h.push_str("<dl>");
    let _ = write!(h, "<dt>Started</dt><dd>{}</dd>", esc(&r.started));
    let _ = write!(h, "<dt>Finished</dt><dd>{}</dd>", esc(&r.finished));
    let _ = write!(h, "<dt>Wall time</dt><dd>{}</dd>", duration(r.duration_us));
    if let Some(i) = &r.image {
        let _ = write!(h, "<dt>Image</dt><dd><code>{}</code></dd>", esc(&i.digest));
        let _ = write!(
            h,
            "<dt>Size</dt><dd>{} compressed, {} uncompressed, {} layers</dd>",
            bytes(i.compressed_size),
            bytes(i.uncompressed_size),
            r.layers.len()
        );
    }
    if let Some(iso) = &r.isolation {
        let _ = write!(h, "<dt>RUN isolation</dt><dd>{}</dd>", esc(iso));
    }
    let (cached, built) = r.steps().fold((0, 0), |(c, b), (_, s)| match s.state {
        StepState::Cached => (c + 1, b),
        StepState::Built => (c, b + 1),
        _ => (c, b),
    });
    let _ = write!(
        h,
        "<dt>Steps</dt><dd>{} in {} stages: {built} built, {cached} from the cache</dd>",
        r.steps().count(),
        r.stages.len()
    );
    if r.push_us > 0 {
        let _ = write!(h, "<dt>Push</dt><dd>{}</dd>", duration(r.push_us));
    }
    h.push_str("</dl>");
}

fn timeline(h: &mut String, r: &BuildRecord) {
    h.push_str("<h2>Timeline</h2><p class=\"legend\">");
    for (class, label) in [
        ("s-built", "built"),
        ("s-cached", "cached"),
        ("s-metadata", "config only"),
        ("s-failed", "failed"),
        ("s-unfinished", "stopped"),
        ("p-run", "run"),
        ("p-snapshot", "snapshot"),
        ("p-tar", "tar"),
        ("p-compress", "compress"),
        ("p-hash", "hash"),
        ("p-store", "store"),
        ("p-upload", "upload"),
        ("p-apply", "apply"),
    ] {
        let _ = write!(
            h,
            "<span><svg width=\"12\" height=\"12\" style=\"display:inline;margin:0 .3em 0 0\"><rect class=\"{class}\" width=\"12\" height=\"12\" rx=\"2\"/></svg>{label}</span>"
        );
    }
    h.push_str("</p>");
    let total = r
        .steps()
        .map(|(_, s)| s.started_us + s.duration_us)
        .max()
        .unwrap_or(0)
        .max(r.duration_us)
        .max(1) as f64;
    let scale = BAR_WIDTH / total;
    for stage in &r.stages {
        let name = stage
            .name
            .as_deref()
            .map(|n| format!("stage {} ({})", stage.index, n))
            .unwrap_or_else(|| format!("stage {}", stage.index));
        let _ = write!(h, "<h3>{}</h3>", esc(&name));
        let height = ROW * (stage.steps.len() as f64 + 1.0) + 6.0;
        let width = LABEL_WIDTH + BAR_WIDTH + 10.0;
        let _ = write!(
            h,
            "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
            esc(&format!("timeline of {name}"))
        );
        // Axis with five ticks.
        let axis_y = ROW * stage.steps.len() as f64 + 4.0;
        let _ = write!(
            h,
            "<line class=\"axis\" x1=\"{LABEL_WIDTH}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\"/>",
            LABEL_WIDTH + BAR_WIDTH
        );
        for t in 0..=4 {
            let x = LABEL_WIDTH + BAR_WIDTH * t as f64 / 4.0;
            let at = (total * t as f64 / 4.0) as u64;
            let anchor = if t == 4 { "end" } else { "start" };
            let _ = write!(
                h,
                "<text class=\"tick\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
                axis_y + 15.0,
                duration(at)
            );
        }
        for (row, step) in stage.steps.iter().enumerate() {
            let y = ROW * row as f64 + 3.0;
            let _ = write!(
                h,
                "<text x=\"0\" y=\"{:.1}\">{}</text>",
                y + 13.0,
                esc(&clip(&format!("{}: {}", step.line, step.keyword), 26))
            );
            step_bar(h, step, y, scale);
        }
        h.push_str("</svg>");
    }
}

fn step_bar(h: &mut String, step: &StepRecord, y: f64, scale: f64) {
    let x0 = LABEL_WIDTH + step.started_us as f64 * scale;
    let width = (step.duration_us as f64 * scale).max(2.0);
    let state = state_name(step.state);
    let mut tip = format!(
        "line {} {}: {} in {}",
        step.line,
        step.keyword,
        state,
        duration(step.duration_us)
    );
    if let Some(reason) = &step.miss_reason {
        tip.push_str(&format!("; cache miss: {reason}"));
    }
    let _ = write!(
        h,
        "<g><title>{}</title><rect class=\"s-{state}\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"16\" rx=\"2\"/>",
        esc(&tip)
    );
    if !step.phases.is_empty() && step.state != StepState::Cached {
        // Phases over the step's bar, in order, each as long as it took.
        let mut x = x0;
        let mut names: Vec<&str> = PHASE_ORDER
            .iter()
            .copied()
            .filter(|p| step.phases.contains_key(*p))
            .collect();
        names.extend(
            step.phases
                .keys()
                .map(String::as_str)
                .filter(|p| !PHASE_ORDER.contains(p)),
        );
        // Phases of the layer pipeline overlap (tar, compress and hash run at once): drawn one
        // after the other, scaled down together when they add up to more than the step.
        let sum: u64 = step.phases.values().sum();
        let fit = if sum > step.duration_us && sum > 0 {
            step.duration_us as f64 / sum as f64
        } else {
            1.0
        };
        for name in names {
            let w = step.phases[name] as f64 * scale * fit;
            let class = if PHASE_ORDER.contains(&name) {
                name
            } else {
                "other"
            };
            let _ = write!(
                h,
                "<rect class=\"p-{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"10\"><title>{}</title></rect>",
                y + 3.0,
                esc(&format!("{name}: {}", duration(step.phases[name])))
            );
            x += w;
        }
    }
    let label_x = x0 + width + 4.0;
    let mut label = duration(step.duration_us);
    if step.state == StepState::Cached {
        label.push_str(" cached");
    }
    if step.miss_reason.is_some() {
        label.push_str(" (miss)");
    }
    let anchor = if label_x > LABEL_WIDTH + BAR_WIDTH - 90.0 {
        format!(
            "x=\"{:.1}\" text-anchor=\"end\"",
            (x0 - 4.0).max(LABEL_WIDTH + 40.0)
        )
    } else {
        format!("x=\"{label_x:.1}\"")
    };
    let _ = write!(
        h,
        "<text {anchor} y=\"{:.1}\" class=\"tick\">{}</text></g>",
        y + 13.0,
        esc(&label)
    );
}

fn steps_table(h: &mut String, r: &BuildRecord) {
    h.push_str("<h2>Steps</h2><table><tr><th>stage</th><th class=\"num\">line</th><th>instruction</th><th>state</th><th class=\"num\">time</th><th>phases</th><th>cache</th></tr>");
    for (stage, s) in r.steps() {
        let phases: Vec<String> = s
            .phases
            .iter()
            .map(|(k, v)| format!("{k} {}", duration(*v)))
            .collect();
        let cache = match (&s.miss_reason, s.state) {
            (Some(reason), _) => format!("miss: {reason}"),
            (None, StepState::Cached) => "hit".into(),
            // A layer step with a key that was built: the cache did not have it.
            (None, StepState::Built) if s.cache_key.is_some() => "miss".into(),
            _ => String::new(),
        };
        let _ = write!(
            h,
            "<tr><td>{stage}</td><td class=\"num\">{}</td><td>{}</td><td class=\"state-{}\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            s.line,
            esc(&s.keyword),
            state_name(s.state),
            state_name(s.state),
            duration(s.duration_us),
            esc(&phases.join(", ")),
            esc(&cache)
        );
    }
    h.push_str("</table>");
}

fn layers(h: &mut String, r: &BuildRecord) {
    if r.layers.is_empty() {
        return;
    }
    h.push_str("<h2>Layers</h2><table><tr><th class=\"num\">#</th><th>made by</th><th>digest</th><th class=\"num\">compressed</th><th class=\"num\">uncompressed</th><th>content</th></tr>");
    for (i, l) in r.layers.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td class=\"num\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>",
            i + 1,
            esc(l.created_by.as_deref().unwrap_or("base image")),
            esc(short_digest(&l.digest)),
            bytes(l.size),
            l.uncompressed_size.map(bytes).unwrap_or_else(|| "?".into())
        );
        if let Some(e) = &l.scan_error {
            let _ = write!(h, "<span class=\"bad\">not read: {}</span>", esc(e));
        }
        if !l.top_files.is_empty() {
            let _ = write!(
                h,
                "<details><summary>{} largest of {} entries</summary><table>",
                l.top_files.len(),
                l.entries
            );
            for f in &l.top_files {
                let _ = write!(
                    h,
                    "<tr><td class=\"mono\">/{}</td><td class=\"num\">{}</td></tr>",
                    esc(&f.path),
                    bytes(f.size)
                );
            }
            h.push_str("</table></details>");
        }
        if l.whiteouts_total > 0 {
            let _ = write!(
                h,
                "<details><summary>deletes {}</summary><ul>",
                plural(l.whiteouts_total, "path")
            );
            for w in &l.whiteouts {
                let what = if w.ends_with('/') {
                    format!("/{w} (everything below, from lower layers)")
                } else {
                    format!("/{w}")
                };
                let _ = write!(h, "<li class=\"mono\">{}</li>", esc(&what));
            }
            if (l.whiteouts.len() as u64) < l.whiteouts_total {
                let _ = write!(
                    h,
                    "<li>… {} more</li>",
                    l.whiteouts_total - l.whiteouts.len() as u64
                );
            }
            h.push_str("</ul></details>");
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table>");
}

fn size_chart(h: &mut String, r: &BuildRecord) {
    let total: u64 = r.layers.iter().map(|l| l.size).sum();
    if total == 0 {
        return;
    }
    h.push_str("<h2>Image size by layer</h2>");
    let width = LABEL_WIDTH + BAR_WIDTH + 10.0;
    let height = ROW * r.layers.len() as f64 + 6.0;
    let _ = write!(
        h,
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"compressed size of each layer\">"
    );
    let largest = r.layers.iter().map(|l| l.size).max().unwrap_or(1).max(1) as f64;
    for (i, l) in r.layers.iter().enumerate() {
        let y = ROW * i as f64 + 3.0;
        let w = (l.size as f64 / largest * (BAR_WIDTH - 170.0)).max(1.0);
        let class = if l.created_by.is_some() {
            "s-built"
        } else {
            "s-cached"
        };
        let _ = write!(
            h,
            "<text x=\"0\" y=\"{:.1}\">{}</text><rect class=\"{class}\" x=\"{LABEL_WIDTH}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" rx=\"2\"><title>{}</title></rect><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{} ({:.1}%)</text>",
            y + 13.0,
            esc(&clip(&format!("{}. {}", i + 1, l.created_by.as_deref().unwrap_or("base")), 26)),
            esc(&l.digest),
            LABEL_WIDTH + w + 4.0,
            y + 13.0,
            bytes(l.size),
            l.size as f64 * 100.0 / total as f64
        );
    }
    h.push_str("</svg>");
}

fn pushed(h: &mut String, r: &BuildRecord) {
    if r.pushed.is_empty() && r.attestations.is_empty() {
        return;
    }
    h.push_str("<h2>Pushed</h2><table><tr><th>reference</th><th>digest</th></tr>");
    for p in &r.pushed {
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td><code>{}</code></td></tr>",
            esc(&p.reference),
            esc(&p.digest)
        );
    }
    for a in &r.attestations {
        let _ = write!(
            h,
            "<tr><td>{} attestation{}</td><td><code>{}</code></td></tr>",
            esc(&a.kind),
            if a.attached.is_empty() {
                String::new()
            } else {
                format!(": {}", esc(&a.attached.join(", ")))
            },
            esc(&a.manifest)
        );
    }
    h.push_str("</table>");
}

fn state_name(state: StepState) -> &'static str {
    match state {
        StepState::Unfinished => "unfinished",
        StepState::Built => "built",
        StepState::Cached => "cached",
        StepState::Metadata => "metadata",
        StepState::Failed => "failed",
    }
}

fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `1.23 s`, `45 ms`, `120 µs`.
fn duration(us: u64) -> String {
    if us == 0 {
        "0".into()
    } else if us >= 10_000_000 {
        format!("{:.0} s", us as f64 / 1e6)
    } else if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{} ms", us / 1_000)
    } else {
        format!("{us} µs")
    }
}

/// `1.5 MB` (powers of 1000, as registries show sizes).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// HTML-escapes text for element content and double-quoted attributes.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FileSize, LayerRecord, StageRecord};

    #[test]
    fn hostile_text_is_escaped_and_nothing_external_is_referenced() {
        let record = BuildRecord {
            error: Some("<script>alert(1)</script>".into()),
            stages: vec![StageRecord {
                index: 0,
                name: Some("\"><img src=x>".into()),
                started_us: 0,
                steps: vec![StepRecord {
                    line: 2,
                    keyword: "RUN".into(),
                    state: StepState::Failed,
                    duration_us: 1500,
                    phases: [("run".to_string(), 1000u64)].into(),
                    miss_reason: Some("ARG <b> changed".into()),
                    ..StepRecord::default()
                }],
            }],
            layers: vec![LayerRecord {
                digest: "sha256:abc".into(),
                size: 10,
                top_files: vec![FileSize {
                    path: "a/<style>".into(),
                    size: 5,
                }],
                whiteouts: vec!["etc/".into()],
                whiteouts_total: 1,
                ..LayerRecord::default()
            }],
            ..BuildRecord::default()
        };
        let html = render_html(&record);
        for bad in [
            "<script",
            "<img",
            "<style>\"",
            "src=\"",
            "href=\"",
            "http://",
            "https://",
            "url(",
        ] {
            assert!(!html.contains(bad), "{bad} in the page");
        }
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("ARG &lt;b&gt; changed"));
        assert!(html.contains("prefers-color-scheme: dark"));
        assert_eq!(duration(1_500_000), "1.50 s");
        assert_eq!(bytes(1_500_000), "1.5 MB");
    }
}
