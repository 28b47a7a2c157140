#!/usr/bin/env bash
# Every test: native unit tests of the core, then the integration suite
# against the built worker in workerd (Miniflare). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
echo "== cargo test (core, native)"
cargo test --quiet
echo "== integration tests (built worker in workerd)"
node --test --test-concurrency=2 --test-reporter=spec tests/integration/
