#!/usr/bin/env bash
# The demo page's browser tests: headless Chromium (playwright-core) against
# the built worker in workerd, with the page served as static assets. Needs
# build/ (npm run build) and Chromium (apt-get install -y chromium; another
# binary with CHROMIUM_PATH); without Chromium it prints SKIP and succeeds.
set -uo pipefail
cd "$(dirname "$0")/../.."
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  # CI (.ci/run) installs Chromium and requires these tests.
  [ -n "${REQUIRE_BROWSER:-}" ] && { echo "browser tests: no Chromium at $chromium" >&2; exit 1; }
  echo "SKIP browser tests: no Chromium at $chromium (apt-get install -y chromium, or set CHROMIUM_PATH)"
  exit 0
fi
if [ ! -f build/index.js ]; then
  echo "browser tests: build/index.js is missing; run npm run build first" >&2
  exit 1
fi
# The page is bundled by esbuild, which does not type-check: check it against the SDK's types first.
node_modules/.bin/tsc -p demo/tsconfig.json || exit 1
bash demo/build.sh || exit 1
# One file at a time: each runs its own workerd and Chromium.
exec node --test --test-concurrency=1 --test-reporter=spec tests/browser/*.test.mjs
