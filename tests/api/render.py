"""docs/openapi.yaml rendered as docs/openapi.json, the copy the worker serves
at /openapi.json (it is compiled in: the wasm has no YAML parser).

    python tests/api/render.py           # fails when the JSON is stale
    python tests/api/render.py --write   # rewrites it
"""
import json
import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parents[2]
spec = yaml.safe_load((root / "docs" / "openapi.yaml").read_text())
# The anchors' home; every use of them is expanded already.
spec.pop("x-shared-responses", None)
rendered = json.dumps(spec, separators=(",", ":"), ensure_ascii=False) + "\n"
target = root / "docs" / "openapi.json"
if "--write" in sys.argv:
    target.write_text(rendered)
elif not target.exists() or target.read_text() != rendered:
    sys.exit("docs/openapi.json is not docs/openapi.yaml rendered: run python tests/api/render.py --write")
