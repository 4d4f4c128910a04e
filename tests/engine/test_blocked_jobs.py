"""A Slurm job that will never start as it stands (more nodes than the partition has, held
...) stays pending forever in Slurm: the engine says so on the execution, naming the step, the
job and Slurm's reason, and the warning goes once the step is canceled."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import pytest

from jupyter_stax.core.states import StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.schedulers.slurm import blocked_reason, parse_squeue

from ..conftest import slurm_nodes
from ..waiting import NotYet, wait_for_async


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        ("QUEUED", "PartitionNodeLimit", "PartitionNodeLimit: it asks for more nodes than"),
        ("QUEUED", "PartitionConfig", "PartitionConfig: it asks for more than the partition"),
        ("QUEUED", "JobHeldUser", "JobHeldUser: it is held (scontrol release releases it)"),
        ("QUEUED", "(QOSMaxWallDurationPerJobLimit)", "QOSMaxWallDurationPerJobLimit: its time"),
        ("QUEUED", "Priority", None),
        ("QUEUED", "Resources", None),
        ("QUEUED", "Dependency", None),
        ("QUEUED", "ReqNodeNotAvail, UnavailableNodes:node1", None),  # may pass
        ("ACTIVE", "PartitionNodeLimit", None),
        ("QUEUED", "", None),
    ],
)
def test_blocked_reasons(state: str, reason: str, expected: str | None) -> None:
    got = blocked_reason(state, reason)
    assert (got is None) if expected is None else (got is not None and got.startswith(expected))


def test_squeue_reasons_are_kept() -> None:
    out = "12|PD|PartitionNodeLimit\n13|PD|Priority\n14|R|None\n"
    parsed = parse_squeue(out)
    assert parsed["12"] == ("QUEUED", "PartitionNodeLimit")
    assert [blocked_reason(*parsed[i]) is not None for i in ("12", "13", "14")] == [
        True,
        False,
        False,
    ]


@pytest.mark.slurm
def test_a_job_that_cannot_start_is_reported(
    slurm: str, engine_factory: Callable[..., Engine]
) -> None:
    nodes = slurm_nodes() + 1
    wf = {
        "name": "too-big",
        "steps": [
            {"name": "big", "run": "echo never", "resources": {"nodes": nodes}},
            {"name": "small", "run": "echo fine"},
        ],
    }

    async def main() -> tuple[list[str], object, object]:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="slurm")
            # the first squeue comes after a poll interval
            seen: list[str] = await wait_for_async(
                lambda: eng.get(ex.id).warnings, 30, "a warning about step 'big'"
            )
            await wait_for_async(  # the step that fits runs to its end meanwhile
                lambda: eng.get(ex.id).step("small").state.final, 60, "step 'small' to end"
            )
            big = eng.get(ex.id).step("big")
            assert big.state is StepState.QUEUED, big
            await eng.cancel(ex.id)
            await wait_for_async(
                lambda: not eng.get(ex.id).warnings or NotYet(eng.get(ex.id).warnings),
                10,
                "the warnings to be cleared",
            )
            return seen, big.native_id, eng.get(ex.id)

    seen, native, final = asyncio.run(main())
    (warning,) = seen
    assert warning.startswith(
        f"step 'big' (job {native}) will not start as it stands: PartitionConfig: "
    ) or warning.startswith(f"step 'big' (job {native}) will not start as it stands: Partition")
    assert "cancel and submit it again" in warning
    assert final.state.value == "canceled" and final.warnings == []  # type: ignore[attr-defined]
    assert final.step("small").state is StepState.COMPLETED  # type: ignore[attr-defined]
    out = subprocess.run(["squeue", "-h", "-j", str(native)], capture_output=True, text=True)
    assert str(native) not in out.stdout
