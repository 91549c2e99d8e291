#!/usr/bin/env bash
# Installs what rbuild's tests and examples need on a fresh Debian machine (run as root, or
# with sudo available). Safe to run again: apt skips what is already there.
set -euo pipefail

packages=(
  docker-registry   # the CNCF Distribution server the registry tests push to and pull from
  busybox-static    # the test kit makes base images from it (no image can be pulled here)
  uidmap            # newuidmap/newgidmap for rootless RUN with a full id range
  slirp4netns       # --network sandbox (a step's own network with outbound access)
  gcc libc6-dev     # the sandbox escape suite compiles its static probe (cc -static)
  skopeo            # independent client that checks our layouts, archives and pushes
  umoci             # independent OCI layout reader
  buildah           # the differential oracle for Dockerfile behaviour
  util-linux        # unshare, runuser, setpriv for namespace and non-root tests
  passwd            # useradd for the non-root tests
  attr              # getfattr/setfattr for xattr checks
  openssl
  python3           # the benchmark harness's helpers (standard library only)
  ca-certificates
  tar gzip zstd coreutils
  time              # /usr/bin/time for the benchmarks' peak RSS
  git               # git build contexts (git-daemon included: the git:// context test)
  chromium          # headless browser that renders the build report in the attestation tests
)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found: install a Rust toolchain (rustup) first" >&2
  exit 1
fi
echo "install-deps: ok"
