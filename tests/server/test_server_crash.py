"""``kill -9`` of a real Jupyter server while its engine drives a 20-step Slurm workflow.

The server is killed twice: while the first steps' submissions are in flight (their intent is
committed, Slurm's answer is not: ``sbatch`` is slowed down by a shim to make that moment last),
and in the middle of the run. Each time the server restarts on the same store; its new engine
adopts the execution (the dead one's process is gone, seen at once on this machine) and
re-attaches to the jobs by native id or, for an interrupted submission, by job name. Checked on what
Slurm and the steps themselves saw: every step ran exactly once (``runs.log``) and Slurm has
exactly one job per step, every step completed with exit code 0 in its first attempt.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.jobscript import job_name

from ..waiting import NotYet, wait_for
from .real_server import RealServer

CHAINS, LENGTH = 4, 5
STEPS = [f"c{c}s{i}" for c in range(1, CHAINS + 1) for i in range(1, LENGTH + 1)]
WORKFLOW = {
    "name": "crash",
    "steps": [
        {
            "name": f"c{c}s{i}",
            "run": "sleep 1; echo $STAX_STEP >> ../runs.log",
            **({"after": [f"c{c}s{i - 1}"]} if i > 1 else {}),
        }
        for c in range(1, CHAINS + 1)
        for i in range(1, LENGTH + 1)
    ],
}


@pytest.fixture
def server(stax_env: Path) -> Iterator[RealServer]:
    srv = RealServer(
        stax_env / "jupyter",
        store=stax_env / "state" / "stax.sqlite",
        work_dir=stax_env / "runs",
        clusters_file=stax_env / "clusters.yaml",
    )
    yield srv
    srv.stop()


def _execution(server: RealServer, eid: str) -> dict[str, Any]:
    code, ex = server.call("GET", f"executions/{eid}")
    assert code == 200, ex
    return dict(ex)


def _until(server: RealServer, eid: str, cond: Any, timeout: float, what: str) -> dict[str, Any]:
    def there() -> dict[str, Any] | NotYet:
        ex = _execution(server, eid)
        return ex if cond(ex) else NotYet(ex["steps"])

    return wait_for(there, timeout, what, interval=0.2)


def _wait_in_flight(store: Path, eid: str, want: int, timeout: float = 30) -> list[str]:
    """Steps whose submission intent is committed but not Slurm's answer (read from the store
    directly, every 10 ms): once ``want`` of them are, or 0.5 s after the first one was."""
    first: list[float] = []
    db = sqlite3.connect(store, timeout=30)

    def in_flight() -> list[str] | NotYet:
        rows = db.execute(
            "SELECT name FROM steps WHERE execution_id=? AND state='submitted' AND "
            "native_id IS NULL",
            (eid,),
        ).fetchall()
        if rows and not first:
            first.append(time.monotonic())
        if len(rows) >= want or (first and time.monotonic() - first[0] > 0.5):
            return [r[0] for r in rows] or NotYet("the submissions in flight were answered")
        return NotYet(rows)

    try:
        return wait_for(in_flight, timeout, "a submission in flight", interval=0.01)
    finally:
        db.close()


def _count(ex: dict[str, Any], *states: str) -> int:
    return sum(1 for s in ex["steps"] if s["state"] in states)


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_kill_9_of_the_server_mid_workflow_submits_every_step_once(
    slurm: str, server: RealServer, stax_env: Path
) -> None:
    # sbatch answers after 1 s: the crash can land between a step's committed intent
    # (submitted, no job id yet) and Slurm's answer, the hardest moment to recover from
    shim = stax_env / "shim"
    shim.mkdir()
    sbatch = shutil.which("sbatch")
    assert sbatch
    (shim / "sbatch").write_text(f'#!/bin/sh\nsleep 1\nexec {sbatch} "$@"\n')
    (shim / "sbatch").chmod(0o755)
    server.extra_env = {"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    first = server.start()
    code, ex = server.call("POST", "executions", {"workflow": WORKFLOW, "cluster": "slurm"})
    assert code == 201, ex
    eid = ex["id"]
    # 1st crash: while the first steps' submissions are in flight
    in_flight = _wait_in_flight(server.store, eid, CHAINS)
    server.kill()
    server.extra_env = {}
    second = server.start()
    assert second["engine_id"] != first["engine_id"]
    # 2nd crash: in the middle of the run (some steps done, others queued or running)
    _until(server, eid, lambda x: _count(x, "completed") >= 6, 300, "6 completed steps")
    server.kill()
    third = server.start()
    done = _until(server, eid, lambda x: x["state"] in ("completed", "failed"), 480, "the end")

    assert done["state"] == "completed" and done["owner"] == third["engine_id"]
    for s in done["steps"]:
        assert (s["state"], s["exit_code"], s["attempt"]) == ("completed", 0, 1), s
        assert s["native_id"] and s["history"] == [], s
    runs = (stax_env / "runs" / eid / "runs.log").read_text().split()
    assert sorted(runs) == sorted(STEPS), runs  # each step ran once
    for c in range(1, CHAINS + 1):  # in order within its chain
        assert [r for r in runs if r.startswith(f"c{c}s")] == [f"c{c}s{i}" for i in (1, 2, 3, 4, 5)]
    native = {s["name"]: s["native_id"] for s in done["steps"]}
    assert in_flight and set(in_flight) <= {f"c{c}s1" for c in range(1, CHAINS + 1)}
    for name in STEPS:
        out = subprocess.run(
            ["squeue", "--me", "-h", "-t", "all", "-n", job_name(eid, name), "-o", "%i"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == [native[name]], (name, out)  # Slurm saw exactly one job for the step
    assert "Traceback" not in server.log()
