"""Events through jupyter_events: one per committed change, in order, never breaking the
engine."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from jupyter_stax.server.app import StaxApp
from jupyter_stax.server.events import SCHEMA_FILES

from .conftest import Call, check_event_order, events_delivered, wait_final

DIAMOND = {
    "name": "diamond",
    "steps": [
        {"name": "a", "run": "echo a"},
        {"name": "b", "after": ["a"], "run": "echo b"},
        {"name": "c", "after": ["a"], "run": "echo c"},
        {"name": "d", "after": ["b", "c"], "run": "echo d"},
    ],
}


def listen(serverapp: Any) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        got.append((schema_id, data))

    for sid in SCHEMA_FILES:
        serverapp.event_logger.add_listener(schema_id=sid, listener=listener)
    return got


async def test_local_run_events_arrive_in_order(
    api: Call, jp_serverapp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    got = listen(jp_serverapp)
    ex = (await api("POST", "executions", body={"workflow": DIAMOND}, expect=201)).body
    assert (await wait_final(api, ex["id"]))["state"] == "completed"
    await events_delivered(got, ex["id"])
    check_event_order(got, ex["id"], ["a", "b", "c", "d"])
    assert not [r for r in caplog.records if "could not emit" in r.getMessage()]
    # d was submitted only after b and c completed
    steps = [(d["step"], d["state"]) for sid, d in got if "step" in d]
    assert steps.index(("d", "submitted")) > max(
        steps.index(("b", "completed")), steps.index(("c", "completed"))
    )


async def test_a_failing_event_logger_never_breaks_the_engine(
    api: Call,
    jp_serverapp: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**kw: Any) -> None:
        raise RuntimeError("event sink is down")

    monkeypatch.setattr(jp_serverapp.event_logger, "emit", broken)
    caplog.set_level(logging.ERROR, logger="jupyter_stax.server")
    ex = (await api("POST", "executions", body={"workflow": DIAMOND}, expect=201)).body
    assert (await wait_final(api, ex["id"]))["state"] == "completed"
    assert any("could not emit" in r.getMessage() for r in caplog.records)


async def test_schemas_are_registered_once(jp_serverapp: Any, stax_app: StaxApp) -> None:
    ids = list(jp_serverapp.event_logger.schemas.schema_ids)
    for sid in SCHEMA_FILES:
        assert ids.count(sid) == 1
    await stax_app.stop_extension()
    await stax_app._start_jupyter_server_extension(jp_serverapp)  # a restart reuses them
    assert stax_app.engine is not None and stax_app.problem is None
