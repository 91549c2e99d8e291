#!/usr/bin/env bash
# End-to-end build benchmarks: rbuild beside buildah on the same scenarios, same machine.
#
#   benches/e2e/run.sh [--runs N] [--scenario NAME]... [--builders buildah,rbuild] [--json]
#                      [--keep-work] [--profile]
#
# RBUILD_ARGS="--compression-level 1" (say) adds flags to every rbuild build.
# Makes busybox base images (cached under $RBUILD_BENCH_CACHE), starts a private docker-registry
# on loopback behind a byte-counting forwarder, builds each scenario N times with each builder
# and prints a table (or, with --json, one JSON object) on stdout. Progress goes to stderr.
# --profile runs each build and push under lib/phases.py (buildah with --log-level debug) and
# prints where the time went; its timings include that overhead, so use it to explain, not to rank.
# Run as root (buildah's vfs/chroot mode and rbuild's sandbox need it or a subuid setup).
# See BENCHMARKS.md for the scenarios and how to read the numbers.
set -euo pipefail
# The whole script is one { } block so bash parses all of it before running any: editing
# run.sh during a long run cannot change what that run does.
{

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB=$HERE/lib
ALL_SCENARIOS=(small-app many-files big-base multistage one-change fully-cached)

RUNS=3
SCENARIOS=()
BUILDERS=buildah,rbuild
JSON=0
KEEP_WORK=0
PROFILE=0
RBUILD=${RBUILD:-$ROOT/target/release/rbuild}
CACHE=${RBUILD_BENCH_CACHE:-${TMPDIR:-/tmp}/rbuild-bench-cache}
BUSYBOX=${BUSYBOX:-/bin/busybox}
read -ra RBUILD_EXTRA <<<"${RBUILD_ARGS:-}"

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 2; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) [ $# -ge 2 ] || die "--runs needs a number"; RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#--runs=}; shift ;;
    --scenario) [ $# -ge 2 ] || die "--scenario needs a name"; IFS=, read -ra s <<<"$2"; SCENARIOS+=("${s[@]}"); shift 2 ;;
    --scenario=*) IFS=, read -ra s <<<"${1#--scenario=}"; SCENARIOS+=("${s[@]}"); shift ;;
    --builders) [ $# -ge 2 ] || die "--builders needs a list"; BUILDERS=$2; shift 2 ;;
    --builders=*) BUILDERS=${1#--builders=}; shift ;;
    --json) JSON=1; shift ;;
    --keep-work) KEEP_WORK=1; shift ;;
    --profile) PROFILE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs: '$RUNS' is not a positive whole number"
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")
for s in "${SCENARIOS[@]}"; do
  [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || die "--scenario: unknown scenario '$s' (known: ${ALL_SCENARIOS[*]})"
done
IFS=, read -ra BUILDER_LIST <<<"$BUILDERS"
for b in "${BUILDER_LIST[@]}"; do
  [[ "$b" == buildah || "$b" == rbuild ]] || die "--builders: unknown builder '$b' (known: buildah, rbuild)"
done

for tool in python3 /usr/bin/time docker-registry skopeo "$BUSYBOX"; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/install-deps.sh)"
done
if [[ " ${BUILDER_LIST[*]} " == *" buildah "* ]]; then
  command -v buildah >/dev/null || die "buildah not found (apt-get install buildah)"
fi

