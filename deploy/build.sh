#!/usr/bin/env bash
# Builds the rbuild images with rbuild itself: a static rbuild (glibc, crt-static), the
# context from make-context.sh, then deploy/Dockerfile's two targets. Extra arguments go to
# both builds; give destinations as --destination REPO:TAG (the debug image gets TAG-debug).
# Example: bash deploy/build.sh --destination registry.example.com/tools/rbuild:1.0
set -euo pipefail
cd "$(dirname "$0")/.."
# getrandom_backend: the getrandom system call, not /dev/urandom (a static binary cannot find
# glibc's getrandom by dlsym).
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' cargo build --release \
  --target x86_64-unknown-linux-gnu -p rbuild-cli
binary=target/x86_64-unknown-linux-gnu/release/rbuild
work=$(mktemp -d /tmp/rbuild-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
bash deploy/make-context.sh "$binary" "$work"

plain=() debug=()
while [ $# -gt 0 ]; do
  case "$1" in
    --destination|-d) plain+=("$1" "$2"); debug+=("$1" "$2-debug"); shift 2 ;;
    *) plain+=("$1"); debug+=("$1"); shift ;;
  esac
done
"$binary" --context "$work" --dockerfile "$(pwd)/deploy/Dockerfile" --target rbuild "${plain[@]}"
"$binary" --context "$work" --dockerfile "$(pwd)/deploy/Dockerfile" --target debug "${debug[@]}"
