"""Fixtures of the kernel tests: a real LocalService on an isolated store (its background engine
is killed afterwards), hand-made executions for the pure renderers, and process helpers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import Execution, StepRun, Workflow
from jupyter_stax.core.states import StepState, execution_state
from jupyter_stax.service import LocalService

from ..proc import kill, pgrep

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


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


KERNEL = "python3"


@pytest.fixture(scope="session")
def kernelspec() -> str:
    """The ipykernel ``python3`` kernelspec, installed into sys.prefix when missing."""
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if KERNEL not in json.loads(out)["kernelspecs"]:
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL],
            check=True,
            capture_output=True,
        )
    return KERNEL