# ---------------------------------------------------------------- work dir, cleanup
mkdir -p "$CACHE"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-bench.XXXXXX")
REGISTRY_PID=""
PROXY_PID=""
cleanup() {
  local rc=$?
  for pid in "$PROXY_PID" "$REGISTRY_PID"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  if [ "$KEEP_WORK" = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- base images (cached)
# A base layout is cached under a key made of the generator, the busybox binary and the
# parameters, so changing any of them makes a new one.
base_layout() {  # kind extra-args... ; prints the layout dir
  local kind=$1; shift
  local key
  key=$( { sha256sum "$LIB/mkbase.py" "$BUSYBOX" | cut -d' ' -f1; echo "$kind $*"; } | sha256sum | cut -c1-16)
  local dir=$CACHE/base-$kind-$key
  if [ ! -f "$dir/index.json" ]; then
    log "making base image '$kind' in $dir (bigbase: 1 GiB / 60,000 files, about 30-60 s)"
    local t0=$SECONDS
    python3 "$LIB/mkbase.py" "$kind" "$dir" --busybox "$BUSYBOX" "$@" >/dev/null
    log "made base image '$kind' in $((SECONDS - t0)) s"
  fi
  echo "$dir"
}

BASES=(busybox)
[[ " ${SCENARIOS[*]} " == *" big-base "* ]] && BASES+=(bigbase)
declare -A BASE_DIR
for kind in "${BASES[@]}"; do BASE_DIR[$kind]=$(base_layout "$kind"); done

# ---------------------------------------------------------------- registry + byte counter
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REGISTRY_PORT=$(free_port)
mkdir -p "$WORK/registry-storage"
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry-storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$REGISTRY_PORT/v2/', timeout=1)" 2>/dev/null; then break; fi
  kill -0 "$REGISTRY_PID" 2>/dev/null || { cat "$WORK/registry.log" >&2; die "docker-registry exited at start"; }
  sleep 0.1
done
python3 "$LIB/tcpcount.py" "$REGISTRY_PORT" "$WORK/proxy.port" "$WORK/proxy.stats" 2>"$WORK/proxy.log" &
PROXY_PID=$!
for _ in $(seq 1 100); do [ -f "$WORK/proxy.port" ] && break; sleep 0.1; done
[ -f "$WORK/proxy.port" ] || die "byte counter did not start: $(cat "$WORK/proxy.log")"
# Builders talk to the registry through the counter; base images are pushed around it.
REGISTRY=127.0.0.1:$(cat "$WORK/proxy.port")
log "registry on 127.0.0.1:$REGISTRY_PORT, builders use $REGISTRY (counted)"

for kind in "${BASES[@]}"; do
  t0=$SECONDS
  skopeo copy -q --dest-tls-verify=false "oci:${BASE_DIR[$kind]}:latest" \
    "docker://127.0.0.1:$REGISTRY_PORT/bench/$kind:latest" >&2
  log "pushed base image bench/$kind in $((SECONDS - t0)) s"
done

# Prints "UP DOWN" once every connection through the counter has closed.
counter_totals() {
  local up down active
  for _ in $(seq 1 100); do
    read -r up down active <"$WORK/proxy.stats"
    [ "$active" = 0 ] && break
    sleep 0.1
  done
  echo "$up $down"
}

# ---------------------------------------------------------------- builders
RBUILD_STATE="not built (cargo build --release -p rbuild-cli or the bin/rbuild package)"
RBUILD_PREFIX=()
RBUILD_INSECURE_PULL=()
RBUILD_HAS=()  # optional flags its --help lists: cache, cache-repo, cache-dir, cache-copy-layers
detect_rbuild() {
  [ -x "$RBUILD" ] || return 1
  if "$RBUILD" --help 2>&1 | grep -q -- '--destination'; then
    RBUILD_PREFIX=("$RBUILD")
  elif "$RBUILD" build --help 2>&1 | grep -q -- '--destination'; then
    RBUILD_PREFIX=("$RBUILD" build)
  else
    RBUILD_STATE="present but its --help lists no --destination"
    return 1
  fi
  if "${RBUILD_PREFIX[@]}" --help 2>&1 | grep -q -- '--insecure-pull'; then
    RBUILD_INSECURE_PULL=(--insecure-pull)
  fi
  local flag help
  help=$("${RBUILD_PREFIX[@]}" --help 2>&1)
  for flag in cache cache-repo cache-dir cache-copy-layers; do
    if grep -qE -- "--$flag([ ,=<[]|\$)" <<<"$help"; then RBUILD_HAS+=("$flag"); fi
  done
  RBUILD_STATE="${RBUILD_PREFIX[*]} (flags found: ${RBUILD_HAS[*]:-none})"
}
RBUILD_OK=0
if [[ " ${BUILDER_LIST[*]} " == *" rbuild "* ]] && detect_rbuild; then RBUILD_OK=1; fi

rbuild_has() { [[ " ${RBUILD_HAS[*]} " == *" $1 "* ]]; }

# Why rbuild cannot run a scenario yet (empty when it can).
rbuild_missing() {
  case "$1" in
    one-change) rbuild_has cache || rbuild_has cache-dir || echo "rbuild: no --cache or --cache-dir yet (skipped)" ;;
    fully-cached) rbuild_has cache-repo || echo "rbuild: no --cache-repo yet (skipped)" ;;
  esac
}

