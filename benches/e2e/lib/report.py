#!/usr/bin/env python3
"""Summarise benchmark runs as an aligned table or one JSON object.

Usage: report.py META_JSON RESULTS_JSONL [--json]

RESULTS_JSONL holds one object per timed run:
  {"scenario", "builder", "run", "status": "ok"|"failed"|"skipped",
   "wall_s", "user_s", "sys_s", "max_rss_kb", "bytes_up", "bytes_down",
   "load1", "note"}
Rows are grouped by (scenario, builder) in the order they first appear.
"""

import json
import statistics
import sys


def human_bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summarise(rows):
    ok = [r for r in rows if r["status"] == "ok"]
    out = {
        "scenario": rows[0]["scenario"],
        "builder": rows[0]["builder"],
        "runs_ok": len(ok),
        "runs": len(rows),
        "status": "ok" if ok and len(ok) == len(rows) else
                  ("skipped" if all(r["status"] == "skipped" for r in rows) else "failed"),
        "note": next((r.get("note") for r in rows if r.get("note")), None),
        "raw": rows,
    }
    if ok:
        walls = [r["wall_s"] for r in ok]
        cpus = [r["user_s"] + r["sys_s"] for r in ok]
        out.update({
            "wall_s": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
            "cpu_s": {"median": statistics.median(cpus), "min": min(cpus), "max": max(cpus)},
            "max_rss_kb": max(r["max_rss_kb"] for r in ok),
            "bytes_up": int(statistics.median(r["bytes_up"] for r in ok)),
            "bytes_down": int(statistics.median(r["bytes_down"] for r in ok)),
            "load1": statistics.median(r["load1"] for r in ok),
        })
    return out


def group(results):
    groups = {}
    for r in results:
        groups.setdefault((r["scenario"], r["builder"]), []).append(r)
    return [summarise(rows) for rows in groups.values()]


def add_ratios(summaries):
    """rbuild/buildah ratios of median wall time, CPU and peak RSS, per scenario."""
    by_key = {(s["scenario"], s["builder"]): s for s in summaries}
    for s in summaries:
        peer = by_key.get((s["scenario"], "buildah"))
        if s["builder"] == "rbuild" and "wall_s" in s and peer and "wall_s" in peer:
            s["ratio_vs_buildah"] = {
                "wall": s["wall_s"]["median"] / peer["wall_s"]["median"],
                "cpu": s["cpu_s"]["median"] / max(peer["cpu_s"]["median"], 1e-9),
                "rss": s["max_rss_kb"] / max(peer["max_rss_kb"], 1),
            }


def table(meta, summaries):
    header = ["scenario", "builder", "ok", "wall median", "wall min-max", "cpu u+s",
              "peak RSS", "pushed", "pulled", "load1", "rbuild/peer wall cpu rss"]
    lines = []
    for s in summaries:
        if "wall_s" not in s:
            text = s["note"] or s["status"]
            ok = "-" if s["status"] == "skipped" else f"{s['runs_ok']}/{s['runs']}"
            lines.append([s["scenario"], s["builder"], ok, text])
            continue
        w, c = s["wall_s"], s["cpu_s"]
        ratio = s.get("ratio_vs_buildah")
        lines.append([
            s["scenario"], s["builder"], f"{s['runs_ok']}/{s['runs']}",
            f"{w['median']:.2f} s", f"{w['min']:.2f}-{w['max']:.2f} s",
            f"{c['median']:.2f} s", human_bytes(s["max_rss_kb"] * 1024),
            human_bytes(s["bytes_up"]), human_bytes(s["bytes_down"]),
            f"{s['load1']:.2f}",
            f"{ratio['wall']:.2f}x {ratio['cpu']:.2f}x {ratio['rss']:.2f}x" if ratio else "-",
        ])
    widths = [len(h) for h in header]
    for line in lines:
        # free-text rows (skipped, failed) share only the first three columns
        cells = line if len(line) == len(header) else line[:3]
        widths[:len(cells)] = [max(w, len(c)) for w, c in zip(widths, cells)]

    def fmt(cells):
        if len(cells) < len(header):  # a skipped/failed row: free text after the first columns
            head = "  ".join(c.ljust(w) for c, w in zip(cells[:3], widths))
            return head + "  " + cells[3]
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [
        f"# {meta['date']}  runs={meta['runs']}  nproc={meta['nproc']}  mem={meta['mem']}  "
        f"kernel={meta['kernel']}",
        f"# disk: {meta['disk']}",
        f"# load average: start {meta['load_start']}  end {meta.get('load_end', '?')}"
        "  (shared machine: numbers are noisy)",
        f"# buildah: {meta.get('buildah_version', '-')}  rbuild: {meta.get('rbuild', '-')}"
        + (f"  RBUILD_ARGS: {meta['rbuild_args']}" if meta.get("rbuild_args") else ""),
        fmt(header), fmt(["-" * w for w in widths]),
    ]
    out += [fmt(line) for line in lines]
    return "\n".join(out)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: report.py META_JSON RESULTS_JSONL [--json]")
    with open(sys.argv[1]) as f:
        meta = json.load(f)
    results = []
    with open(sys.argv[2]) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"report.py: {sys.argv[2]}:{lineno}: bad JSON: {e}")
    summaries = group(results)
    add_ratios(summaries)
    if sys.argv[3:] == ["--json"]:
        json.dump({"meta": meta, "scenarios": summaries}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(table(meta, summaries))


if __name__ == "__main__":
    main()
