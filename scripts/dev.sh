#!/usr/bin/env bash
# Serves the worker on http://127.0.0.1:8787 with local Durable Objects and a
# local D1 database, both kept under .wrangler/ so a restart loses nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f .dev.vars ]; then
  cp .dev.vars.example .dev.vars
  echo "Created .dev.vars from .dev.vars.example (development secrets)."
fi
export WRANGLER_SEND_METRICS=false
# The demo chat page (demo/ with the client SDK) into demo/dist/.
bash demo/build.sh
# CI=true: apply without the interactive confirmation. Every history shard.
for db in $(grep -oE '^binding = "DB_[0-9]+"' wrangler.toml | cut -d'"' -f2); do
  CI=true npx wrangler d1 migrations apply "$db" --local
done
# Local only, so a deploy publishes neither: the demo page (demo/, built into
# demo/dist/ by scripts/build.sh) served at / as static assets (only paths
# that are files there; /ws, /v1/*, /api/* and the rest reach the worker), and
# DEV_TOKENS=1, which lets /dev/token mint client tokens for it.
exec npx wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" --assets demo/dist --var DEV_TOKENS:1 "$@"
