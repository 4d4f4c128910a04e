"""Function tasks (``@stax.task``) end to end in a REAL kernel: notebooks/08 executed by nbclient
on ``local`` and on the real Slurm (a 3-task data-flow DAG with its values, an exception with
its remote traceback, the upstream failure, ``.map`` as one sweep step, attach after the
fact); a kernel restart then the stored value, and tampered result files refused (under a
Jupyter server and without one); the Python probe refusing a cluster whose python is another
real interpreter (another minor version, or one without cloudpickle) before any task job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.functask import PythonMismatch
from jupyter_stax.kernel import probe
from jupyter_stax.kernel.api import set_service
from jupyter_stax.service import LocalService

from ..proc import alive
from ..pythons import other_minor, same_minor_without_cloudpickle
from ..server.real_server import RealServer, child_env
from ..waiting import wait_for
from .test_kernel_restart import Kernel
from .test_notebooks import execute, outputs

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def outside_ipython(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process tests here call tasks as a script does: outside IPython, where each call
    is its own batch. An IPython shell that an earlier test of the same pytest process made
    (the magics' tests) would otherwise make the calls wait for the end of a cell that never
    comes (seen in the fast suite: two calls joined one execution). The kernels that nbclient
    starts are other processes and keep their shell."""
    from jupyter_stax.kernel import ipython, tasks

    monkeypatch.setattr(ipython, "shell", lambda: None)
    monkeypatch.setattr(tasks, "_hooked", False)
    monkeypatch.setattr(tasks, "_current", None)


