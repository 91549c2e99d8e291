#!/usr/bin/env python3
"""Run a build command and show where its time goes, from its own output.

Usage: phases.py LOG -- COMMAND [ARGS...]

Runs COMMAND with stdout+stderr merged, writes every line to LOG prefixed
with the seconds since start, and prints to stderr a breakdown: the time
between consecutive "phase marker" lines (buildah's STEP n/m, COMMIT,
"Getting image source signatures", "Copying blob", "Writing manifest",
rbuild's step lines...), longest first. Exits with COMMAND's status.

Markers are matched on the line's start, so debug-level lines
(`--log-level debug`) are kept in LOG but do not split phases unless they
match MARKERS below.
"""

import re
import subprocess
import sys
import time

MARKERS = re.compile(
    r"^(STEP \d+/\d+|\[\d+/\d+\] STEP|COMMIT|Getting image source signatures|Copying blob|"
    r"Copying config|Writing manifest|Storing signatures|-->|#\d+ |==> |built |pushed )")
MARKER_TEXT_WIDTH = 90


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: phases.py LOG -- COMMAND [ARGS...]")
    log_path, cmd = sys.argv[1], sys.argv[3:]
    start = time.monotonic()
    phases = [("start", 0.0)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        for line in proc.stdout:
            now = time.monotonic() - start
            log.write(f"{now:9.3f} {line}")
            if MARKERS.match(line):
                phases.append((line.strip()[:MARKER_TEXT_WIDTH], now))
        rc = proc.wait()
    end = time.monotonic() - start
    phases.append(("end", end))
    spans = [(phases[i + 1][1] - t, name) for i, (name, t) in enumerate(phases[:-1])]
    print(f"total {end:.2f} s; phases longer than 2% of it, longest first:", file=sys.stderr)
    for secs, name in sorted(spans, reverse=True):
        if secs >= 0.02 * end:
            print(f"  {secs:7.2f} s  {100 * secs / end:5.1f}%  {name}", file=sys.stderr)
    sys.exit(rc)


if __name__ == "__main__":
    main()