q() { [ $# -eq 0 ] || printf '%q ' "$@"; }

# Writes a script that builds and pushes one image. Modes:
#   plain       no cache (each tool's default)
#   local-cache reuse steps from the builder's local store (buildah --layers; rbuild --cache)
#   cache-to    like local-cache, and export the step cache to CACHE_REPO
#   cache-from  an empty local store; reuse steps from CACHE_REPO only
write_build_script() {  # builder mode state_dir dockerfile context destination cache_repo script
  local builder=$1 mode=$2 state=$3 df=$4 ctx=$5 dest=$6 cache_repo=$7 script=$8
  mkdir -p "$state/tmp"
  local wrap_build="" wrap_push="" debug=""
  if [ "$PROFILE" = 1 ]; then
    wrap_build="$(q python3 "$LIB/phases.py" "${script%.sh}.build.phases" --)"
    wrap_push="$(q python3 "$LIB/phases.py" "${script%.sh}.push.phases" --)"
    debug="--log-level debug"
  fi
  {
    echo "set -euo pipefail"
    echo "export TMPDIR=$(q "$state/tmp")"
    case "$builder" in
      buildah)
        local b extra=()
        b=$(q buildah --root "$state/root" --runroot "$state/runroot" --storage-driver vfs)
        case "$mode" in
          plain) ;;
          local-cache) extra=(--layers) ;;
          cache-to) extra=(--layers --cache-to "$cache_repo") ;;
          cache-from) extra=(--layers --cache-from "$cache_repo") ;;
        esac
        echo "$wrap_build$b $debug bud --isolation chroot --tls-verify=false --jobs 2 $(q "${extra[@]}") -f $(q "$df") -t $(q "$dest") $(q "$ctx")"
        echo "$wrap_push$b $debug push --tls-verify=false $(q "$dest" "docker://$dest")"
        ;;
      rbuild)
        # A private HOME/XDG tree per state dir: rbuild's local store starts empty there.
        echo "export HOME=$(q "$state/home") XDG_CACHE_HOME=$(q "$state/home/.cache") XDG_DATA_HOME=$(q "$state/home/.local/share")"
        echo "mkdir -p \"\$HOME\""
        local extra=()
        rbuild_has cache-dir && extra+=(--cache-dir "$state/store")
        if [ "$mode" != plain ]; then
          rbuild_has cache && extra+=(--cache)
          # Cache every layer kind, as buildah's --cache-to does (Kaniko's default leaves
          # COPY/ADD/WORKDIR layers out of the registry cache).
          rbuild_has cache-copy-layers && extra+=(--cache-copy-layers)
          [ "$mode" = local-cache ] || extra+=(--cache-repo "$cache_repo")
        fi
        echo "$wrap_build$(q "${RBUILD_PREFIX[@]}") --context $(q "$ctx") --dockerfile $(q "$df") --destination $(q "$dest") --insecure $(q "${RBUILD_INSECURE_PULL[@]}" "${extra[@]}" "${RBUILD_EXTRA[@]}")"
        ;;
    esac
  } >"$script"
}

RESULTS=$WORK/results.jsonl
: >"$RESULTS"
FAILED=0

record() {  # scenario builder run status wall user sys rss up down load note
  printf '{"scenario":"%s","builder":"%s","run":%s,"status":"%s","wall_s":%s,"user_s":%s,"sys_s":%s,"max_rss_kb":%s,"bytes_up":%s,"bytes_down":%s,"load1":%s,"note":"%s"}\n' \
    "$@" >>"$RESULTS"
}

run_untimed() {  # script log
  if ! bash "$1" >"$2" 2>&1; then
    log "FAILED (untimed preparation): $1; last lines of $2:"
    tail -n 15 "$2" >&2
    return 1
  fi
}

run_timed() {  # scenario builder run script log
  local scenario=$1 builder=$2 run=$3 script=$4 logf=$5
  local load up0 down0 up1 down1 rc=0
  # Flush the previous run's writes and deletions (GiBs of vfs store for some scenarios) now,
  # untimed, so that their writeback does not land inside this run's timing.
  sync
  load=$(cut -d' ' -f1 /proc/loadavg)
  read -r up0 down0 < <(counter_totals)
  /usr/bin/time -f '%e %U %S %M' -o "$logf.time" bash "$script" >"$logf" 2>&1 || rc=$?
  read -r up1 down1 < <(counter_totals)
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$logf.time")
  if [ "$rc" = 0 ]; then
    record "$scenario" "$builder" "$run" ok "$wall" "$user" "$sys" "$rss" \
      $((up1 - up0)) $((down1 - down0)) "$load" ""
    log "  $scenario $builder run $run: ${wall}s wall, $(( (up1 - up0) / 1024 )) KiB pushed"
    if [ "$PROFILE" = 1 ]; then
      awk '/^total .* phases longer/ {p=1} p && !/^ *[0-9.]+ s +[0-9.]+% / && !/^total/ {p=0} p' "$logf" >&2
    fi
  else
    FAILED=1
    record "$scenario" "$builder" "$run" failed 0 0 0 0 0 0 "$load" "exit $rc, see $logf"
    log "  $scenario $builder run $run FAILED (exit $rc); last lines of $logf:"
    tail -n 15 "$logf" >&2
  fi
}

gen() { python3 "$LIB/gencontext.py" "$1" "$HERE/scenarios" "$2" --registry "$REGISTRY" "${@:3}"; }