@pytest.mark.parametrize("cluster", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_function_tasks_notebook(
    store: Path, kernelspec: str, tmp_path: Path, cluster: str, request: pytest.FixtureRequest
) -> None:
    if cluster == "slurm":
        request.getfixturevalue("slurm")
    nb = execute("08_function_tasks.ipynb", tmp_path, kernelspec, STAX_DEMO_CLUSTER=cluster)
    assert outputs(nb, "print(report.result(") == (
        "{'data': 4.5, 'doubled': 9.0}\n"
        "completed [('prepare', 'completed'), ('scale', 'completed'), "
        "('summarize', 'completed')]\n"
    )
    failed = outputs(nb, "try:\n    verdict.result(")
    lines = failed.splitlines()
    assert lines[:4] == [
        "TaskFailed[ValueError] | a ValueError: True",
        "ValueError: doubled sum too large: 9.0",
        "upstream: check",
        lines[3],
    ]
    assert re.fullmatch(
        r"task 'summarize' \(execution [0-9a-f]+\) did not run: its upstream task 'check' "
        r"failed: ValueError: doubled sum too large: 9.0",
        lines[3],
    ), lines[3]
    assert outputs(nb, "parts = scale.map(") == (
        "[[10.0, 20.0], [300.0], [4000.0, 5000.0, 6000.0]]\n"
        "the last one again: [4000.0, 5000.0, 6000.0]\ninstances: 3 | scheduler jobs: 1\n"
    )
    assert outputs(nb, "stax.Execution.attach(") == "{'data': 4.5, 'doubled': 9.0}\n"
    shown = next(c for c in nb.cells if c.source.startswith("data = prepare(10)")).outputs
    assert "application/vnd.jupyter.widget-view+json" in shown[0].data  # the live monitor

    svc = LocalService()
    listed = sorted(svc.list(limit=20)[0], key=lambda ex: ex.created_at)
    names = [ex.workflow.name for ex in listed]
    assert names == ["stax-python-probe", "tasks", "tasks", "tasks"]  # probed once
    dag, checked, mapped = (svc.get(ex.id) for ex in listed[1:])
    assert {s.name: s.after for s in dag.workflow.steps} == {
        "prepare": [],
        "scale": ["prepare"],
        "summarize": ["prepare", "scale"],
    }
    assert all(s.cluster == cluster for s in dag.steps)
    assert {s.name: s.state.value for s in checked.steps} == {
        "check": "failed",
        "summarize": "skipped",
    }
    (sweep,) = mapped.steps
    assert sweep.sweep is not None and (sweep.sweep.total, sweep.sweep.elements) == (3, 1)
    if cluster == "slurm":
        assert all(s.native_id and s.native_id.isdigit() for s in dag.steps)
        assert sweep.sweep.jobs and all(j.isdigit() for j in sweep.sweep.jobs)
    # the results are private files of the step directories
    res = Path(dag.step("summarize").directory) / "stax.result.summarize.pkl"
    assert (res.stat().st_mode & 0o777) == 0o600


@pytest.fixture
def kernel(store: Path, kernelspec: str, tmp_path: Path, real_server: RealServer
           ) -> Iterator[Kernel]:
    """A kernel under a real Jupyter server (the notebook tests run without one)."""
    env = child_env(JUPYTER_STAX_SERVER_URL=real_server.url, JUPYTER_STAX_TOKEN=real_server.token)
    k = Kernel(kernelspec, env, tmp_path)
    yield k
    k.stop()


TRY_RESULT = """
try:
    print(stax.Execution.attach({eid!r}).result('train'))
except stax.ResultRefused as e:
    print('refused:', e)
"""


def test_restart_refused_files_and_export(
    kernel: Kernel, stax_env: Path, real_server: RealServer, tmp_path: Path
) -> None:
    """One kernel under one server (both slow to start): the stored value after a restart,
    tampered result files refused, then an exported task run with new arguments."""
    out = kernel.run(
        "import jupyter_stax as stax\n"
        "@stax.task(cluster='local')\n"
        "def train(cfg: dict) -> dict:\n"
        "    return {'loss': cfg['lr'] / 10}\n"
        "m = train({'lr': 0.5})\n"
    )
    assert out == ""
    eid = kernel.run("print(stax.futures_execution(m).id)").strip()
    assert kernel.run("print(m.result(120))") == "{'loss': 0.05}\n"
    kernel.restart()
    assert kernel.run("import jupyter_stax as stax" + TRY_RESULT.format(eid=eid)) == (
        "{'loss': 0.05}\n"
    )

    res = stax_env / "runs" / eid / "train" / "stax.result.train.pkl"
    assert res.is_file()
    res.chmod(0o664)  # group-writable: someone else could have put it there
    refused = kernel.run(TRY_RESULT.format(eid=eid))
    assert refused.startswith(f"refused: result file {res} is refused: it is writable by group")
    assert "Only results written by your own jobs are unpickled" in refused
    res.chmod(0o600)
    if os.geteuid() == 0:  # a file of another user, with a safe mode
        os.chown(res, 65534, 65534)
        assert kernel.run(TRY_RESULT.format(eid=eid)).startswith(
            f"refused: result file {res} is refused: it is owned by uid 65534, not by you"
        )
        os.chown(res, 0, 0)
    res.rename(res.with_suffix(".real"))
    res.symlink_to(res.with_suffix(".real"))  # a link, even to a good file, is not read
    assert "is a symbolic link: not loaded" in kernel.run(TRY_RESULT.format(eid=eid))
    check_export(kernel, real_server, tmp_path)


def check_export(kernel: Kernel, real_server: RealServer, tmp_path: Path) -> None:
    """``%stax export --task`` writes a unit that the REST API and ``jupyter stax run`` run
    with new arguments (the function is in the file: it was defined in the kernel)."""
    out = kernel.run(
        "import jupyter_stax as stax\n%load_ext jupyter_stax\n"
        "@stax.task(time='00:02:00')\n"
        "def power(x: int, p: int = 2, label: str = 'x') -> str:\n"
        "    return f'{label}^{p} = {x ** p}'\n"
        "%stax export power.stax.yaml --task power --param label=y\n"
    )
    assert out.startswith("wrote power.stax.yaml; run it with: jupyter stax run power.stax.yaml")
    unit = (tmp_path / "power.stax.yaml").read_text()
    code, ex = real_server.call(
        "POST", "executions", {"workflow": unit, "cluster": "local", "params": {"x": 7, "p": 3}}
    )
    assert code == 201, ex
    cli = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "run", str(tmp_path / "power.stax.yaml"),
         "--cluster", "local", "--param", "x=4", "--quiet"],
        env=child_env(JUPYTER_STAX_SERVER_URL=real_server.url,
                      JUPYTER_STAX_TOKEN=real_server.token),
        capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    by_cli = cli.stdout.strip()
    got = kernel.run(
        f"print(stax.Execution.attach({ex['id']!r}).result('power', timeout=120))\n"
        f"print(stax.Execution.attach({by_cli!r}).result('power', timeout=120))\n"
    )
    assert got == "y^3 = 343\ny^2 = 16\n"
    missing = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "run", str(tmp_path / "power.stax.yaml"),
         "--cluster", "local"],
        env=child_env(JUPYTER_STAX_SERVER_URL=real_server.url,
                      JUPYTER_STAX_TOKEN=real_server.token),
        capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode != 0 and "uses {{x}} but no value is given" in missing.stderr


def _python_cluster(stax_env: Path, name: str, python: str) -> None:
    clusters = stax_env / "clusters.yaml"
    clusters.write_text(
        clusters.read_text()
        + f"  {name}:\n    scheduler: local\n    env: {{STAX_PYTHON: {python}}}\n"
    )


