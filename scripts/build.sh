#!/usr/bin/env bash
# Builds the worker into build/worker (shim.mjs + index.wasm). Also the
# wrangler.toml build command, so `wrangler dev` and `wrangler deploy` use it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# worker-build would download these from GitHub; use the local ones instead.
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
worker-build --release "$@"
