#!/usr/bin/env bash
# Builds the worker, then runs the benchmark (bench/run.mjs) with any
# arguments given. Plots need matplotlib, installed into bench/.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Miniflare 5 needs Node ≥ 22.
. scripts/node22.sh || exit 1
bash scripts/build.sh
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv bench/.venv && bench/.venv/bin/pip install --quiet matplotlib \
    || echo "matplotlib unavailable: the report will have no plots" >&2
fi
node bench/run.mjs "$@"
