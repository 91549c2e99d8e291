#!/usr/bin/env bash
# The one test command: installs the test dependencies, then runs every check and test of the
# workspace. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

echo "== fuzz targets compile (their own workspace; RUSTC_BOOTSTRAP=1 on the stable toolchain)"
(cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$PWD/../target" cargo build --bins)

echo "== cargo test --workspace"
cargo test --workspace