@pytest.mark.parametrize("which", ["other-minor", "no-cloudpickle"])
def test_probe_refuses_a_cluster_python_that_cannot_run_tasks(
    store: Path, stax_env: Path, which: str
) -> None:
    """The cluster's python (STAX_PYTHON in its env) is a real other interpreter: the first
    call's batch fails with the fix, and no task job was ever submitted."""
    python = other_minor() if which == "other-minor" else same_minor_without_cloudpickle()
    if python is None:
        pytest.skip(f"no {which} Python on this machine")
    _python_cluster(stax_env, "elsewhere", python)
    import jupyter_stax as stax

    svc = LocalService()
    set_service(svc)
    probe.forget()
    try:

        @stax.task(cluster="elsewhere")
        def double(x: int) -> int:
            return 2 * x

        fut = double(21)  # outside IPython: submitted at once (the probe runs first)
        with pytest.raises(PythonMismatch) as e:
            fut.result(60)
    finally:
        set_service(None)
        probe.forget()
    msg = str(e.value)
    here = f"3.{sys.version_info[1]}"
    if which == "other-minor":
        assert re.search(rf"the python of cluster 'elsewhere' \({re.escape(python)}\) is 3\.\d+, "
                         rf"this kernel runs {here}", msg), msg
    else:
        assert f"({python}, {here}) has no cloudpickle" in msg, msg
    assert "STAX_PYTHON" in msg
    assert [ex.workflow.name for ex in svc.list(limit=10)[0]] == ["stax-python-probe"]
    svc.close()


@pytest.mark.slurm
def test_edges_across_clusters_into_and_out_of_a_map(
    store: Path, stax_env: Path, slurm: str
) -> None:
    """local -> a map on Slurm -> local, one execution: each upstream result is staged into
    the downstream step directory ({from: ...}), the map's too (a sweep step stages inputs)."""
    import jupyter_stax as stax

    svc = LocalService()
    set_service(svc)
    try:

        @stax.task(cluster="local")
        def prepare(n: int) -> list[int]:
            return list(range(n))

        @stax.task(cluster="slurm", time="00:02:00")
        def add(xs: list[int], k: int) -> list[int]:
            return [x + k for x in xs]

        @stax.task(cluster="local")
        def pair(a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
            return a, b

        with stax.batch():
            d = prepare(3)
            parts = add.map([d, d], [1, 10])
            both = pair(parts[0], parts[1])
        assert both.result(300) == ([1, 2, 3], [10, 11, 12])
        ex = stax.futures_execution(both).refresh()
    finally:
        set_service(None)
    staged = {
        s.name: (s.cluster, s.state.value, [f.path for f in s.files.inputs] if s.files else [])
        for s in ex.steps
    }
    assert staged == {
        "prepare": ("local", "completed", []),
        "add": ("slurm", "completed", ["stax.result.prepare.pkl"]),
        "pair": ("local", "completed", ["0/stax.result.add.pkl", "1/stax.result.add.pkl"]),
    }
    sweep = ex.step("add").sweep
    assert sweep is not None and sweep.total == 2 and sweep.jobs
    svc.close()


@pytest.mark.slurm
@pytest.mark.ssh
def test_results_of_a_remote_cluster_come_through_its_transport(
    store: Path, stax_env: Path, tmp_path: Path, slurm: str, sshd: Any,
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
) -> None:
    """A DAG of function tasks on the remote Slurm behind the test sshd (the remote account,
    Debian's python3 there with a cloudpickle on its PYTHONPATH): the values and the remote
    traceback come back over SSH, the results stay in the remote account's work directory."""
    import shutil
    import tempfile

    import cloudpickle

    from ..ssh.remote_config import add_clusters, remote_entry
    from ..ssh.sshd import REMOTE_USER

    if sys.version_info[:2] != (3, 11) or not Path("/usr/bin/python3").exists():
        pytest.skip("the remote account's python3 is Debian's 3.11: needs a 3.11 kernel")
    # cloudpickle (pure Python) where the remote account can read it
    shared = Path(tempfile.mkdtemp(prefix="stax-cloudpickle-"))
    shared.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shutil.copytree(Path(cloudpickle.__file__).parent, shared / "cloudpickle")
    add_clusters(
        stax_env / "clusters.yaml",
        far=remote_entry(
            sshd, sshd.client("root"),
            env={"STAX_PYTHON": "/usr/bin/python3", "PYTHONPATH": str(shared)},
        ),
    )
    import jupyter_stax as stax

    monkeypatch.chdir(tmp_path)  # the notebook's directory: fetched copies go below it
    svc = LocalService()
    set_service(svc)
    probe.forget()
    try:

        @stax.task(cluster="far", time="00:02:00")
        def where(n: int) -> dict[str, Any]:
            import getpass
            import os

            return {"user": getpass.getuser(), "dir": os.getcwd(), "n": n}

        @stax.task(cluster="far", time="00:02:00")
        def fail_on(info: dict[str, Any]) -> None:
            raise RuntimeError(f"as {info['user']}")

        with stax.batch():
            w = where(5)
            f = fail_on(w)
        got = w.result(300)
        with pytest.raises(stax.TaskFailed) as e:
            f.result(300)
        ex = stax.futures_execution(w).refresh()
    finally:
        set_service(None)
        probe.forget()
    assert got["user"] == REMOTE_USER and got["n"] == 5
    assert got["dir"].startswith(f"/home/{REMOTE_USER}/stax-runs/{ex.id}/where")
    assert isinstance(e.value, RuntimeError) and "raise RuntimeError" in e.value.remote_traceback
    assert f"as {REMOTE_USER}" in str(e.value)
    files = ex.step("where").files  # the result file came over SSH, alone
    assert files is not None and files.fetch == "fetched"
    assert files.fetched_to == str(tmp_path / "stax-outputs" / ex.id / ".open" / "where")
    assert [f.path for f in files.outputs] == ["stax.result.where.pkl"]
    svc.close()


def test_futures_of_earlier_batches(store: Path, stax_env: Path) -> None:
    """Outside IPython each call is its own batch: a future of an earlier one that has not
    ended yet (held by a gate file) holds the new batch back (a thread submits it once that
    task ended, reading its result file in place); a failed one means the new batch is never
    submitted."""
    import jupyter_stax as stax

    svc = LocalService()
    set_service(svc)
    try:

        gate = stax_env / "gate"

        @stax.task(cluster="local")
        def numbers(n: int) -> list[int]:
            import os
            import time

            deadline = time.monotonic() + 120
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.05)  # held until the test opens the gate
            return list(range(n))

        @stax.task(cluster="local")
        def total(xs: list[Any]) -> int:
            return sum(xs)

        @stax.task(cluster="local")
        def boom(x: int) -> int:
            raise ArithmeticError(f"no {x}")

        d = numbers(4)
        t = total(d)
        assert not d.done() and t._batch.execution is None  # held back
        gate.touch()
        assert t.result(120) == 6
        first, second = stax.futures_execution(d), stax.futures_execution(t)
        assert first.id != second.id and first.step("numbers").state.value == "completed"
        b = boom(1)
        after = total([b, 1])
        with pytest.raises(stax.UpstreamFailed) as e:
            after.result(120)
        with pytest.raises(ArithmeticError, match="no 1"):
            b.result()
        record = Path(b.execution.step("boom").directory) / "stax.error.boom.json"
        record.chmod(0o666)  # an error record others could have written is not believed
        with pytest.raises(stax.TaskFailed) as refused:
            b.result()
    finally:
        set_service(None)
    assert e.value.upstream == "boom"
    assert not isinstance(refused.value, ArithmeticError)
    assert "its error record was not read" in str(refused.value)
    assert "it is writable by group (mode 0666)" in str(refused.value)
    assert f"their upstream task 'boom' (execution {b.execution.id}) failed" in str(e.value)
    names = [ex.workflow.name for ex in svc.list(limit=10)[0]]
    assert names.count("tasks") == 3  # numbers, total, boom: the last batch never went
    svc.close()


