#!/usr/bin/env bash
# Every test: native unit tests of the core, then the integration suite
# against the built worker in workerd (Miniflare). Installs what it needs.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh || exit 1
log=$(mktemp)
status=0
echo "== cargo test (core, native)"
cargo test --quiet 2>&1 | tee -a "$log" || status=1
echo "== integration tests (built worker in workerd)"
node --test --test-concurrency=2 --test-reporter=spec tests/integration/ 2>&1 | tee -a "$log" || status=1
# One closing line for both runners.
awk '
  /^test result: / { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^ℹ pass / { p += $3 }
  /^ℹ fail / { f += $3 }
  END { printf "%d passed, %d failed\n", p, f }
' "$log"
rm -f "$log"
exit $status
