#!/usr/bin/env bash
# The Go client's tests: gofmt and go vet, then go test against the built
# worker in workerd (build/, not rebuilt here; workers.mjs starts it).
# Without Go it prints SKIP and succeeds (apt-get install -y golang);
# REQUIRE_GO=1 (.ci/run) makes that a failure. Prints ℹ pass N / ℹ fail M,
# as node --test does, for the summary of scripts/test.sh.
set -uo pipefail
cd "$(dirname "$0")"
if ! command -v go >/dev/null; then
  [ -n "${REQUIRE_GO:-}" ] && { echo "Go client tests: go is not installed" >&2; exit 1; }
  echo "SKIP: go not installed (apt-get install -y golang)"
  exit 0
fi
if [ ! -f ../../build/index.js ]; then
  echo "Go client tests: build/index.js is missing; run npm run build first" >&2
  exit 1
fi
echo "($(go version))"
unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "gofmt: not formatted: $unformatted" >&2; exit 1; }
go vet ./... || exit 1
out=$(mktemp)
node workers.mjs go test -count=1 -v ./... 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
pass=$(grep -c '^--- PASS' "$out")
fail=$(grep -c '^--- FAIL' "$out")
skip=$(grep -c '^--- SKIP' "$out")
rm -f "$out"
# A run that failed before any test (a build error, say) still counts as a failure.
[ "$status" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
echo "ℹ pass $pass"
echo "ℹ fail $fail"
echo "ℹ skipped $skip"
exit "$status"
