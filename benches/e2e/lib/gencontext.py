#!/usr/bin/env python3
"""Generate one scenario's build inputs, deterministically.

Usage: gencontext.py SCENARIO SCENARIOS_DIR OUT_DIR --registry HOST:PORT [--change N]

Writes OUT_DIR/Dockerfile (the scenario's Dockerfile with {{REGISTRY}}
replaced) and OUT_DIR/context/. The Dockerfile sits outside the context so
that `COPY . ...` copies exactly the generated files.

--change N (small-app and its variants only) rewrites one source file,
src/m00/file0000.txt, with content that depends on N: the "one source file
changed" of the one-change scenario.
"""

import argparse
import os
import random
import sys

# Scenario -> (directory holding its Dockerfile, context generator name).
SCENARIOS = {
    "small-app": "small-app",
    "one-change": "small-app",
    "fully-cached": "small-app",
    "many-files": "many-files",
    "big-base": "big-base",
    "multistage": "multistage",
    "big-run": "big-run",
}

SMALL_APP_FILES = 2_000
SMALL_APP_BYTES = 50 * 1024 * 1024
SMALL_APP_SEED = 11
CHANGED_FILE = "src/m00/file0000.txt"


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def small_app_context(ctx):
    """2,000 files of hex text, 50 MiB in total, 40 dirs of 50 files."""
    rng = random.Random(SMALL_APP_SEED)
    each = SMALL_APP_BYTES // SMALL_APP_FILES
    for i in range(SMALL_APP_FILES):
        data = rng.randbytes((each + 1) // 2).hex().encode()[:each]
        write(os.path.join(ctx, f"src/m{i // 50:02d}/file{i:04d}.txt"), data)


def change_one_file(ctx, n):
    path = os.path.join(ctx, CHANGED_FILE)
    with open(path, "ab") as f:
        f.write(f"\n// change {n}\n".encode())


def big_base_context(ctx):
    write(os.path.join(ctx, "one.txt"), b"one file copied onto a big base\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("scenarios_dir")
    ap.add_argument("out")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--change", type=int)
    args = ap.parse_args()

    source = SCENARIOS[args.scenario]
    dockerfile_path = os.path.join(args.scenarios_dir, source, "Dockerfile")
    try:
        with open(dockerfile_path) as f:
            dockerfile = f.read()
    except OSError as e:
        sys.exit(f"gencontext.py: {dockerfile_path}: {e.strerror}")
    ctx = os.path.join(args.out, "context")
    os.makedirs(ctx, exist_ok=True)
    write(os.path.join(args.out, "Dockerfile"),
          dockerfile.replace("{{REGISTRY}}", args.registry).encode())
    if source == "small-app":
        if not os.path.exists(os.path.join(ctx, CHANGED_FILE)):
            small_app_context(ctx)
        if args.change is not None:
            change_one_file(ctx, args.change)
    elif source == "big-base":
        big_base_context(ctx)
    elif args.change is not None:
        sys.exit(f"gencontext.py: --change applies to small-app scenarios, not {args.scenario}")


if __name__ == "__main__":
    main()
