"""The store's guarantees: fenced writes, one owner per execution, adoption of orphans only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.store import LostOwnership, Store

WF = {"name": "w", "steps": [{"name": "a", "run": "true"}, {"name": "b", "run": "true"}]}


def _execution(store: Store, owner: str | None) -> str:
    eng = Engine(store=store, clusters=ClusterRegistry(), adopt=False)
    ex = eng.prepare(WF, "local", owner=owner)
    store.insert_execution(ex)
    return ex.id


def test_writes_are_fenced_by_ownership(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    st.register_engine("A")
    st.register_engine("B")
    eid = _execution(st, "A")
    step = st.get(eid).step("a")
    step.state = StepState.SUBMITTED
    st.save_step(eid, step, "A")
    with pytest.raises(LostOwnership):
        st.save_step(eid, step, "B")
    # A is alive (this very process): B may not adopt its execution
    assert st.claim_orphans("B", lease_timeout=15) == []
    st.engine_stopped("A")  # A let go: B adopts, and A's later writes are refused
    assert st.claim_orphans("B", lease_timeout=15) == [eid]
    with pytest.raises(LostOwnership):
        st.save_step(eid, step, "A")
    st.save_step(eid, step, "B")
    assert st.get(eid).owner == "B"


def test_dead_process_is_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    code = (
        "import sys; from jupyter_stax.engine.store import Store; "
        f"Store({str(path)!r}).register_engine('dead')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    st = Store(path)
    eid = _execution(st, "dead")
    # no lease to wait out: the engine's process is gone on this host
    assert st.claim_orphans("me", lease_timeout=3600) == [eid]


def test_unowned_executions_are_claimed_once(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    st.register_engine("A")
    st.register_engine("B")
    eid = _execution(st, None)
    assert st.claim_orphans("A", lease_timeout=15) == [eid]
    assert st.claim_orphans("B", lease_timeout=15) == []


def test_ids_resolve_by_unique_prefix(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    eid = _execution(st, None)
    assert st.resolve_id(eid[:3]) == eid
    from jupyter_stax.core.errors import NotFound

    with pytest.raises(NotFound, match="no execution"):
        st.resolve_id("zz_%")


def test_store_is_shared_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    st = Store(path)
    eid = _execution(st, None)
    code = (
        "from jupyter_stax.engine.store import Store; "
        f"print(Store({str(path)!r}).get({eid!r}).state.value)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pending"
    assert os.path.exists(str(path) + "-wal")


def test_unverified_until_the_adopting_engine_marks_its_pass(tmp_path: Path) -> None:
    st = Store(tmp_path / "s.sqlite")
    st.register_engine("A")
    st.register_engine("B")
    eid = _execution(st, "A")
    assert st.unverified(15) == set()  # its submitting engine is alive: its states are current
    st.engine_stopped("A")
    assert st.unverified(15) == {eid}  # nobody drives it (detached, or its engine stopped)
    assert st.unverified(15, [eid]) == {eid} and st.unverified(15, []) == set()
    assert st.claim_orphans("B", lease_timeout=15) == [eid]
    assert st.unverified(15) == {eid}  # adopted, not yet reconciled
    with pytest.raises(LostOwnership):
        st.mark_checked(eid, "A")
    st.mark_checked(eid, "B")
    assert st.unverified(15) == set()


def test_schema_2_store_gains_the_checked_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        "CREATE TABLE executions (id TEXT PRIMARY KEY, name TEXT NOT NULL, cluster TEXT NOT NULL,"
        " state TEXT NOT NULL, created REAL NOT NULL, finished REAL, updated REAL NOT NULL,"
        " doc TEXT NOT NULL, owner TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,"
        " warnings TEXT NOT NULL DEFAULT '[]');"
    )
    db.close()
    st = Store(path)
    eid = _execution(st, None)
    assert st.unverified(15) == {eid}
    with st.transaction() as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "3"
        assert "checked" in {r[1] for r in con.execute("PRAGMA table_info(executions)")}


def test_reads_wait_once_for_the_first_pass_and_share_that_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule the local service and the REST handlers wait by (Operations.to_check and
    unchecked): a read waits for an execution nobody has reconciled until the pass ends or its
    time is over; reads at the same time share one deadline; later reads do not wait, and say
    the states are being checked until the pass ends."""
    import asyncio

    from jupyter_stax import operations
    from jupyter_stax.operations import Operations

    st = Store(tmp_path / "s.sqlite")
    ops = Operations(store=lambda: st, registry=ClusterRegistry)
    st.register_engine("A")
    mine, other = _execution(st, None), _execution(st, "A")  # nobody drives mine
    waits = ops.to_check()
    assert set(waits) == {mine} and ops.unchecked(waits)
    assert ops.to_check([mine]) == waits  # a second reader: the same deadline
    assert ops.to_check([other]) == {}  # its engine is alive: its states are current
    assert ops.get(mine).unverified and not ops.get(other).unverified
    assert st.claim_orphans("A", lease_timeout=15) == [mine]
    assert ops.unchecked(waits)  # adopted, not reconciled yet
    st.mark_checked(mine, "A")
    assert not ops.unchecked(waits) and not ops.get(mine).unverified
    asyncio.run(ops.checked([mine]))  # nothing to wait for: returns
    # a pass that does not end: once its time is over, reads answer at once, with the mark
    st.engine_stopped("A")
    monkeypatch.setattr(operations, "CHECK_TIMEOUT", 0.0)
    fresh = Operations(store=lambda: st, registry=ClusterRegistry)
    assert fresh.to_check() == {} and fresh.get(mine).unverified
    asyncio.run(fresh.checked())
    assert fresh.get(mine).unverified
