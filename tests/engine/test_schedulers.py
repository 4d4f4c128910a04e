"""Scheduler knowledge (engine/schedulers/): the registry and Slurm's tables, on recorded
output, table-driven."""

from __future__ import annotations

import pytest

from jupyter_stax.engine import schedulers
from jupyter_stax.engine.schedulers import slurm
from jupyter_stax.engine.transport import TRANSIENT_MARK


@pytest.mark.parametrize(
    ("name", "known", "dependencies"),
    [("slurm", True, True), ("local", False, False), ("pbs", False, False)],
)
def test_registry(name: str, known: bool, dependencies: bool) -> None:
    assert (schedulers.get(name) is not None) is known
    assert schedulers.native_dependencies(name) is dependencies


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ((), {"slurm.job-name": "stax-x"}),
        (("12",), {"slurm.job-name": "stax-x", "slurm.dependency": "afterany:12"}),
        (("12", "13"), {"slurm.job-name": "stax-x", "slurm.dependency": "afterany:12:13"}),
    ],
)
def test_slurm_submit_attributes(after: tuple[str, ...], expected: dict[str, str]) -> None:
    assert slurm.submit_attributes("stax-x", after) == expected


def test_slurm_status_parses_states_and_blocked_jobs() -> None:
    jobs, blocked = slurm.parse_status(
        "12|PD|PartitionNodeLimit\n13|PD|Priority\n14|R|None\n15|OOM|OutOfMemory\nbad\n"
    )
    assert {k: v[0] for k, v in jobs.items()} == {
        "12": "QUEUED",
        "13": "QUEUED",
        "14": "ACTIVE",
        "15": "FAILED",
    }
    assert list(blocked) == ["12"] and blocked["12"].startswith("PartitionNodeLimit: ")
    assert slurm.STATUS_COMMAND[0] == "squeue" and "--me" in slurm.STATUS_COMMAND


@pytest.mark.parametrize(
    ("out", "expected"), [("", None), ("\n", None), ("41\n", "41"), ("41\n42\n", "42")]
)
def test_slurm_find_by_name(out: str, expected: str | None) -> None:
    assert "stax-ab-c" in slurm.find_by_name_command("stax-ab-c")
    assert slurm.parse_job_ids(out) == expected


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("sbatch: error: Batch job submission failed: Unable to contact slurm controller", True),
        ("qsub: cannot connect to server pbs1 (errno=111)", True),
        (f"{TRANSIENT_MARK}: connection lost", True),
        ("sbatch: error: invalid partition specified: nope", False),
        ("sbatch: error: Requested node configuration is not available", False),
    ],
)
def test_is_transient(message: str, transient: bool) -> None:
    assert schedulers.is_transient(message) is transient
