#!/usr/bin/env bash
# Builds the demo page into demo/dist/: app.ts and the modules it imports,
# bundled with the client SDK, plus the HTML and CSS as they are. Nothing
# deploys it: `npm run dev` serves it locally as static assets (scripts/dev.sh
# passes --assets demo/dist to wrangler dev), and tests/browser/run.sh builds
# it for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p demo/dist
node_modules/.bin/esbuild demo/app.ts --bundle --format=esm --target=es2022 --minify --sourcemap \
  --log-level=warning --outfile=demo/dist/app.js
cp demo/index.html demo/style.css demo/dist/
