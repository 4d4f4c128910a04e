"""An eFlows4HPC ``mpi`` description on the real Grid Engine: the step asks for the description's
processes as slots of the cluster's parallel environment (``pe: smp`` -> ``-pe smp 2``) and its
runner (MPICH's ``mpirun``) starts a real MPI program, compiled here, across those slots; the
ranks talk (an ``MPI_Allreduce``). MPICH comes from Debian (``mpich``, ``libmpich-dev``;
scripts/test.sh installs them): skipped without it, failed in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import StepState
from jupyter_stax.engine.engine import Engine

from ..conftest import SGE_CLUSTER
from ..engine.conftest import arun
from ..waiting import wait_for

pytestmark = pytest.mark.sge

#: every rank says who it is and the sum of one per rank (so it has talked to all the others)
RANKS_C = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size, one = 1, sum = 0, len;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &len);
    MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d sum %d on %s\n", rank, size, sum, host);
    MPI_Finalize();
    return 0;
}
"""


@pytest.fixture
def mpi_program(tmp_path: Path) -> Path:
    """A real MPI program built with MPICH's ``mpicc``."""
    missing = [c for c in ("mpicc", "mpirun") if shutil.which(c) is None]
    if missing:
        msg = f"needs MPICH ({', '.join(missing)} missing): apt-get install mpich libmpich-dev"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    src = tmp_path / "ranks.c"
    src.write_text(RANKS_C)
    exe = tmp_path / "ranks"
    subprocess.run(["mpicc", "-o", str(exe), str(src)], check=True, timeout=120)
    return exe


def qacct(native_id: str) -> dict[str, str]:
    """Grid Engine's accounting record of an ended job (``qacct -j``): field -> value."""
    out = subprocess.run(["qacct", "-j", native_id], capture_output=True, text=True).stdout
    return {k: v.strip() for k, _, v in (ln.partition(" ") for ln in out.splitlines()) if v}


def test_mpi_description_runs_an_mpi_program_across_the_slots_of_the_pe(
    stax_env: Path, engine_factory: Callable[..., Engine], mpi_program: Path
) -> None:
    (stax_env / "clusters.yaml").write_text("clusters:\n" + SGE_CLUSTER + "    pe: smp\n")
    software: dict[str, Any] = {
        "type": "mpi",
        "properties": {"runner": "mpirun", "binary": str(mpi_program), "processes": 2},
        "prolog": {"binary": "sh", "params": "-c 'echo prolog $PE $NSLOTS'"},
        "epilog": {"binary": "echo", "params": "epilog"},
    }
    wf = {"name": "mpi-sge", "steps": [{"name": "m", "software": software}]}

    async def main() -> Any:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="sge")
            return await eng.wait(ex.id, timeout=180)

    ex = arun(main())
    s = ex.step("m")
    assert s.state is StepState.COMPLETED, (s.reason, Path(s.stderr).read_text())
    lines = Path(s.stdout).read_text().splitlines()
    assert lines[0] == "prolog smp 2" and lines[-1] == "epilog"  # the job got 2 slots of PE smp
    ranks = sorted(ln.rsplit(" on ", 1)[0] for ln in lines[1:-1])
    assert ranks == ["rank 0 of 2 sum 2", "rank 1 of 2 sum 2"]
    assert f'"mpirun" -n "2" "{mpi_program}"' in Path(s.script).read_text().splitlines()
    assert ex.workflow.steps[0].resources.ntasks == 2  # from the description's processes
    acct = wait_for(lambda: qacct(str(s.native_id)), 30, f"qacct of job {s.native_id}")
    assert (acct["granted_pe"], acct["slots"]) == ("smp", "2"), acct
