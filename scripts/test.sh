#!/usr/bin/env bash
# Every test: native unit tests of the core, fuzzing of every parser for a
# bounded time, the integration suite against the built worker in workerd
# (Miniflare), the HTTP API against docs/openapi.yaml (Schemathesis, from
# PyPI), the client SDK's tests, the demo page in headless Chromium, and
# the Go client's tests, after the hygiene gates (rustfmt, clippy, tsc).
# Installs what it needs.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# Miniflare 5 (the integration, SDK and browser tests) needs Node ≥ 22.
. scripts/node22.sh || exit 1
bash scripts/build.sh || exit 1
log=$(mktemp)
status=0
echo "== hygiene gates (rustfmt, clippy native and wasm, tsc of the SDK and the demo, the wasm budget)"
gates=0 gate_fails=0
gate() {
  gates=$((gates + 1))
  if "$@"; then echo "gate ok: $*"; else echo "gate FAILED: $*"; gate_fails=$((gate_fails + 1)); status=1; fi
}
gate cargo fmt --check
gate cargo clippy --quiet --all-targets -- -D warnings
gate cargo clippy --quiet --target wasm32-unknown-unknown --all-features -- -D warnings
gate npx --no-install tsc --noEmit -p client
gate npx --no-install tsc --noEmit -p demo
gate node scripts/wasm-size.mjs
echo "hygiene: $((gates - gate_fails)) passed, $gate_fails failed" | tee -a "$log"
echo "== cargo test (core, native)"
cargo test --quiet 2>&1 | tee -a "$log" || status=1
echo "== fuzzing (every parser of outside bytes, FUZZ_SECONDS each)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}" 2>&1 | tee -a "$log" || status=1
echo "== integration tests (built worker in workerd)"
node --test --test-concurrency=2 --test-reporter=spec tests/integration/*.test.mjs 2>&1 | tee -a "$log" || status=1
echo "== the HTTP API against its OpenAPI contract (Schemathesis)"
bash tests/api/run.sh 2>&1 | tee -a "$log" || status=1
bash client/test.sh 2>&1 | tee -a "$log" || status=1
echo "== browser tests (demo page in headless Chromium)"
bash tests/browser/run.sh 2>&1 | tee -a "$log" || status=1
echo "== Go client (go test against the built worker in workerd)"
bash clients/go/test.sh 2>&1 | tee -a "$log" || status=1
# One closing line for every runner.
awk '
  /^test result: / { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^ℹ pass / { p += $3 }
  /^ℹ fail / { f += $3 }
  /^fuzz: [0-9]+ passed/ { p += $2; f += $4 }
  /^hygiene: [0-9]+ passed/ { p += $2; f += $4 }
  END { printf "%d passed, %d failed\n", p, f }
' "$log"
rm -f "$log"
exit $status
