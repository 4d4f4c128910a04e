"""The demo notebooks of ``notebooks/``, executed by nbclient in a REAL kernel on the test's
isolated store: the quickstart on ``local``, the DAG with a failing step and a retry on the real
Slurm, the eFlows4HPC ``mpi`` description on the real Slurm (srun) and the real Grid Engine
(MPICH's mpirun in a parallel environment). Checked as a reader of the saved notebook sees them:
outputs, final states, exit codes, log content, and the monitor's widget state in the notebook
metadata."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.service import LocalService

from ..engine.conftest import use_scheduler

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

pytestmark = pytest.mark.timeout(600)


def execute(
    name: str, where: Path, kernelspec: str, edit: Callable[[Any], None] | None = None, **env: str
) -> Any:
    """Run notebooks/NAME in a copy under ``where``; the executed notebook (also saved next
    to the copy, to look at). ``edit`` may change the copy's cells before it runs."""
    shutil.copy(NOTEBOOKS / name, where / name)
    nb = nbformat.read(where / name, as_version=4)
    if edit is not None:
        edit(nb)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name=kernelspec,
        store_widget_state=True,
        resources={"metadata": {"path": str(where)}},
    )
    try:
        client.execute(**({"env": {**os.environ, **env}} if env else {}))
    finally:
        nbformat.write(nb, where / f"executed-{name}")
    return nb


def outputs(nb: Any, starts: str) -> str:
    """The text output (streams and text/plain) of the code cell whose source starts so."""
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts)]
    assert len(cells) == 1, starts
    parts = []
    for o in cells[0].outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o and "text/plain" in o.data:
            parts.append(o.data["text/plain"].rstrip("\n") + "\n")
    return "".join(parts)


def widget_models(nb: Any) -> list[dict[str, Any]]:
    return list(nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"].values())


def test_no_outputs_are_committed() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]
        assert not dirty and "widgets" not in nb.metadata, f"{path.name}: strip its outputs"


def test_quickstart_on_local(store: Path, kernelspec: str, tmp_path: Path) -> None:
    nb = execute("01_quickstart.ipynb", tmp_path, kernelspec)
    svc = LocalService()
    (run, hello) = sorted((ex for ex in svc.list(limit=10)[0]), key=lambda ex: ex.created_at)
    ex = svc.get(run.id)
    assert ex.workflow.name == "notebook" and ex.cluster == "local"
    assert [(s.name, s.state.value, s.exit_code) for s in ex.steps] == [
        ("make", "completed", 0),
        ("total", "completed", 0),
        ("report", "completed", 0),
    ]
    assert outputs(nb, "await run.wait_async") == "completed\nsum of 1..10 = 55, mean 5.5\n"
    assert outputs(nb, "%stax logs total") == "55\n"
    assert outputs(nb, "import jupyter_stax as stax").startswith("hello, world, from ")
    assert svc.get(hello.id).state.value == "completed"
    listed = outputs(nb, "%stax list")
    assert run.id in listed and hello.id not in listed  # listed before hello was submitted
    assert outputs(nb, "%stax export").rstrip().endswith("ok: 3 steps (make -> total -> report)")
    assert (tmp_path / "sums.yaml").is_file()

    # the monitor's saved state shows the end (the wait refreshed it)
    models = widget_models(nb)
    (bar,) = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    assert (bar["value"], bar["max"], bar["bar_style"]) == (3, 3, "success")
    html = [m["state"].get("value", "") for m in models if m["model_name"] == "HTMLModel"]
    for step in ("make", "total", "report"):
        assert any(f'data-step="{step}" data-state="completed"' in v for v in html), step
    assert any(run.id in v for v in html)
    (shown,) = [
        o
        for o in nb.cells[
            [c.source for c in nb.cells].index("run = %stax_submit --cluster local --param n=10")
        ].outputs
    ]
    assert "application/vnd.jupyter.widget-view+json" in shown.data
    assert shown.data["text/plain"].startswith(f"execution  {run.id}\n")  # no-widget fallback
    assert f'data-id="{run.id}"' in shown.data["text/html"]


@pytest.mark.slurm
def test_slurm_dag_with_a_failure_and_a_retry(
    store: Path, kernelspec: str, tmp_path: Path, slurm: str
) -> None:
    nb = execute("02_slurm_dag.ipynb", tmp_path, kernelspec)
    assert "cluster: slurm" in outputs(nb, "import os")
    first = outputs(nb, "await run.wait_async(300, check=False)")
    rows = {line.split()[0]: line.split()[1:] for line in first.splitlines()}
    assert {k: v[:2] for k, v in rows.items()} == {
        "prepare": ["completed", "exit=0"],
        "square": ["completed", "exit=0"],
        "cube": ["completed", "exit=0"],
        "check": ["failed", "exit=3"],
        "report": ["skipped", "exit=None"],
    }
    assert all(re.fullmatch(r"job=\d+", rows[s][2]) for s in ("prepare", "square", "check"))
    assert "not approved yet: create " in outputs(nb, "%stax logs check --stderr")
    ranks = sorted(outputs(nb, "%stax logs square").splitlines())
    assert [r.split(" on ")[0] for r in ranks] == ["rank 0 of 2", "rank 1 of 2"]
    assert outputs(nb, "from pathlib import Path").startswith("retrying 2 step(s) of ")
    assert outputs(nb, "await run.wait_async(300)\n") == (
        "completed\nsum of squares 338350, sum of cubes 25502500\n"
    )
    (ex,) = LocalService().list(limit=5)[0]
    final = LocalService().get(ex.id)
    assert final.cluster == "slurm" and final.state.value == "completed"
    attempts = {s.name: s.attempt for s in final.steps}
    assert attempts == {"prepare": 1, "square": 1, "cube": 1, "check": 2, "report": 1}
    models = widget_models(nb)
    bars = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    assert [(b["value"], b["max"], b["bar_style"]) for b in bars] == [(5, 5, "success")]


