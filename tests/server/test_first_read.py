"""Issue 21 over REST, on a real ``jupyter server`` and the real Slurm: after a detached run
whose jobs all ended while no engine was alive, the server's FIRST answers (``GET executions``
and ``GET executions/{id}``, asked at once while its engine is adopting the execution) are the
true states; when the scheduler does not answer, they say the states are being checked."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import UNVERIFIED_WARNING

from ..proc import kill, pgrep
from ..waiting import wait_for
from .real_server import RealServer, child_env

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]

JUPYTER = shutil.which("jupyter") or f"{sys.executable} -m jupyter"
FAILING_CHAIN = (
    "name: failing\nsteps:\n  - {name: s1, run: 'true'}\n"
    "  - {name: s2, after: [s1], run: 'exit 3'}\n  - {name: s3, after: [s2], run: 'true'}\n"
)
FINAL = [("s1", "completed"), ("s2", "failed"), ("s3", "skipped")]


def stax(cwd: Path, *args: str) -> str:
    r = subprocess.run(
        [*JUPYTER.split(), "stax", *args], cwd=cwd, capture_output=True, text=True,
        env=child_env(), timeout=120,
    )
    assert r.returncode == 0, f"jupyter stax {' '.join(args)}: {r.returncode}\n{r.stderr}"
    return r.stdout


def daemons(store: Path) -> list[int]:
    return pgrep(f"jupyter_stax.engine.daemon --store {store}")


def detached(stax_env: Path, workflow: str, cluster: str) -> tuple[str, set[str]]:
    """``jupyter stax run --detach``, then no engine alive: the id and the jobs' native ids."""
    (stax_env / "wf.yaml").write_text(workflow)
    out = stax(stax_env, "run", "wf.yaml", "--cluster", cluster, "--detach")
    eid = out.split()[1]
    native = {w[2] for w in map(str.split, out.splitlines()[1:]) if w[1:2] == ["job"]}
    assert native and all(n.isdigit() for n in native), out
    kill(daemons(stax_env / "state" / "stax.sqlite"))
    return eid, native


def gone_from_squeue(native: set[str], store: Path) -> None:
    def gone() -> bool:
        q = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True)
        return q.returncode == 0 and not native & set(q.stdout.split()) and not daemons(store)

    wait_for(gone, 120, f"jobs {sorted(native)} to leave squeue, with no engine alive")


def server(stax_env: Path) -> RealServer:
    return RealServer(
        stax_env / "jupyter",
        store=stax_env / "state" / "stax.sqlite",
        work_dir=stax_env / "runs",
        clusters_file=stax_env / "clusters.yaml",
    )


def first_reads(srv: RealServer, eid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``GET executions`` and ``GET executions/{eid}``, sent at the same time as the server's
    first requests after its start (neither waits behind the other)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        page = pool.submit(srv.call, "GET", "executions")
        one = pool.submit(srv.call, "GET", f"executions/{eid}")
        (code_p, body_p), (code_o, body_o) = page.result(), one.result()
    assert code_p == 200 and code_o == 200, (body_p, body_o)
    (item,) = [x for x in body_p["executions"] if x["id"] == eid]
    return item, body_o


def test_first_rest_reads_while_the_server_adopts_are_the_true_states(
    stax_env: Path, slurm: str
) -> None:
    store = stax_env / "state" / "stax.sqlite"
    eid, native = detached(stax_env, FAILING_CHAIN, "slurm")
    assert len(native) == 3
    gone_from_squeue(native, store)
    srv = server(stax_env)
    srv.start()  # its engine adopts the execution: the reads below come during that
    try:
        item, ex = first_reads(srv, eid)
        assert [(s["name"], s["state"]) for s in ex["steps"]] == FINAL, ex
        assert ex["state"] == "failed" and ex["unverified"] is False
        assert UNVERIFIED_WARNING not in ex["warnings"]
        assert item["state"] == "failed" and item["unverified"] is False, item
        assert (item["done"], item["total"]) == (3, 3)
        assert item["counts"] == {"completed": 1, "failed": 1, "skipped": 1}
    finally:
        srv.stop()


def test_first_rest_reads_without_the_scheduler_say_the_states_are_being_checked(
    stax_env: Path, slurm: str
) -> None:
    """A detached job scancelled from outside before it started leaves no exit record: only the
    scheduler can tell, and the server's cannot answer (its ``SLURM_CONF`` names a controller
    port nobody listens on). Its first answers say so instead of presenting ``queued`` as now."""
    store = stax_env / "state" / "stax.sqlite"
    clusters = stax_env / "clusters.yaml"
    clusters.write_text(  # jobs that may begin only in an hour: this one never starts
        clusters.read_text() + "  later:\n"
        "    scheduler: slurm\n"
        "    queue: debug\n"
        '    walltime: "00:10:00"\n'
        "    poll_interval: 1\n"
        "    custom_attributes: {slurm.begin: now+3600}\n"
    )
    eid, native = detached(stax_env, "name: long\nsteps:\n  - {name: a, run: 'sleep 300'}\n",
                           "later")
    (job,) = native

    def held() -> bool:
        q = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True,
                           text=True)
        return q.stdout.strip() == "PENDING BeginTime"

    wait_for(held, 30, f"Slurm to hold job {job} back until its begin time")
    subprocess.run(["scancel", job], check=True)
    gone_from_squeue(native, store)
    conf = stax_env / "unreachable.conf"
    conf.write_text(
        Path(os.environ["SLURM_CONF"]).read_text().replace("SlurmctldPort=6817", "SlurmctldPort=6")
    )
    srv = server(stax_env)
    srv.extra_env = {"SLURM_CONF": str(conf)}
    srv.start()
    try:
        item, ex = first_reads(srv, eid)
        assert ex["state"] == "running" and ex["steps"][0]["state"] == "queued", ex
        assert ex["unverified"] is True and UNVERIFIED_WARNING in ex["warnings"], ex
        assert item["unverified"] is True and UNVERIFIED_WARNING in item["warnings"], item
        assert not Path(ex["steps"][0]["directory"], "stax.exit").exists()  # it never started
        code, again = srv.call("GET", f"executions/{eid}")  # later reads say it too
        assert code == 200 and again["unverified"] is True
    finally:
        srv.stop()
