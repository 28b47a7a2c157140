#!/usr/bin/env bash
# Builds the worker into build/ (index.js + index_bg.wasm). Also the
# wrangler.toml build command, so `wrangler dev` and `wrangler deploy` use it.
#
# Two kinds of build, the same cargo release build of the crate either way:
# - release (the default): wasm-opt -Oz twice, names stripped. What
#   `wrangler deploy`, `npm run deploy:check`, `npm test` and `npm run bench`
#   run.
# - dev (BUILD_MODE=dev, set by scripts/dev.sh for `npm run dev` and the
#   rebuilds `wrangler dev` makes on a change to src/): no wasm-opt, which
#   takes most of a build's time; a bigger wasm that keeps its names.
# A build is skipped when build/ already holds one of the same kind (or, for
# dev, a release build: the same code, optimized), made after every input
# last changed (src/, migrations/ (src/history.rs includes one),
# docs/openapi.json (src/edge/entry.rs includes it), Cargo.toml, Cargo.lock,
# package-lock.json and this script, by modification time, as make and cargo
# compare them), so commands that each run this script build once per
# change. FORCE_BUILD=1 builds anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${BUILD_MODE:-release}"
case "$mode" in
  release) kind="release${KEEP_WASM_NAMES:+ keeping names}" ;;
  dev) kind="dev" ;;
  *) echo "scripts/build.sh: BUILD_MODE is release or dev, not '$mode'" >&2; exit 2 ;;
esac
kind="$kind${*:+ $*}"
inputs=(src migrations docs/openapi.json Cargo.toml Cargo.lock package-lock.json scripts/build.sh)
stamp=build/.built
built=$(cat "$stamp" 2>/dev/null || true)
if [ -z "${FORCE_BUILD:-}" ] && [ -f build/index.js ] && [ -f build/index_bg.wasm ] \
   && { [ "$built" = "$kind" ] || { [ "$kind" = dev ] && [[ "$built" =~ ^release(\ keeping\ names)?$ ]]; }; } \
   && [ -z "$(find "${inputs[@]}" -newer "$stamp" 2>/dev/null | head -n 1)" ]; then
  echo "build/ is up to date ($built build); nothing to build"
  exit 0
fi
# The stamp takes the time the build starts: an input saved while it runs
# is newer, so the next run builds again.
mkdir -p target
echo "$kind" > target/build-stamp.next

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# worker-build would download these from GitHub; use the local ones instead.
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
if [ "$mode" = dev ]; then
  worker-build --release --no-opt "$@"
else
  worker-build --release "$@"
  # worker-build keeps the wasm names section (about 30 KB gzipped). Names make
  # profiles readable (KEEP_WASM_NAMES=1 keeps them); deployments do not need them.
  # A second -Oz pass over worker-build's output takes about 5 s and 6 KB
  # (gzipped) more off (scripts/wasm-size.mjs holds the budget). It may
  # assume the lowest 1 KB of memory unused (--low-memory-unused): Rust's
  # stack starts at 1 MB and grows down, so only an overflowing stack would
  # reach it.
  if [ -z "${KEEP_WASM_NAMES:-}" ]; then
    features=(--enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory
              --enable-multivalue --enable-reference-types --enable-exception-handling)
    "$WASM_OPT_BIN" "${features[@]}" -Oz --low-memory-unused --strip-debug build/index_bg.wasm -o build/index_bg.wasm
  fi
fi
mv target/build-stamp.next "$stamp"