#: the runner line notebook 04 renders for each scheduler
RUNNER_LINES = {
    "slurm": '"srun" -n "2" "--ntasks-per-node=1" "bash"',
    "sge": '"mpirun" -n "2" "bash"',  # MPICH's mpirun in 2 slots of PE smp
}


@pytest.mark.parametrize(
    "scheduler",
    [pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("sge", marks=pytest.mark.sge)],
)
def test_eflows_software_description(
    store: Path,
    kernelspec: str,
    tmp_path: Path,
    scheduler: str,
    request: pytest.FixtureRequest,
) -> None:
    use_scheduler(request, scheduler)  # the project's Slurm / Grid Engine (cluster "sge" added)
    if scheduler == "sge" and shutil.which("mpirun") is None:
        msg = "needs MPICH's mpirun (apt-get install mpich)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    nb = execute("04_eflows_software.ipynb", tmp_path, kernelspec, STAX_DEMO_CLUSTER=scheduler)
    assert outputs(nb, "import os").strip() == f"cluster: {scheduler} | scheduler: {scheduler}"
    rendered = outputs(nb, "from jupyter_stax.core.software import")
    assert RUNNER_LINES[scheduler] in rendered
    lines = outputs(nb, "await run.wait_async(180)").splitlines()
    assert lines[0] == "completed"
    assert lines[1] == "prolog: preparing hi there" and lines[-1] == "epilog: done"
    ranks = sorted(ln.split(" on ")[0] + " " + ln.split(" says: ")[1] for ln in lines[2:-1])
    assert ranks == ["rank 0 hi there", "rank 1 hi there"]


@pytest.mark.slurm
def test_detach_and_reattach(store: Path, kernelspec: str, tmp_path: Path, slurm: str) -> None:
    # Slurm shows a dependency only until it is satisfied, and the submission's answer must say
    # "queued" for every step: no job may start before the squeue cell ran, however slow the
    # submissions were. The notebook runs on a cluster whose jobs may begin only in an hour
    # (the same Slurm); the squeue cell then lets them begin now.
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(
        clusters.read_text() + "  held:\n"
        "    scheduler: slurm\n"
        "    queue: debug\n"
        '    walltime: "00:10:00"\n'
        "    poll_interval: 1\n"
        "    custom_attributes: {slurm.begin: now+3600}\n"
    )

    def release_after_squeue(nb: Any) -> None:
        (queue,) = [c for c in nb.cells if c.source.startswith("if cluster != 'local':")]
        queue.source += (
            "\nimport subprocess"
            "\nfor s in run.steps:"
            "\n    subprocess.run(['scontrol', 'update', f'JobId={s.native_id}', 'StartTime=now'],"
            " check=True)"
        )

    nb = execute(
        "05_detach_reattach.ipynb",
        tmp_path,
        kernelspec,
        edit=release_after_squeue,
        STAX_DEMO_CLUSTER="held",
    )
    submitted = outputs(nb, "detach = ").splitlines()
    eid, how = submitted[0].split()
    assert how == "detached"
    assert [ln.split()[:2] for ln in submitted[1:]] == [
        ["fetch", "queued"],
        ["left", "queued"],
        ["right", "queued"],
        ["join", "queued"],
    ]
    queue = outputs(nb, "if cluster != 'local':")
    assert f"stax-{eid}-join" in queue and queue.count("afterany:") == 4
    mine = [ln.split() for ln in queue.splitlines() if f"stax-{eid}-" in ln]
    assert [ln[2] for ln in mine] == ["PENDING"] * 4  # held back by their begin time
    # no PSI/J thread stayed in the kernel (the submission ran in a child process): the
    # kernel's fork for !squeue printed no ignored TypeError
    assert "_after_fork" not in queue and "Traceback" not in queue
    assert eid in outputs(nb, "del run")
    assert outputs(nb, "w = %stax watch").splitlines()[-2:] == ["completed", "total 5050"]


@pytest.mark.slurm
@pytest.mark.ssh
def test_remote_cluster_over_ssh(
    store: Path, stax_env: Path, kernelspec: str, tmp_path: Path, slurm: str, sshd: Any
) -> None:
    """Notebook 06 on the remote Slurm behind the test sshd (the remote account's jobs, its
    home's work directory, logs read over SSH, a detached run reconciled over SSH)."""
    from ..ssh.remote_config import add_clusters, remote_entry
    from ..ssh.sshd import REMOTE_USER

    add_clusters(stax_env / "clusters.yaml", far=remote_entry(sshd, sshd.client("root")))
    nb = execute("06_remote_cluster.ipynb", tmp_path, kernelspec, STAX_REMOTE_CLUSTER="far")
    assert outputs(nb, "import os").strip() == "cluster: far"
    detail = outputs(nb, "%stax clusters")
    assert f"connected to {REMOTE_USER}@127.0.0.1" in detail and "debug: nodes" in detail
    assert outputs(nb, "run = %stax_submit").splitlines() == [
        "completed", "where    completed exit=0", "numbers  completed exit=0",
        "total    completed exit=0",
    ]
    where = outputs(nb, "%stax logs where")
    assert f" as {REMOTE_USER} in /home/{REMOTE_USER}/stax-runs/" in where, where
    assert outputs(nb, "%stax logs total") == "total 5050\n"
    lines = outputs(nb, "detach = ").splitlines()
    assert lines[0].split()[1] == "detached"
    assert lines[-2:] == ["completed", "total 500500"]
    (ex, _first) = LocalService().list(limit=5)[0]
    assert ex.cluster == "far" and ex.options.detached
