"""Property-based testing of the live API with schemathesis: for every operation of the served
OpenAPI document, valid and invalid requests (generated from the document) never get a 5xx.

The server is a real ``jupyter server`` process. Submissions run for real on the ``local``
cluster, so every generated step's script is replaced by ``true`` before the request is sent
(what is fuzzed is the validation of everything else, not bash).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from ..waiting import wait_for
from .real_server import RealServer

schemathesis = pytest.importorskip("schemathesis")

MAX_EXAMPLES = 20
#: statuses no request may get
SERVER_ERRORS = range(500, 600)
FAILING = {
    "name": "fuzzed",
    "steps": [
        {"name": "a", "run": "echo out; echo err >&2"},
        {"name": "b", "after": ["a"], "run": "exit 3", "retries": 1},
    ],
}


@pytest.fixture
def server(real_server: RealServer) -> RealServer:
    return real_server


def harmless(body: Any) -> Any:
    """A submission body with every step's script replaced by ``true``."""
    import yaml

    if not isinstance(body, dict):
        return body
    wf = body.get("workflow")
    if isinstance(wf, str):
        try:
            wf = yaml.safe_load(wf)
        except yaml.YAMLError:
            return body
    if isinstance(wf, dict) and isinstance(wf.get("steps"), list):
        steps = [
            {**s, **{k: "true" for k in ("run", "script") if k in s}} if isinstance(s, dict) else s
            for s in wf["steps"]
        ]
        body = {**body, "workflow": {**wf, "steps": steps}}
    return body


@pytest.mark.timeout(240)
def test_no_operation_answers_with_a_server_error(server: RealServer) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode

    auth = {"Authorization": f"token {server.token}"}
    # an execution that exists (failed, so that retry and the logs of attempts have something
    # to work on): the operations on one execution are fuzzed with its id too
    code, ex = server.call("POST", "executions", {"workflow": FAILING})
    assert code == 201, ex
    wait_for(
        lambda: server.call("GET", f"executions/{ex['id']}")[1]["state"] == "failed",
        60,
        f"execution {ex['id']} to fail",
        interval=0.2,
    )
    real = {"execution_id": ex["id"]}
    schema = schemathesis.openapi.from_url(f"{server.url}stax/api/openapi.json", headers=auth)
    failures: list[str] = []
    calls = 0
    t0 = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    passes: list[tuple[Any, GenerationMode, dict[str, str] | None]] = []
    for op in operations:
        names = {p.name for p in op.path_parameters}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            passes.append((op, mode, None))
            if "execution_id" in names:
                passes.append((op, mode, real))
            if "step" in names:
                passes.append((op, mode, {**real, "step": "a"}))

    def fuzz(op: Any, mode: GenerationMode, path_parameters: dict[str, str] | None) -> None:
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        def check(case: Any) -> None:
            nonlocal calls
            if op.method.upper() == "POST" and op.path.endswith("/executions"):
                case.body = harmless(case.body)
            response = case.call(headers=auth, timeout=30)
            calls += 1
            if response.status_code in SERVER_ERRORS:
                body = "" if case.body is None else str(case.body)[:300]
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query or ''} {body} -> "
                    f"{response.status_code} {response.text[:300]}"
                )

        check()

    for op, mode, path_parameters in passes:
        fuzz(op, mode, path_parameters)
    took = time.monotonic() - t0
    assert not failures, "\n".join(failures[:20])
    assert calls >= len(operations) * 2, calls
    # how long it took is printed, not asserted: speed lives in bench/ (bench/server_load.py)
    print(f"schemathesis: {calls} requests over {len(operations)} operations in {took:.0f} s")
    assert "Traceback" not in server.log(), server.log()[-3000:]
