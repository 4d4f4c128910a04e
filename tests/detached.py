"""Detached runs on the real Slurm left with no engine alive, for the tests of issue 21 (the
first read after them is the true one, or says the states are being checked) on every surface:
the REST API, the sidebar, a kernel's ``%stax``. Not a test module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .proc import kill, pgrep
from .server.real_server import child_env
from .waiting import wait_for

JUPYTER = shutil.which("jupyter") or f"{sys.executable} -m jupyter"
#: a chain whose middle step fails: s3 is skipped by the job itself (its dependency check)
FAILING_CHAIN = (
    "name: failing\nsteps:\n  - {name: s1, run: 'true'}\n"
    "  - {name: s2, after: [s1], run: 'exit 3'}\n  - {name: s3, after: [s2], run: 'true'}\n"
)
FINAL = [("s1", "completed"), ("s2", "failed"), ("s3", "skipped")]
#: a cluster on the same Slurm whose jobs may begin only in an hour: they never start here
HELD_CLUSTER = (
    "  later:\n"
    "    scheduler: slurm\n"
    "    queue: debug\n"
    '    walltime: "00:10:00"\n'
    "    poll_interval: 1\n"
    "    custom_attributes: {slurm.begin: now+3600}\n"
)


def stax(cwd: Path, *args: str) -> str:
    """``jupyter stax ARGS`` in ``cwd`` (this checkout, the test's store and clusters)."""
    r = subprocess.run(
        [*JUPYTER.split(), "stax", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert r.returncode == 0, f"jupyter stax {' '.join(args)}: {r.returncode}\n{r.stderr}"
    return r.stdout


def engines(store: Path) -> list[int]:
    """The background engines on ``store``."""
    return pgrep(f"jupyter_stax.engine.daemon --store {store}")


def detached(cwd: Path, store: Path, workflow: str, cluster: str) -> tuple[str, set[str]]:
    """``jupyter stax run --detach``, then no engine alive: the id and the jobs' native ids."""
    (cwd / "wf.yaml").write_text(workflow)
    out = stax(cwd, "run", "wf.yaml", "--cluster", cluster, "--detach")
    eid = out.split()[1]
    native = {w[2] for w in map(str.split, out.splitlines()[1:]) if w[1:2] == ["job"]}
    assert native and all(n.isdigit() for n in native), out
    kill(engines(store))
    return eid, native


def until_gone(native: set[str], store: Path) -> None:
    """Until ``squeue`` lists none of the jobs ``native``, with no engine alive on ``store``."""

    def gone() -> bool:
        q = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        return q.returncode == 0 and not native & set(q.stdout.split()) and not engines(store)

    wait_for(gone, 120, f"jobs {sorted(native)} to leave squeue, with no engine alive")


def failing_chain_ended(cwd: Path, store: Path) -> str:
    """A detached :data:`FAILING_CHAIN` whose jobs all ended while no engine was alive: its
    stored states are still the ones of the submission."""
    eid, native = detached(cwd, store, FAILING_CHAIN, "slurm")
    assert len(native) == 3
    until_gone(native, store)
    return eid


def canceled_before_start(cwd: Path, store: Path, clusters_file: Path) -> str:
    """A detached one-step run on :data:`HELD_CLUSTER` whose job was scancelled from outside
    before it could start, no engine alive: no exit record, so only the scheduler can tell."""
    clusters_file.write_text(clusters_file.read_text() + HELD_CLUSTER)
    eid, native = detached(
        cwd, store, "name: long\nsteps:\n  - {name: a, run: 'sleep 300'}\n", "later"
    )
    (job,) = native

    def held() -> bool:
        q = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True
        )
        return q.stdout.strip() == "PENDING BeginTime"

    wait_for(held, 30, f"Slurm to hold job {job} back until its begin time")
    subprocess.run(["scancel", job], check=True)
    until_gone(native, store)
    return eid


def unreachable_conf(where: Path) -> Path:
    """A copy of the test Slurm's conf whose controller port nobody listens on: a scheduler
    that does not answer, for the processes given it (slurmctld itself stays up)."""
    conf = where / "unreachable.conf"
    good = Path(os.environ["SLURM_CONF"]).read_text()
    assert "SlurmctldPort=6817" in good
    conf.write_text(good.replace("SlurmctldPort=6817", "SlurmctldPort=6"))
    return conf
