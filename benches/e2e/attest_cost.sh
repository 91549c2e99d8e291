#!/usr/bin/env bash
# What the build report, provenance and SBOM cost on the small-app scenario.
#
#   benches/e2e/attest_cost.sh [--runs N] [--scenario NAME]
#
# Runs benches/e2e/run.sh (rbuild only, one run at a time) alternately without and with
# `--report R.html --report R.json --provenance --sbom`, N times each (default 5), so that the
# load of a shared machine falls on both alike, and prints the medians of wall and CPU time
# (user + sys of the rbuild process tree) and the difference. The baseline passes
# `--provenance=false` (provenance is on by default when pushing). Needs what run.sh needs
# and a release build of rbuild (RBUILD=... or target/release/rbuild).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNS=5
SCENARIO=small-app
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "attest_cost.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "attest_cost.sh: --runs: not a positive number" >&2; exit 2; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-attest-cost.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
BASE_ARGS="--provenance=false"
ATTEST_ARGS="--report $OUT/report.html --report $OUT/report.json --provenance --sbom"
for i in $(seq 1 "$RUNS"); do
  for variant in base attest; do
    if [ "$variant" = base ]; then args=$BASE_ARGS; else args=$ATTEST_ARGS; fi
    echo "[attest_cost] run $i/$RUNS: $variant" >&2
    RBUILD_ARGS=$args "$HERE/run.sh" --builders rbuild --scenario "$SCENARIO" --runs 1 --json \
      >"$OUT/$variant-$i.json"
  done
done
[ -s "$OUT/report.json" ] || { echo "attest_cost.sh: the attest runs wrote no report" >&2; exit 1; }
python3 - "$OUT" "$RUNS" "$SCENARIO" <<'PY'
import json, statistics, sys, glob, os
out, runs, scenario = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rows(variant):
    walls, cpus = [], []
    for i in range(1, runs + 1):
        doc = json.load(open(os.path.join(out, f"{variant}-{i}.json")))
        for r in doc["scenarios"]:
            for raw in r.get("raw", []):
                if raw["status"] == "ok":
                    walls.append(raw["wall_s"]); cpus.append(raw["user_s"] + raw["sys_s"])
    return walls, cpus
bw, bc = rows("base"); aw, ac = rows("attest")
if not bw or not aw:
    sys.exit("attest_cost.sh: some runs failed")
med = statistics.median
print(f"{scenario}: {len(bw)} runs each, medians (min-max)")
print(f"{'':28} {'wall':>22} {'cpu (user+sys)':>22}")
for name, w, c in (("baseline (--provenance=false)", bw, bc), ("report+provenance+sbom", aw, ac)):
    print(f"{name:28} {med(w):7.2f} s ({min(w):.2f}-{max(w):.2f}) {med(c):8.2f} s ({min(c):.2f}-{max(c):.2f})")
dw = (med(aw) / med(bw) - 1) * 100; dc = (med(ac) / med(bc) - 1) * 100
print(f"{'difference':28} {dw:+9.1f} %{'':12} {dc:+9.1f} %")
PY
