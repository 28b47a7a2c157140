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
# worker-build keeps the wasm names section (about 30 KB gzipped). Names make
# profiles readable (KEEP_WASM_NAMES=1 keeps them); deployments do not need them.
# A second -Oz pass over worker-build's output takes about 5 s and 6 KB
# (gzipped) more off, which keeps the bundle under 250 KB gzipped. It may
# assume the lowest 1 KB of memory unused (--low-memory-unused): Rust's
# stack starts at 1 MB and grows down, so only an overflowing stack would
# reach it.
if [ -z "${KEEP_WASM_NAMES:-}" ]; then
  features=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory
            --enable-multivalue --enable-reference-types --enable-exception-handling)
  "$WASM_OPT_BIN" "${features[@]}" -Oz --low-memory-unused --strip-debug build/index_bg.wasm -o build/index_bg.wasm
fi
