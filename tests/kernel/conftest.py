"""Fixtures of the kernel tests: a real LocalService on an isolated store (its background engine
is killed afterwards), hand-made executions for the pure renderers, and process helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import Execution, StepRun, Workflow
from jupyter_stax.core.states import StepState, execution_state
from jupyter_stax.service import LocalService

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def pgrep(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def alive(pid: int) -> bool:
    """Running and not a zombie (killed children linger as zombies until reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def kill(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL after 5 s: only for processes a test started (found by a pattern
    naming the test's own store or a random marker)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def store(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The isolated store of ``stax_env``; background engines on it idle out after 2 s and are
    killed at the end of the test (kernels started by the test inherit the environment)."""
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    path = stax_env / "state" / "stax.sqlite"
    yield path
    kill(pgrep(f"jupyter_stax.engine.daemon --store {path}"))


@pytest.fixture
def svc(store: Path) -> Iterator[LocalService]:
    service = LocalService()
    assert service.store_path == store
    yield service
    service.close()


def make_execution(
    steps: list[tuple[str, list[str], StepState]],
    *,
    description: str | None = None,
    reasons: dict[str, str] | None = None,
    warnings: list[str] | None = None,
    params: dict[str, Any] | None = None,
) -> Execution:
    """An execution as the store would hold it, without running anything."""
    wf = Workflow.model_validate(
        {
            "name": "diamond",
            "description": description,
            "steps": [{"name": n, "run": "true", "after": after} for n, after, _ in steps],
        }
    )
    runs = []
    for i, (name, _after, state) in enumerate(steps):
        started = T0 + timedelta(seconds=10 * i) if state is not StepState.PENDING else None
        finished = started + timedelta(seconds=5) if started and state.final else None
        runs.append(
            StepRun(
                name=name,
                state=state,
                attempt=1 if started else 0,
                cluster="local",
                native_id=str(1000 + i) if started else None,
                exit_code=(0 if state is StepState.COMPLETED else 3)
                if state in (StepState.COMPLETED, StepState.FAILED)
                else None,
                reason=(reasons or {}).get(name),
                started_at=started,
                finished_at=finished,
                directory=f"/runs/x/{name}",
                script=f"/runs/x/{name}/stax.step.sh",
                stdout=f"/runs/x/{name}/stax.out",
                stderr=f"/runs/x/{name}/stax.err",
            )
        )
    state = execution_state([r.state for r in runs])
    return Execution(
        id="0123abcd",
        workflow=wf,
        cluster="local",
        params=params or {},
        state=state,
        created_at=T0,
        finished_at=T0 + timedelta(minutes=1) if state.final else None,
        work_dir="/runs/x",
        warnings=warnings or [],
        steps=runs,
    )


DIAMOND = [("a", [], "completed"), ("b.x", ["a"], "running"), ("c-y", ["a"], "failed")]
DIAMOND += [("d", ["b.x", "c-y"], "pending")]


def diamond(**kw: Any) -> Execution:
    return make_execution([(n, after, StepState(st)) for n, after, st in DIAMOND], **kw)
