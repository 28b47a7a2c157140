#!/usr/bin/env bash
# Fuzzes every parser of outside bytes for a bounded time each, starting from
# the committed corpus (fuzz/corpus/<target>/), and fails on any crash.
#
#   bash scripts/fuzz.sh [seconds-per-target] [target...]     (default 20 s, all targets)
#
# Runs on stable Rust: cargo-fuzz (installed here, pinned) builds with
# `--sanitizer none`, which needs no nightly flag; the targets are safe Rust,
# so what they look for are panics, failed invariants, hangs and runaway
# memory, not memory errors. New inputs go to a scratch corpus, so the
# committed one only changes when someone minimizes into it
# (`cargo fuzz cmin -s none -a <target>`). A crash is saved under
# fuzz/artifacts/<target>/ and reproduced with
# `cargo fuzz run -s none -a <target> fuzz/artifacts/<target>/<file>`.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET=${1:-20}
shift $(( $# > 0 ? 1 : 0 ))
case $SECONDS_PER_TARGET in '' | *[!0-9]*) echo "usage: $0 [seconds-per-target] [target...]" >&2; exit 2 ;; esac

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked || exit 1
fi
command -v c++ >/dev/null || { echo "a C++ compiler is required (libFuzzer is built from source)" >&2; exit 1; }

flags=(--sanitizer none --release --debug-assertions)
echo "== building fuzz targets"
cargo fuzz build "${flags[@]}" || exit 1

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
# FUZZ_SCRATCH=dir keeps the inputs found (to minimize into the committed
# corpus: copy them into fuzz/corpus/<target>/, then `cargo fuzz cmin`).
if [ -n "${FUZZ_SCRATCH:-}" ]; then
    scratch=$FUZZ_SCRATCH
    mkdir -p "$scratch"
else
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
fi
passed=0
failed=0
total=0
summary=()
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
    mkdir -p "$scratch/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="$scratch/$t.log"
    # The first corpus directory receives new inputs; the committed one is only read.
    cargo fuzz run "${flags[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    runs=${runs:-0}
    corpus=$(find "$scratch/$t" "fuzz/corpus/$t" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        line="fuzz $t: ok, $runs executions in ${SECONDS_PER_TARGET}s, $corpus corpus files"
    else
        failed=$((failed + 1))
        line="fuzz $t: FAILED (exit $rc) after $runs executions"
        # What libFuzzer said about the crash, and where it saved the input.
        grep -E "panicked at|^==[0-9]+==|SUMMARY|Test unit written to|Base64:|^thread '" "$log" | head -20 || true
        tail -5 "$log"
    fi
    total=$((total + runs))
    summary+=("$line")
    echo "$line"
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
echo "fuzz executions: $total"
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
