#!/usr/bin/env bash
# The main job on the bundled example (examples/hello). Builds rbuild, then runs it.
# Today rbuild plans the Dockerfile (the build engine is still being written: see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p rbuild-cli
./target/release/rbuild plan -f examples/hello/Dockerfile