run_one() {  # scenario builder run
  local s=$1 b=$2 n=$3
  local rd=$WORK/runs/$s-$b-$n
  local dest=$REGISTRY/bench/$s-$b:run$n
  local cache_repo=$REGISTRY/bench/cache-$s-$b-run$n
  mkdir -p "$rd"
  gen "$s" "$rd/in"
  local df=$rd/in/Dockerfile ctx=$rd/in/context
  case "$s" in
    small-app|many-files|big-base|multistage)
      write_build_script "$b" plain "$rd/state" "$df" "$ctx" "$dest" "$cache_repo" "$rd/timed.sh"
      run_timed "$s" "$b" "$n" "$rd/timed.sh" "$rd/timed.log"
      ;;
    one-change)
      # Warm the builder's local cache, change one source file, time the rebuild.
      write_build_script "$b" local-cache "$rd/state" "$df" "$ctx" "$REGISTRY/bench/$s-$b:warm$n" "$cache_repo" "$rd/warm.sh"
      if run_untimed "$rd/warm.sh" "$rd/warm.log"; then
        gen "$s" "$rd/in" --change "$n"
        write_build_script "$b" local-cache "$rd/state" "$df" "$ctx" "$dest" "$cache_repo" "$rd/timed.sh"
        run_timed "$s" "$b" "$n" "$rd/timed.sh" "$rd/timed.log"
      else
        FAILED=1; record "$s" "$b" "$n" failed 0 0 0 0 0 0 0 "warm-up build failed, see $rd/warm.log"
      fi
      ;;
    fully-cached)
      # Fill the cache repo from one store, then rebuild unchanged from an empty store.
      write_build_script "$b" cache-to "$rd/state-warm" "$df" "$ctx" "$REGISTRY/bench/$s-$b:warm$n" "$cache_repo" "$rd/warm.sh"
      if run_untimed "$rd/warm.sh" "$rd/warm.log"; then
        rm -rf "$rd/state-warm"
        write_build_script "$b" cache-from "$rd/state" "$df" "$ctx" "$dest" "$cache_repo" "$rd/timed.sh"
        run_timed "$s" "$b" "$n" "$rd/timed.sh" "$rd/timed.log"
      else
        FAILED=1; record "$s" "$b" "$n" failed 0 0 0 0 0 0 0 "warm-up build failed, see $rd/warm.log"
      fi
      ;;
  esac
  # Keep the logs, drop the bulky state and contexts (a vfs store is GiBs for big-base).
  rm -rf "$rd/state" "$rd/state-warm" "$rd/in"
}

# ---------------------------------------------------------------- meta + runs
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BUILDAH_VERSION=$(buildah --version 2>/dev/null || echo "not installed")

for s in "${SCENARIOS[@]}"; do
  for b in "${BUILDER_LIST[@]}"; do
    if [ "$b" = rbuild ] && [ "$RBUILD_OK" = 0 ]; then
      record "$s" rbuild 0 skipped 0 0 0 0 0 0 0 "rbuild: not yet able to build (skipped)"
      continue
    fi
    if [ "$b" = rbuild ] && [ -n "$(rbuild_missing "$s")" ]; then
      record "$s" rbuild 0 skipped 0 0 0 0 0 0 0 "$(rbuild_missing "$s")"
      continue
    fi
    log "$s with $b: $RUNS run(s)"
    for n in $(seq 1 "$RUNS"); do run_one "$s" "$b" "$n"; done
  done
done

python3 - "$WORK/meta.json" <<EOF
import json, os, sys, time
mem_kb = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal:")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "runs": $RUNS,
    "nproc": os.cpu_count(),
    "cpu": cpu,
    "mem": f"{mem_kb / 1024 / 1024:.1f} GiB",
    "kernel": os.uname().release,
    "disk": """$(df -hT "$WORK" | tail -n 1 | awk '{print $1" "$2", "$3" total, "$5" free"}')""",
    "load_start": "$LOAD_START",
    "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "buildah_version": "$BUILDAH_VERSION",
    "rbuild": """$RBUILD_STATE""",
    "profile": bool($PROFILE),
}, open(sys.argv[1], "w"), indent=2)
EOF

mkdir -p "$CACHE/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
python3 "$LIB/report.py" "$WORK/meta.json" "$RESULTS" >"$CACHE/results/$stamp.txt"
python3 "$LIB/report.py" "$WORK/meta.json" "$RESULTS" --json >"$CACHE/results/$stamp.json"
log "results saved in $CACHE/results/$stamp.{txt,json}"
if [ "$JSON" = 1 ]; then cat "$CACHE/results/$stamp.json"; else cat "$CACHE/results/$stamp.txt"; fi
exit "$FAILED"
}
