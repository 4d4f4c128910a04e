"""The OpenAPI document: generated from the models, committed, valid, and covering exactly the
routes the handlers serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tornado import web

from jupyter_stax.server.events import SCHEMA_FILES
from jupyter_stax.server.handlers import HANDLERS
from jupyter_stax.server.openapi import OPERATIONS, document, dumps

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "openapi.json"


def test_committed_document_is_up_to_date() -> None:
    assert COMMITTED.read_text() == dumps(), (
        "docs/openapi.json drifted from the code; regenerate it with "
        "`python -m jupyter_stax.server.openapi > docs/openapi.json`"
    )


def test_module_prints_the_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.server.openapi"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert out == dumps()


def test_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document())


def test_every_route_is_documented_and_every_operation_served() -> None:
    served = set()
    for pattern, handler in HANDLERS:
        if "(?P<rest>" in pattern:
            continue  # the JSON 404 for everything else
        path = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).replace("\\.", ".")
        for m in ("get", "post", "put", "patch", "delete"):
            if getattr(handler, m) is not getattr(web.RequestHandler, m):
                served.add((m, path))
    documented = {(op.method, "/stax/api" + op.path) for op in OPERATIONS}
    assert served == documented


def test_every_operation_documents_its_errors_as_error_bodies() -> None:
    doc = document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = {int(c) for c in op["responses"]}
            assert {403, 500, 503} <= codes, (method, path)
            for code, resp in op["responses"].items():
                if int(code) >= 400:
                    schema = resp["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert "{" + p["name"] + "}" in path
    for ref in re.findall(r'"\$ref": "([^"]+)"', json.dumps(doc)):
        assert ref.split("/")[-1] in doc["components"]["schemas"], ref


def test_event_schemas_load_in_jupyter_events() -> None:
    from jupyter_events.schema import EventSchema

    for schema_id, path in SCHEMA_FILES.items():
        s = EventSchema(path)
        assert s.id == schema_id and s.version == "1"
