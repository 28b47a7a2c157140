#!/usr/bin/env bash
# Installs what building and testing need, skipping whatever is already there:
# npm packages, the wasm32 target, wasm-bindgen-cli and worker-build (pinned,
# built with `cargo install` because their prebuilt binaries are downloaded from elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
WORKER_BUILD_VERSION=0.8.7

if ! command -v cargo >/dev/null 2>&1; then
  echo "Rust is required: install it with rustup (https://rustup.rs) and run this again." >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

if [ ! -f node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ] \
   || { [ -f package-lock.json ] && [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
fi

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# The hygiene gates of `npm test` need rustfmt and clippy.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  echo "Installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)..."
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION"
fi

if ! worker-build --version 2>/dev/null | grep -qx "$WORKER_BUILD_VERSION"; then
  echo "Installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)..."
  cargo install worker-build --version "=$WORKER_BUILD_VERSION"
fi
