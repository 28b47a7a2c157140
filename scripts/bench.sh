#!/usr/bin/env bash
# Builds the worker, then runs the benchmark (bench/run.mjs) with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
node bench/run.mjs "$@"
