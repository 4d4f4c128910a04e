"""eFlows4HPC software descriptions run as steps: prolog, program, epilog in order,
fail_by_exit_value honoured (local and Slurm), and an mpi description whose runner is srun on the
two-node Slurm."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import StepState
from jupyter_stax.engine.engine import Engine

from .conftest import arun


def run(engine_factory: Callable[..., Engine], wf: dict[str, Any], cluster: str) -> Any:
    async def main() -> Any:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster)
            return await eng.wait(ex.id, timeout=120)

    return arun(main())


def desc(
    program: str,
    *,
    prolog_fail: bool | None = None,
    epilog_fail: bool | None = None,
    main_fail: bool | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "execution": {"type": "binary", "binary": "sh", "args": f"-c '{program}'"},
        "prolog": {
            "binary": "sh",
            "args": "-c 'echo prolog \"$1\"; exit ${PROLOG_RC:-0}' sh {{who}}",
        },
        "epilog": {"binary": "sh", "args": "-c 'echo epilog; exit ${EPILOG_RC:-0}'"},
    }
    if prolog_fail is not None:
        d["prolog"]["fail_by_exit_value"] = prolog_fail
    if epilog_fail is not None:
        d["epilog"]["fail_by_exit_value"] = epilog_fail
    if main_fail is not None:
        d["execution"]["fail_by_exit_value"] = main_fail
    return d


CASES = [
    # (description, env, state, exit code, stdout)
    (desc("echo program"), {}, "completed", 0, "prolog x; y\nprogram\nepilog\n"),
    (desc("echo program"), {"PROLOG_RC": "3"}, "failed", 3, "prolog x; y\n"),
    (
        desc("echo program", prolog_fail=False),
        {"PROLOG_RC": "3"},
        "completed",
        0,
        "prolog x; y\nprogram\nepilog\n",
    ),
    (desc("echo program; exit 5"), {}, "failed", 5, "prolog x; y\nprogram\nepilog\n"),
    (
        desc("echo program; exit 5", main_fail=False),
        {},
        "completed",
        0,
        "prolog x; y\nprogram\nepilog\n",
    ),
    (desc("echo program"), {"EPILOG_RC": "4"}, "completed", 0, "prolog x; y\nprogram\nepilog\n"),
    (
        desc("echo program", epilog_fail=True),
        {"EPILOG_RC": "4"},
        "failed",
        4,
        "prolog x; y\nprogram\nepilog\n",
    ),
]


@pytest.mark.parametrize(("software", "env", "state", "code", "out"), CASES)
def test_prolog_program_epilog_order_and_fail_by_exit_value(
    software: dict[str, Any],
    env: dict[str, str],
    state: str,
    code: int,
    out: str,
    engine_factory: Callable[..., Engine],
) -> None:
    wf = {
        "name": "sw",
        "params": {"who": "x; y"},
        "steps": [{"name": "s", "software": software, "env": env}],
    }
    ex = run(engine_factory, wf, "local")
    s = ex.step("s")
    assert (s.state.value, s.exit_code) == (state, code), Path(s.stderr).read_text()
    assert Path(s.stdout).read_text() == out


@pytest.mark.slurm
def test_mpi_description_with_srun_runner_on_two_nodes(
    slurm: str, engine_factory: Callable[..., Engine]
) -> None:
    from ..conftest import slurm_nodes

    if slurm_nodes() < 2:
        pytest.skip("needs the two-node Slurm")
    software = {
        "type": "mpi",
        "properties": {
            "runner": "srun",
            "binary": "printenv",  # per rank ($NAME in params is expanded once, on the host)
            "params": "SLURM_PROCID SLURMD_NODENAME",
            "processes": 2,
            "ppn": 1,
        },
        "prolog": {"binary": "echo", "params": "prolog"},
        "epilog": {"binary": "echo", "params": "epilog"},
    }
    wf = {"name": "mpi", "steps": [{"name": "m", "software": software}]}
    ex = run(engine_factory, wf, "slurm")
    s = ex.step("m")
    assert s.state is StepState.COMPLETED, (s.reason, Path(s.stderr).read_text())
    lines = Path(s.stdout).read_text().splitlines()
    assert lines[0] == "prolog" and lines[-1] == "epilog"
    body = lines[1:-1]
    pairs = sorted(zip(body[0::2], body[1::2], strict=True))  # lines of ranks may interleave
    assert sorted(body[0::2] + body[1::2]) == sorted(["0", "1", "node1", "node2"])
    assert len(pairs) == 2
    assert ex.workflow.steps[0].resources.ntasks == 2  # from the description's processes
