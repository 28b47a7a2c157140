#!/usr/bin/env bash
# The HTTP API held to its contract: Schemathesis generates requests (valid
# and hostile, with and without credentials) for every operation of
# docs/openapi.yaml and runs them against the built worker in workerd. The
# run fails on any server error (5xx), response outside its schema,
# undocumented status code, wrong content type, or an operation that answers
# without the credentials it requires. Schemathesis (pinned) goes into
# tests/api/.venv from PyPI. Prints `ℹ pass N` / `ℹ fail M` for the summary.
set -uo pipefail
cd "$(dirname "$0")/../.."
SCHEMATHESIS_VERSION=4.32.5
venv=tests/api/.venv
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"; } || exit 1
fi
fail=0
# The served copy is the YAML, rendered.
"$venv/bin/python" tests/api/render.py || fail=1

coproc SERVER { exec node tests/api/serve.mjs; }
read -r info <&"${SERVER[0]}" || { echo "the worker did not start" >&2; exit 1; }
field() { node -e "process.stdout.write(JSON.parse(process.argv[1])[process.argv[2]])" "$info" "$1"; }
url=$(field url)
export CLIENT_TOKEN API_KEY
CLIENT_TOKEN=$(field clientToken)
API_KEY=$(field apiKey)
# Schemathesis reads the local file (so a spec change needs no rebuild);
# the worker's served copy must be that file, byte for byte.
node -e '
  const [url, file] = process.argv.slice(1);
  const want = require("fs").readFileSync(file, "utf8");
  fetch(url).then((r) => r.text()).then((got) => {
    if (got !== want) {
      console.error("the worker serves an /openapi.json other than docs/openapi.json: rebuild it (scripts/build.sh)");
      process.exit(1);
    }
  }, (e) => { console.error(`GET ${url}: ${e}`); process.exit(1); });
' "$url/openapi.json" docs/openapi.json || fail=1
out=$(mktemp)
"$venv/bin/schemathesis" --config-file tests/api/schemathesis.toml run docs/openapi.json --url "$url" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" --workers 1 --no-color 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
exec {SERVER[1]}>&-
wait "$SERVER_PID" 2>/dev/null
[ "$status" -eq 0 ] || fail=1
echo "schemathesis: $(grep -oE '[0-9]+ (generated|test cases)[^,]*' "$out" | head -3 | tr '\n' ' ')"
rm -f "$out"
if [ "$fail" -eq 0 ]; then echo "ℹ pass 1"; echo "ℹ fail 0"; else echo "ℹ pass 0"; echo "ℹ fail 1"; fi
exit $fail
