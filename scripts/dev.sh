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
# CI=true: apply without the interactive confirmation.
CI=true npx wrangler d1 migrations apply DB --local
exec npx wrangler dev --ip 127.0.0.1 --port "${PORT:-8787}" "$@"