def test_map_over_50_elements_and_the_warm_task_worker(store: Path, stax_env: Path) -> None:
    """``map`` over 50 elements on local: packed into a few scheduler jobs, every value back in
    order. Function tasks on local go to the warm task worker (core/taskworker.py) once it
    runs, and stay real steps: the task's stdout is its step's log, and a cancel ends the task
    (the job is killed; the worker then kills the task it forked)."""
    import jupyter_stax as stax

    svc = LocalService()
    set_service(svc)
    try:

        @stax.task(cluster="local")
        def square(x: int) -> int:
            return x * x

        @stax.task(cluster="local")
        def parent() -> str:
            import os

            print("task output", flush=True)
            with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
                return f.read().replace(b"\0", b" ").decode()

        @stax.task(cluster="local")
        def hang(path: str) -> None:
            import os
            import time

            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
            time.sleep(300)  # ended by the cancel

        squares = square.map(range(50))
        assert stax.gather(squares, timeout=300) == [x * x for x in range(50)]
        mapped = stax.futures_execution(squares[0])
        sweep = mapped.refresh().step("square").sweep
        assert sweep is not None and (sweep.total, sweep.pack) == (50, 10)  # pack: auto
        assert sweep.counts == {"completed": 50} and len(sweep.jobs) == sweep.elements < 50

        p = parent()
        assert "stax-taskworker-" in p.result(120)  # forked by the worker the map started
        assert stax.futures_execution(p).logs("parent") == "task output\n"

        pid_file = stax_env / "hang.pid"
        h = hang(str(pid_file))
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120, "the task"))
        run = stax.futures_execution(h)
        run.cancel()

        wait_for(lambda: not alive(pid), 60, f"the canceled task's process {pid} to end")
        assert run.refresh().step("hang").state.value == "canceled"
    finally:
        set_service(None)
    svc.close()
