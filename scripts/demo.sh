#!/usr/bin/env bash
# The main job on the default model, from a fresh clone: install build dependencies, build,
# fetch SmolLM2-135M-Instruct (cached outside the checkout), and generate text.
# Usage: scripts/demo.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --build-only
make -j"$(nproc)" build/slimlm >/dev/null
model=$(scripts/fetch-model.sh)
prompt=${1:-The capital of France is}
build/slimlm run -m "$model" -p "$prompt" -n 32 --temp 0
