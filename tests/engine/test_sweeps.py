"""Sweeps on real schedulers (issue 15): PSI/J's local executor and the project's Slurm, where
a sweep is ONE job array. Small sweeps (the machine has 2 cores shared with other work); the
big numbers live in bench/sweep_throughput.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core import sweep as sw
from jupyter_stax.core import text
from jupyter_stax.core.jobscript import read_exit_record, read_start_record
from jupyter_stax.core.models import Execution, StepState
from jupyter_stax.engine import sweeps
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.store import Store

from ..waiting import wait_for
from .conftest import arun

HERE = Path(__file__).parent
FAILING = (5, 17, 33)
#: the schedulers that run a sweep as job arrays and have scheduler-native dependencies
#: (detached mode: afterany, -hold_jid)
DETACHED = [
    pytest.param("slurm", marks=pytest.mark.slurm),
    pytest.param("sge", marks=pytest.mark.sge),
]


def _summary(ex: Execution, step: str) -> dict[str, Any]:
    got = sw.read_summary(ex.step(step).directory)
    assert got is not None, "no stax.sweep.json"
    assert ex.step(step).sweep == got  # what every surface shows
    return got.model_dump()


def _squeue(native_ids: str, states: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-j", native_ids, "-t", states, "-o", "%i"],
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def _jobs_named(name: str) -> set[str]:
    out = subprocess.run(
        ["squeue", "--me", "-h", "-t", "all", "-n", name, "-o", "%i"],
        capture_output=True,
        text=True,
    ).stdout
    return {i.split("_")[0] for i in out.split()}


def _run(
    engine_factory: Callable[..., Engine],
    wf: dict[str, Any] | None,
    cluster: str | None = None,
    timeout: float = 240,
    *,
    retry: str | None = None,
    adopt: str | None = None,
) -> Execution:
    """Submit ``wf`` on ``cluster`` (or retry execution ``retry``, or only adopt execution
    ``adopt``: an engine that starts takes over orphans) with a fresh engine, and wait until the
    execution is final."""

    async def main() -> Execution:
        async with engine_factory() as eng:
            if retry is not None:
                await eng.retry(retry)
                eid = retry
            elif adopt is not None:
                eid = adopt
            else:
                assert wf is not None and cluster is not None
                eid = (await eng.submit(wf, cluster=cluster)).id
            return await eng.wait(eid, timeout=timeout)

    return arun(main())


def test_grid_with_failures_then_retry_reruns_only_them(
    cluster: str, engine_factory: Callable[..., Engine]
) -> None:
    fail = "|".join(map(str, FAILING))
    wf = {
        "name": "grid",
        "steps": [
            {
                "name": "sim",
                "sweep": {"n": [1, 2], "seed": {"range": [0, 25]}},
                "run": "echo $STAX_SWEEP_INDEX >> ../../runs.log\n"
                "echo n={{n}} seed={{seed}} > out.txt\n"
                f"case $STAX_SWEEP_INDEX in {fail}) [ -e ../../fixed ] || exit 7;; esac\n",
            },
            {"name": "collect", "after": ["sim"], "run": "cat ../sim/*/out.txt | wc -l"},
        ],
    }

    ex = _run(engine_factory, wf, cluster, 180)
    sim = ex.step("sim")
    assert sim.state is StepState.FAILED, (sim.state, sim.reason)
    assert sim.reason == (
        "3 of 50 instances did not complete: 5 (exit 7), 17 (exit 7), 33 (exit 7)"
    )
    assert ex.step("collect").state is StepState.SKIPPED
    s1 = _summary(ex, "sim")
    assert s1["counts"] == {"completed": 47, "failed": 3}
    assert [f["index"] for f in s1["failed"]] == list(FAILING)
    assert text.step_detail(sim).startswith("47/50 done, 3 failed; 3 of 50 instances")
    spec = sw.spec(wf["steps"][0]["sweep"])  # type: ignore[index]
    for i in range(50):  # each instance in its own directory, with its own values
        v = sw.instance(spec, i)
        assert Path(sim.directory, str(i), "out.txt").read_text() == (
            f"n={v['n']} seed={v['seed']}\n"
        )
    if cluster != "local":
        assert sim.native_id and "," not in sim.native_id  # ONE array (Slurm, Grid Engine)
    Path(ex.work_dir, "fixed").touch()

    ex = _run(engine_factory, None, timeout=180, retry=ex.id)
    sim = ex.step("sim")
    assert sim.state is StepState.COMPLETED and sim.attempt == 2, (sim.state, sim.reason)
    assert ex.step("collect").state is StepState.COMPLETED
    assert Path(ex.step("collect").stdout).read_text().strip() == "50"
    runs = Path(ex.work_dir, "runs.log").read_text().split()
    assert sorted(map(int, runs)) == sorted([*range(50), *FAILING])  # only the failed, again
    assert Path(sim.directory, "stax.elements.2").read_text().split() == list(
        map(str, FAILING)
    )
    for i in range(50):
        rec = read_exit_record(Path(sim.directory, str(i)))
        assert rec is not None and rec.exit_code == 0
        assert rec.attempt == (2 if i in FAILING else 1)
    if cluster != "local":
        assert sim.native_id and "," not in sim.native_id
        assert sim.history[-1].native_id != sim.native_id  # a second, smaller array
    assert _summary(ex, "sim")["counts"] == {"completed": 50}


def test_hostile_values_stay_data(stax_env: Path, engine_factory: Callable[..., Engine]) -> None:
    canary = stax_env / "pwned"
    hostile = [f"$(touch {canary})", f"`touch {canary}`", "a b", "'; touch x #", '"', "*", "-n"]
    wf = {
        "name": "hostile",
        "steps": [{"name": "sim", "sweep": {"v": hostile}, "run": "printf '%s' {{v}} > v.txt"}],
    }

    ex = _run(engine_factory, wf, "local", 120)
    assert ex.state.value == "completed", [(s.name, s.reason) for s in ex.steps]
    for i, v in enumerate(hostile):
        assert Path(ex.step("sim").directory, str(i), "v.txt").read_text() == v
    assert not canary.exists()


def _intervals(step_dir: str, n: int) -> list[tuple[float, float, str]]:
    out = []
    for i in range(n):
        d = Path(step_dir, str(i))
        start, end = read_start_record(d), read_exit_record(d)
        assert start is not None and end is not None, i
        out.append((start.time, end.time, start.job_id))
    return out


def _most_at_once(intervals: list[tuple[float, float, str]]) -> int:
    edges = sorted([(a, 1) for a, _, _ in intervals] + [(b, -1) for _, b, _ in intervals])
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


@pytest.mark.parametrize("name", DETACHED)
def test_packed_array_honours_max_parallel(
    name: str, request: pytest.FixtureRequest, engine_factory: Callable[..., Engine]
) -> None:
    from .conftest import use_scheduler

    use_scheduler(request, name)
    wf = {
        "name": "packed",
        "steps": [
            {
                "name": "sim",
                "sweep": {"x": {"range": [0, 24]}},
                "max_parallel": 4,
                "pack": 4,
                "run": "sleep 0.5",
            }
        ],
    }

    ex = _run(engine_factory, wf, name, 240)
    sim = ex.step("sim")
    assert sim.state is StepState.COMPLETED, sim.reason
    assert sim.native_id and "," not in sim.native_id  # one sbatch / qsub
    got = _intervals(sim.directory, 24)
    elements = {job for _, _, job in got}
    assert len(elements) == 6, elements  # 24 instances packed 4 per array element
    assert _most_at_once(got) <= 4
    summary = _summary(ex, "sim")
    assert (summary["pack"], summary["elements"]) == (4, 6)


@pytest.mark.slurm
def test_array_split_by_max_array_size_runs_each_instance_once(
    slurm: str, engine_factory: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the cluster's MaxArraySize as if `scontrol show config` said 3 (parsing it is unit-tested)
    monkeypatch.setitem(sweeps._MAX_ARRAY, "slurm", 3)
    wf = {
        "name": "split",
        "steps": [
            {
                "name": "sim",
                "sweep": {"x": {"range": [0, 10]}},
                "pack": 1,
                "max_parallel": 4,
                "run": "echo $STAX_SWEEP_INDEX >> ../../runs.log",
            }
        ],
    }

    ex = _run(engine_factory, wf, "slurm", 240)
    sim = ex.step("sim")
    assert sim.state is StepState.COMPLETED, sim.reason
    assert sim.native_id is not None and len(sim.native_id.split(",")) == 4  # 3 + 3 + 3 + 1
    assert sorted(map(int, Path(ex.work_dir, "runs.log").read_text().split())) == list(range(10))


def test_cancel_removes_the_array(cluster: str, engine_factory: Callable[..., Engine]) -> None:
    wf = {
        "name": "cancelme",
        "steps": [
            {
                "name": "sim",
                "sweep": {"x": {"range": [0, 6]}},
                "max_parallel": 2,
                "run": "echo $BASHPID > pid; exec sleep 300",
            },
        ],
    }

    async def main() -> Execution:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster)
            from ..waiting import wait_for_async

            await wait_for_async(
                lambda: eng.get(ex.id).step("sim").state is StepState.RUNNING,
                120,
                "the sweep to run",
            )
            await eng.cancel(ex.id)
            return await eng.wait(ex.id, timeout=60)

    ex = arun(main())
    sim = ex.step("sim")
    assert sim.state is StepState.CANCELED and sim.native_id
    if cluster == "slurm":
        wait_for(
            lambda: not _squeue(sim.native_id or "", "PD,R,CG,S"),
            60,
            "the array to leave squeue",
        )
    pids = [int(p.read_text()) for p in Path(sim.directory).glob("*/pid")]
    assert pids  # some instance ran
    if cluster == "local":
        # the cancel ended every instance's process (on Slurm that is the scheduler's work once
        # the array has left squeue: the test Slurm's proctrack/linuxproc can lose a process
        # whose parent died first, which a site's proctrack/cgroup cannot; seen 1 run in ~10)
        wait_for(
            lambda: not [p for p in pids if _alive(p)], 60, "the instances' processes to end"
        )
    counts = _summary(ex, "sim")["counts"]
    assert counts.get("canceled", 0) >= 1 and "running" not in counts and "queued" not in counts


def test_kill9_engine_mid_sweep_then_adoption_runs_each_instance_once(
    cluster: str, engine_factory: Callable[..., Engine], store_path: Path
) -> None:
    wf = {
        "name": "adopt",
        "steps": [
            {
                "name": "sim",
                "sweep": {"x": {"range": [0, 12]}},
                "pack": 1,
                "max_parallel": 3,
                "run": "echo $STAX_SWEEP_INDEX >> ../../runs.log; sleep 1",
            },
            {"name": "after", "after": ["sim"], "run": "ls ../sim | grep -c '^[0-9]'"},
        ],
    }
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "engine_proc.py"), cluster, json.dumps(wf)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    eid = proc.stdout.readline().strip()
    store = Store(store_path)
    try:
        wait_for(
            lambda: store.get(eid).step("sim").state is StepState.RUNNING,
            120,
            "the sweep to run",
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store.close()

    ex = _run(engine_factory, None, adopt=eid)  # an engine that starts adopts the orphan
    sim = ex.step("sim")
    assert sim.state is StepState.COMPLETED and sim.attempt == 1, sim.reason
    assert ex.step("after").state is StepState.COMPLETED
    runs = Path(ex.work_dir, "runs.log").read_text().split()
    assert sorted(map(int, runs)) == list(range(12)), "an instance ran twice or never"
    if cluster == "slurm":
        assert sim.job_name and len(_jobs_named(sim.job_name)) == 1  # the array, once


def test_retries_rerun_only_the_failed_instance(
    stax_env: Path, engine_factory: Callable[..., Engine]
) -> None:
    wf = {
        "name": "retries",
        "steps": [
            {
                "name": "sim",
                "sweep": {"x": {"range": [0, 6]}},
                "retries": 2,
                "run": "echo $STAX_SWEEP_INDEX >> ../../runs.log\n"
                "if [ $STAX_SWEEP_INDEX = 2 ] && [ ! -e tried ]; then touch tried; exit 3; fi\n",
            }
        ],
    }

    ex = _run(engine_factory, wf, "local", 120)
    sim = ex.step("sim")
    assert sim.state is StepState.COMPLETED and sim.attempt == 2, sim.reason
    assert [h.reason for h in sim.history] == [
        "1 of 6 instances did not complete: 2 (exit 3)"
    ]
    runs = Path(ex.work_dir, "runs.log").read_text().split()
    assert sorted(map(int, runs)) == [0, 1, 2, 2, 3, 4, 5]


def test_on_failure_stop_cancels_the_rest(
    stax_env: Path, engine_factory: Callable[..., Engine]
) -> None:
    wf = {
        "name": "stop",
        "on_failure": "stop",
        "steps": [
            {
                "name": "sim",
                "sweep": {"x": {"range": [0, 8]}},
                "max_parallel": 1,
                "run": "echo $STAX_SWEEP_INDEX >> ../../runs.log\n"
                "[ $STAX_SWEEP_INDEX != 0 ] || exit 4\nsleep 2\n",
            },
            {"name": "after", "after": ["sim"], "run": "true"},
        ],
    }

    ex = _run(engine_factory, wf, "local", 120)
    sim = ex.step("sim")
    assert sim.state is StepState.FAILED, (sim.state, sim.reason)
    assert sim.reason is not None and sim.reason.startswith("8 of 8 instances did not complete")
    assert "0 (exit 4)" in sim.reason and "(canceled)" in sim.reason
    ran = Path(ex.work_dir, "runs.log").read_text().split()
    assert len(ran) < 8, ran  # the rest of the sweep never started
    counts = _summary(ex, "sim")["counts"]
    assert counts["failed"] == 1 and counts["canceled"] == 7 - counts.get("lost", 0)
    assert ex.step("after").state is StepState.SKIPPED



def _waits_for(name: str, native_id: str) -> str:
    """What the scheduler says job ``native_id`` waits for (its dependency list)."""
    if name == "slurm":
        argv = ["squeue", "-h", "-j", native_id, "-o", "%E"]
    else:
        argv = ["qstat", "-j", native_id]
    return subprocess.run(argv, capture_output=True, text=True).stdout


@pytest.mark.parametrize("name", DETACHED)
def test_detached_sweeps_run_with_no_engine_and_are_reconciled_per_instance(
    name: str,
    request: pytest.FixtureRequest,
    engine_factory: Callable[..., Engine],
    store_path: Path,
) -> None:
    from .conftest import use_scheduler

    use_scheduler(request, name)
    gate = "until [ -e ../../go ]; do sleep 0.2; done"
    wf = {
        "name": "detsweep",
        "steps": [
            {  # 6 instances, one per element, split into two arrays (4 + 2)
                "name": "sim",
                "sweep": {"x": {"range": [0, 6]}},
                "pack": 1,
                "run": f"{gate}\necho {{{{x}}}} > out.txt",
            },
            {"name": "collect", "after": ["sim"], "run": "cat ../sim/*/out.txt | wc -l"},
            {
                "name": "bad",
                "sweep": {"x": [0, 1]},
                "pack": 1,
                "run": f"{gate}\n[ {{{{x}}}} = 0 ] || exit 3",
            },
            {  # a sweep after a failed sweep: its elements record its instances skipped
                "name": "never",
                "after": ["bad"],
                "sweep": {"y": [0, 1, 2]},
                "run": "touch ../../never-ran",
            },
        ],
    }
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "engine_proc.py"), name, json.dumps(wf), "--detach",
         "--max-array=4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    eid = proc.stdout.readline().strip()
    assert proc.wait(timeout=120) == 0  # the submitting process is gone
    ex = Store(store_path).get(eid)
    assert ex.owner is None and not ex.state.final
    assert all(s.native_id for s in ex.steps), [(s.name, s.state) for s in ex.steps]
    arrays = (ex.step("sim").native_id or "").split(",")
    assert len(arrays) == 2, arrays  # split by the array size limit
    waits = _waits_for(name, ex.step("collect").native_id or "")
    assert all(a in waits for a in arrays), waits  # the dependant waits on BOTH arrays
    assert (ex.step("bad").native_id or "") in _waits_for(name, ex.step("never").native_id or "")
    Path(ex.work_dir, "go").touch()
    collect = Path(ex.step("collect").directory)
    wait_for(lambda: (collect / "stax.exit").exists(), 180, f"{name} to run collect alone")
    never = Path(ex.step("never").directory)
    wait_for(
        lambda: all((never / str(i) / "stax.exit").exists() for i in range(3)),
        120,
        f"{name} to end the elements of never",
    )
    assert not Store(store_path).get(eid).state.final  # nobody watched
    assert (collect / "stax.out").read_text().strip() == "6"

    ex = _run(engine_factory, None, timeout=120, adopt=eid)  # as a later status does
    got = {s.name: (s.state.value, s.reason) for s in ex.steps}
    assert got == {
        "sim": ("completed", None),
        "collect": ("completed", None),
        "bad": ("failed", "1 of 2 instances did not complete: 1 (exit 3)"),
        "never": ("skipped", "not run: upstream step 'bad' failed"),
    }, got
    assert _summary(ex, "sim")["counts"] == {"completed": 6}  # per instance, from its records
    assert _summary(ex, "bad")["counts"] == {"completed": 1, "failed": 1}
    assert not Path(ex.work_dir, "never-ran").exists()
