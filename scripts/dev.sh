#!/usr/bin/env bash
# Serves the worker on http://127.0.0.1:8787 with local Durable Objects and a
# local D1 database, both kept under .wrangler/ so a restart loses nothing.
# With nothing changed since the last start it is ready in a few seconds:
# the worker is built once per change (scripts/build.sh skips an up-to-date
# build) and without wasm-opt (BUILD_MODE=dev; deployments use the full
# build), and nothing is fetched from the network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/node22.sh || exit 1
if [ ! -f .dev.vars ]; then
  cp .dev.vars.example .dev.vars
  echo "Created .dev.vars from .dev.vars.example (development secrets)."
fi
export WRANGLER_SEND_METRICS=false
# Wrangler's documented switch: the placeholder `Request.cf` object instead of
# fetching one from Cloudflare (which fails offline, and the worker reads none).
export CLOUDFLARE_CF_FETCH_ENABLED=false
# Inherited by the wrangler.toml build command (scripts/build.sh), which
# wrangler dev runs as it starts and again on each change to src/.
export BUILD_MODE=dev
# The demo chat page (demo/ with the client SDK) into demo/dist/.
bash demo/build.sh
# The D1 migrations, applied locally to every history shard (CI=true: without
# the interactive confirmation), unless they were all applied since
# migrations/ and wrangler.toml last changed: each wrangler command takes a
# few seconds to start.
migrated=.wrangler/dev-migrated
if [ -d .wrangler/state/v3/d1 ] && [ -f "$migrated" ] \
   && [ -z "$(find migrations wrangler.toml -newer "$migrated" | head -n 1)" ]; then
  echo "D1 migrations: all applied to the local shards (none changed since)"
else
  mkdir -p .wrangler
  touch "$migrated.next"
  for db in $(grep -oE '^binding = "DB_[0-9]+"' wrangler.toml | cut -d'"' -f2); do
    CI=true npx wrangler d1 migrations apply "$db" --local
  done
  mv "$migrated.next" "$migrated"
fi
# Local only, so a deploy publishes neither: the demo page (demo/, built into
# demo/dist/ by demo/build.sh) served at / as static assets (only paths
# that are files there; /ws, /v1/*, /api/* and the rest reach the worker), and
# DEV_TOKENS=1, which lets /dev/token mint client tokens for it.
exec npx wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" --assets demo/dist --var DEV_TOKENS:1 "$@"
