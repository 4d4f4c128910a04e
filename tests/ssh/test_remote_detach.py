"""``--detach`` on the remote Slurm: the whole DAG is queued over SSH with Slurm dependencies,
the CLI exits and NO jupyter_stax process stays alive while Slurm runs the jobs (as the remote
account); a later ``status`` reconciles over SSH (failed, skipped and completed steps)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from jupyter_stax.engine.store import Store

from ..cli.test_cli import Stax
from ..proc import kill, pgrep
from ..waiting import wait_for
from .remote_config import add_clusters, remote_entry
from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import HOME

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]

WORKFLOW = {
    "name": "remote-detach",
    "steps": [
        {"name": "a", "run": "sleep 2; echo a >> ../order.log"},
        {"name": "b", "run": "echo b >> ../order.log; exit 3", "after": ["a"]},
        {"name": "c", "run": "echo never >> ../order.log", "after": ["b"]},
        {"name": "d", "run": "echo d >> ../order.log; echo done-d", "after": ["a"]},
    ],
}


def squeue(ids: list[str]) -> str:
    """The remote account's jobs among ``ids`` that Slurm still has (pending to completing)."""
    r = subprocess.run(["squeue", "-h", "-u", REMOTE_USER, "-t", "PD,R,CG,S", "-o", "%i",
                        "-j", ",".join(ids)], capture_output=True, text=True, timeout=30)
    # an id Slurm forgot already makes squeue fail with "Invalid job id": none left then
    return r.stdout.strip() if r.returncode == 0 else ""


def stax_processes(store: Path) -> list[int]:
    return sorted(set(pgrep(f"jupyter_stax.*{store}") + pgrep(f"stax.*--store {store}")))


def test_a_detached_dag_runs_on_the_remote_slurm_with_no_process_alive(
    stax_env: Path, sshd: Sshd, client: Client, slurm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_clusters(stax_env / "clusters.yaml", far=remote_entry(sshd, client))
    monkeypatch.setenv("JUPYTER_STAX_NO_SERVER", "1")
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    store = stax_env / "state" / "stax.sqlite"
    cli = Stax(stax_env, store)
    cli.write("wf.yaml", yaml.safe_dump(WORKFLOW))
    r = cli("run", "wf.yaml", "--cluster", "far", "--detach")
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    try:
        ex = Store(store).get(eid)
        ids = [s.native_id for s in ex.steps]
        assert all(ids), [(s.name, s.state, s.reason) for s in ex.steps]
        assert ex.owner is None and not ex.state.final
        assert ex.work_dir.startswith(str(HOME) + "/")
        # Slurm runs the whole DAG alone, as the remote account; nobody watches it
        assert not stax_processes(store)
        wait_for(lambda: not squeue(ids), 240, f"Slurm to finish the jobs {ids}", interval=0.5)
        assert not stax_processes(store)
        order = Path(ex.work_dir, "order.log").read_text().split()
        assert order[0] == "a" and sorted(order[1:]) == ["b", "d"], order
        assert not Store(store).get(eid).state.final  # nothing reconciled yet
        # a later status reconciles over SSH: the records and Slurm's answers for the jobs
        st = wait_for(lambda: (s := cli.status(eid))["state"] in ("failed", "completed") and s,
                      120, "status to reconcile the detached execution")
        got = [(s["name"], s["state"], s["exit_code"]) for s in st["steps"]]
        assert got == [("a", "completed", 0), ("b", "failed", 3), ("c", "skipped", None),
                       ("d", "completed", 0)], st
        assert st["state"] == "failed"
        assert cli.ok("logs", eid, "d") == "done-d\n"  # read on the cluster, over SSH
    finally:
        kill(stax_processes(store))
