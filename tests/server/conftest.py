"""A real Jupyter server (pytest-jupyter) with the extension enabled, on the isolated store, work
directory and clusters file of ``stax_env``.

pytest-jupyter's fixtures and hooks are imported here rather than listed in ``pytest_plugins``
(pytest accepts that only in the root conftest): this way its autouse fixtures (a fresh event
loop, a ServerApp clean-up after every test) apply to these tests only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from jupyter_stax.server.app import StaxApp

from ..waiting import NotYet, wait_for_async


@dataclass
class Reply:
    code: int
    headers: Any
    body: Any


Call = Callable[..., Awaitable[Reply]]


def stax_config(stax_env: Path, **stax: Any) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_stax": True}, "ip": "127.0.0.1"},
        "StaxApp": {
            "store_path": str(stax_env / "state" / "stax.sqlite"),
            "work_dir": str(stax_env / "runs"),
            "clusters_file": str(stax_env / "clusters.yaml"),
            "clusters": {"pbs1": {"scheduler": "pbs", "queue": "workq"}},
            "record_interval": 0.2,
            **stax,
        },
    }


@pytest.fixture
def jp_server_config(stax_env: Path) -> dict[str, Any]:
    return stax_config(stax_env)


@pytest.fixture
def stax_app(jp_serverapp: Any, jp_asyncio_loop: asyncio.AbstractEventLoop) -> StaxApp:
    """The extension, started as the server starts it (pytest-jupyter does not run the
    extensions' start hooks)."""
    jp_asyncio_loop.run_until_complete(jp_serverapp.extension_manager.start_all_extensions())
    app = jp_serverapp.web_app.settings["jupyter_stax"]
    assert isinstance(app, StaxApp)
    return app


@pytest.fixture
def api(jp_fetch: Any, stax_app: StaxApp) -> Call:
    """``await api("GET", "executions/ID", params=..., body=..., expect=200)`` -> Reply."""

    async def call(
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        expect: int | None = 200,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        kw: dict[str, Any] = {"method": method, "raise_error": False}
        if body is not None:
            kw["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        elif method in ("POST", "PUT", "PATCH"):
            kw["body"] = b""
        resp = await jp_fetch("stax", "api", *path.split("/"), params=params, headers=headers, **kw)
        data = json.loads(resp.body) if resp.body else None
        if expect is not None:
            assert resp.code == expect, (resp.code, data)
        if resp.code >= 400:
            assert set(data) == {"message", "details", "error"}, data
        return Reply(resp.code, resp.headers, data)

    return call


@pytest.fixture
def raw(http_server_client: Any, jp_base_url: str, jp_auth_header: dict[str, str]) -> Call:
    """A request to an exact, already escaped path under ``<base_url>stax/api/``."""

    async def call(method: str, path: str, *, auth: bool = True, body: Any = None) -> Reply:
        headers = dict(jp_auth_header) if auth else {}
        kw: dict[str, Any] = {"method": method, "headers": headers, "raise_error": False}
        if method in ("POST", "PUT", "PATCH"):
            kw["body"] = body if body is not None else b""
        resp = await http_server_client.fetch(f"{jp_base_url}stax/api/{path}", **kw)
        try:
            data = json.loads(resp.body) if resp.body else None
        except ValueError:
            data = resp.body
        return Reply(resp.code, resp.headers, data)

    return call


async def wait_final(api: Call, eid: str, timeout: float = 120) -> dict[str, Any]:
    async def final() -> dict[str, Any] | NotYet:
        ex = (await api("GET", f"executions/{eid}")).body
        if ex["state"] in ("completed", "failed", "canceled"):
            return dict(ex)
        return NotYet((ex["state"], ex["steps"]))

    return await wait_for_async(final, timeout, f"execution {eid} to end", interval=0.2)


async def wait_step(api: Call, eid: str, step: str, states: set[str], timeout: float = 60) -> None:
    async def there() -> bool | NotYet:
        ex = (await api("GET", f"executions/{eid}")).body
        s = next(s for s in ex["steps"] if s["name"] == step)
        return True if s["state"] in states else NotYet(s)

    await wait_for_async(there, timeout, f"step {step} of {eid} to be {states}", interval=0.2)


STEP_ORDER = ["pending", "submitted", "queued", "running", "completed"]


async def events_delivered(events: list[tuple[str, dict[str, Any]]], eid: str) -> None:
    """Listeners run as tasks, created in the order of the events: once the execution's final
    event has reached ``events``, every earlier one has too."""
    from jupyter_stax.server.events import EXECUTION_SCHEMA

    await wait_for_async(
        lambda: any(
            sid == EXECUTION_SCHEMA
            and d.get("id") == eid
            and d["state"] in ("completed", "failed", "canceled")
            for sid, d in events
        ),
        30,
        f"the final event of execution {eid} to reach the listener",
    )


def check_event_order(events: list[tuple[str, dict[str, Any]]], eid: str, steps: list[str]) -> None:
    """The events of one completed execution, as a listener on the server's event_logger saw
    them: per step pending/submitted -> (queued) -> (running) -> completed, never backwards;
    the execution's first event is its creation and its last event is 'completed', after
    every step's."""
    from jupyter_stax.server.events import EXECUTION_SCHEMA, STEP_SCHEMA

    mine = [
        (sid, d)
        for sid, d in events
        if (d.get("id") if sid == EXECUTION_SCHEMA else d.get("execution_id")) == eid
    ]
    assert mine, events
    first_sid, first = mine[0]
    assert first_sid == EXECUTION_SCHEMA and first["state"] == "pending"
    assert first["previous"] is None
    last_sid, last = mine[-1]
    assert last_sid == EXECUTION_SCHEMA and last["state"] == "completed", mine[-3:]
    assert last["done"] == last["total"] == len(steps)
    for name in steps:
        seq = [d for sid, d in mine if sid == STEP_SCHEMA and d["step"] == name]
        states = [d["state"] for d in seq]
        assert "submitted" in states and states[-1] == "completed", (name, states)
        ranks = [STEP_ORDER.index(s) for s in states]
        assert ranks == sorted(ranks), (name, states)
        for d in seq:
            if d["previous"] is not None and d["state"] != d["previous"]:
                assert STEP_ORDER.index(d["previous"]) < STEP_ORDER.index(d["state"])
        done = seq[-1]
        assert done["exit_code"] == 0 and done["attempt"] == 1 and done["native_id"]
        assert done["execution_state"] in ("running", "completed")
        # the job id is published by the commit that records it: with the scheduler's first
        # word (queued, or running for PSI/J's local executor), before the step ends
        first_id = next(i for i, d in enumerate(seq) if d["native_id"])
        assert seq[first_id]["state"] in ("submitted", "queued", "running"), seq
        assert first_id < len(seq) - 1, seq
