"""How the engine commits: the changes of one event-loop turn in ONE transaction (fenced once per
execution, the execution's row written only when its state changes), their events published
after it, a step's submission intent committed before its scheduler is called, and an execution
adopted by another engine let go without a submission."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import ExecutionState, StepState
from jupyter_stax.engine.backend import Backend, JobUpdate
from jupyter_stax.engine.engine import Engine, Event
from jupyter_stax.engine.store import Changes, Store

from ..waiting import wait_for_async
from .conftest import arun


def _workflow(n: int, run: str = "true") -> dict[str, Any]:
    return {"name": "w", "steps": [{"name": f"s{i}", "run": run} for i in range(n)]}


def _execution(store: Store, owner: str | None, n: int) -> str:
    eng = Engine(store=store, clusters=ClusterRegistry(), adopt=False)
    ex = eng.prepare(_workflow(n), "local", owner=owner)
    store.insert_execution(ex)
    return ex.id


def _statements(store: Store) -> list[str]:
    """Every SQL statement the store's connection runs from now on."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def _count(statements: list[str], prefix: str) -> int:
    return sum(1 for s in statements if s.lstrip().upper().startswith(prefix))


def _transactions(statements: list[str]) -> list[list[str]]:
    """The statements grouped by transaction (BEGIN ... COMMIT/ROLLBACK)."""
    out: list[list[str]] = []
    for s in statements:
        if s.upper().startswith("BEGIN"):
            out.append([])
        elif out:
            out[-1].append(s)
    return out


@pytest.mark.parametrize(
    ("state", "row_writes"),
    [
        (ExecutionState.PENDING, 0),  # unchanged: the row (with its workflow document) is kept
        (ExecutionState.RUNNING, 1),  # changed: written once, however many steps changed
    ],
)
def test_save_steps_is_one_transaction_fenced_per_execution(
    tmp_path: Path, state: ExecutionState, row_writes: int
) -> None:
    st = Store(tmp_path / "s.sqlite")
    st.register_engine("A")
    mine, theirs = _execution(st, "A", 5), _execution(st, "B", 2)
    ex, other = st.get(mine), st.get(theirs)
    changes = {mine: Changes(state), theirs: Changes(ExecutionState.RUNNING)}
    for s in ex.steps:
        s.state, s.native_id = StepState.QUEUED, f"n-{s.name}"
        changes[mine].add(mine, s, state)
    for s in other.steps:
        s.state = StepState.RUNNING
        changes[theirs].add(theirs, s, ExecutionState.RUNNING)
    seen = _statements(st)
    assert st.save_steps("A", changes) == {theirs}  # B's execution: fenced off, not written
    assert _count(seen, "BEGIN") == 1 and _count(seen, "COMMIT") == 1
    assert _count(seen, "UPDATE STEPS") == len(ex.steps)  # executemany: one per row
    assert _count(seen, "UPDATE EXECUTIONS") == row_writes
    got = st.get(mine)
    assert [s.state for s in got.steps] == [StepState.QUEUED] * 5
    assert [s.native_id for s in got.steps] == [f"n-s{i}" for i in range(5)]
    assert got.state is state
    assert {s.state for s in st.get(theirs).steps} == {StepState.PENDING}


def test_status_updates_of_one_turn_are_one_transaction_told_after_it(
    stax_env: Path, engine_factory: Callable[..., Engine]
) -> None:
    """A poll's N status updates (applied in one loop turn) are ONE transaction, not N; each
    event is told once its change is readable by another connection (another process)."""
    n = 8
    other = Store(stax_env / "state" / "stax.sqlite")  # what a REST reader or a CLI sees
    told: list[tuple[Event, str]] = []

    def reader(ev: Event) -> None:
        if ev.step is not None:
            told.append((ev, other.get(ev.execution_id).step(ev.step).state.value))

    async def main() -> list[str]:
        async with engine_factory(adopt=False, heartbeat_interval=3600) as eng:
            ex = eng.prepare(_workflow(n), "local", owner=eng.id)
            eng.store.insert_execution(ex)
            run = eng._new_run(ex)
            for s in run.steps.values():  # as if submitted: watched, with native ids
                s.state, s.native_id, s.attempt = StepState.QUEUED, f"job-{s.name}", 1
                eng._watch(run.key(s.name))
            run.counts.clear()
            run.counts[StepState.QUEUED] = n
            for s in run.steps.values():
                eng._commit(run, s, None)
            await wait_for_async(
                lambda: {s.state for s in other.get(ex.id).steps} == {StepState.QUEUED}, 10,
                "the steps committed as queued",
            )
            eng.subscribe(reader)
            seen = _statements(eng.store)
            now = time.time()
            for s in run.steps.values():  # one poll's answers, as a backend's thread posts them
                eng._on_update_threadsafe(JobUpdate(run.key(s.name), "running", None, None, now))
            await wait_for_async(
                lambda: sum(1 for ev, _ in told if ev.state == "running") == n, 10,
                "every step told running",
            )
            return seen

    seen = arun(main())
    assert _count(seen, "UPDATE STEPS") == n
    writes = [t for t in _transactions(seen) if _count(t, "UPDATE STEPS")]
    assert len(writes) == 1, seen  # the old code: one transaction per step
    assert writes[0][-1].upper() == "COMMIT"
    assert [(ev.state, stored) for ev, stored in told] == [("running", "running")] * n
    assert all(ev.execution_state == "running" for ev, _ in told)


def test_intent_is_committed_before_the_scheduler_is_called(
    stax_env: Path, engine_factory: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When PSI/J's submit runs, another connection reads the step as submitted without a native
    id (the intent recovery relies on: never a second submission after a crash)."""
    other = Store(stax_env / "state" / "stax.sqlite")
    at_submit: list[tuple[str, str, str | None, int]] = []
    real = Backend.submit

    def spy(self: Backend, key: Any, req: Any) -> str:
        s = other.get(key.execution_id).step(key.step)
        at_submit.append((s.name, s.state.value, s.native_id, s.attempt))
        return real(self, key, req)

    monkeypatch.setattr(Backend, "submit", spy)

    async def main() -> Any:
        async with engine_factory(adopt=False) as eng:
            ex = await eng.submit(_workflow(6), cluster="local")
            return await eng.wait(ex.id, timeout=60)

    ex = arun(main())
    assert ex.state is ExecutionState.COMPLETED
    assert sorted(at_submit) == [(f"s{i}", "submitted", None, 1) for i in range(6)]


def test_adopted_execution_is_let_go_without_submitting(
    stax_env: Path, engine_factory: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another engine takes the execution before its steps' intents are committed: nothing of
    this engine's is written after that, no job is submitted, and ``wait`` returns."""
    submitted: list[str] = []
    real = Backend.submit

    def spy(self: Backend, key: Any, req: Any) -> str:
        submitted.append(key.step)
        return real(self, key, req)

    monkeypatch.setattr(Backend, "submit", spy)
    caplog.set_level(logging.WARNING, logger="jupyter_stax.engine")

    async def main() -> tuple[Any, bool]:
        async with engine_factory(adopt=False) as eng:
            ex = await eng.submit(_workflow(3), cluster="local")
            eng.store.set_owner(ex.id, "engine-elsewhere")  # as an adopting engine does
            got = await eng.wait(ex.id, timeout=30)
            return got, ex.id in eng._runs

    got, still_driven = arun(main())
    assert not still_driven
    assert submitted == []
    assert got.owner == "engine-elsewhere"
    assert {s.state for s in got.steps} == {StepState.PENDING}
    assert "adopted by another engine" in caplog.text
