"""The engine on the project's real Grid Engine (``scheduler: sge``): the engine's own behaviour
tests from ``tests/engine`` (taken over unchanged, with ``cluster`` = the ``sge`` cluster of
``conftest.py``) and the Grid Engine specific ones: a job leaves qstat on cancel, multi-slot
steps through the parallel environment, each step submitted once across a kill -9 of the
engine, a job that can never start, the live summary, the CLI, a step in a StaX image.
Detached ``-hold_jid`` chains, sge_qmaster stopped mid-run and PSI/J's files in a cluster-side
directory are the Slurm tests of ``tests/engine`` (test_recovery.py, test_transport.py),
parametrised over both schedulers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.api import SgeSummary
from jupyter_stax.core.states import StepState
from jupyter_stax.engine.engine import Engine

from ..cli.test_cli import Stax
from ..conftest import SGE_CLUSTER
from ..engine.conftest import arun

# the engine's behaviour tests, collected here again with cluster = "sge"
from ..engine.test_dag_runs import (  # noqa: F401
    test_cancel_stops_running_job_and_marks_pending_canceled,
    test_diamond_completes_in_dependency_order,
    test_failed_step_skips_dependants_and_independent_branch_completes,
    test_retry_completes_on_second_attempt,
)
from ..engine.test_hostile_params import test_generated_values_arrive_literally  # noqa: F401
from ..engine.test_recovery import (  # noqa: F401
    _start_engine_proc,
    _wait_store,
    test_interrupted_submission_that_never_reached_the_scheduler_runs_once,
    test_kill9_engine_then_new_engine_finishes_each_step_submitted_once,
)
from ..engine.test_transport import (  # noqa: F401
    test_a_cluster_that_stops_answering_fails_no_step,
    test_records_of_all_running_steps_are_read_in_one_batch,
)
from ..proc import kill, wait_for

pytestmark = pytest.mark.sge


def in_qstat(native_id: str) -> bool:
    out = subprocess.run(["qstat"], capture_output=True, text=True, check=True).stdout
    return native_id in [line.split()[0] for line in out.splitlines()[2:] if line.split()]


def test_a_two_slot_step_gets_two_slots_of_the_pe(engine_factory: Callable[..., Engine]) -> None:
    wf = {
        "name": "slots",
        "steps": [
            {
                "name": "two",
                "resources": {"cpus_per_task": 2},
                "run": 'echo "$PE $NSLOTS"; wc -l < "$PE_HOSTFILE"; cat "$PE_HOSTFILE"',
            }
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="sge")
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    s = ex.step("two")  # type: ignore[attr-defined]
    assert s.state is StepState.COMPLETED, s.reason
    pe, hosts, line = Path(s.stdout).read_text().splitlines()[:3]
    assert (pe, hosts) == ("smp 2", "1")
    assert line.split()[1:3] == ["2", "all.q@" + line.split()[0]]  # 2 slots on one host


def test_cancel_deletes_the_running_job(engine_factory: Callable[..., Engine]) -> None:
    wf = {
        "name": "long",
        "steps": [
            {"name": "sleeper", "run": "sleep 300"},
            {"name": "later", "after": ["sleeper"], "run": "echo never"},
        ],
    }

    async def main() -> tuple[object, str]:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="sge")
            s = await wait_step(eng, ex.id, "sleeper", lambda s: s.state is StepState.RUNNING)
            assert s.native_id and in_qstat(s.native_id)
            return await eng.cancel(ex.id), s.native_id

    ex, native = arun(main())
    assert ex.state.value == "canceled"  # type: ignore[attr-defined]
    assert ex.step("sleeper").state is StepState.CANCELED  # type: ignore[attr-defined]
    assert ex.step("later").state is StepState.CANCELED  # type: ignore[attr-defined]
    wait_for(lambda: not in_qstat(native), 60, f"job {native} to leave qstat")


async def wait_step(
    eng: Engine, eid: str, step: str, pred: Callable[[Any], bool], timeout: float = 120
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = eng.get(eid).step(step)
        if pred(s):
            return s
        await asyncio.sleep(0.1)
    raise AssertionError(f"step {step} never reached the state asked, last: {s}")


def accounted(job_name: str) -> list[str]:
    """Job numbers of ended jobs named ``job_name`` (``qacct -j NAME``)."""
    out = subprocess.run(["qacct", "-j", job_name], capture_output=True, text=True).stdout
    return [ln.split()[1] for ln in out.splitlines() if ln.startswith("jobnumber")]


def test_kill9_then_adoption_submits_each_step_once(
    engine_factory: Callable[..., Engine], store_path: Path
) -> None:
    steps: list[dict[str, object]] = [
        {"name": f"s{i}", "run": "echo $STAX_STEP >> ../runs.log; sleep 1"} for i in range(6)
    ]
    for i in range(1, 6):
        steps[i]["after"] = [f"s{i - 1}"]
    proc, eid = _start_engine_proc("sge", {"name": "chain6", "steps": steps})
    try:  # killed while s2 is queued or running at Grid Engine
        _wait_store(
            store_path, eid, lambda ex: ex.step("s2").native_id is not None, 120, "s2 submitted"
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    async def main() -> object:
        async with engine_factory() as eng:  # adopts the orphan at start
            return await eng.wait(eid, timeout=180)

    ex = arun(main())
    assert [(s.state.value, s.attempt) for s in ex.steps] == [("completed", 1)] * 6  # type: ignore[attr-defined]
    assert Path(ex.work_dir, "runs.log").read_text().split() == [f"s{i}" for i in range(6)]  # type: ignore[attr-defined]
    for s in ex.steps:  # type: ignore[attr-defined]
        ids = wait_for(lambda s=s: accounted(s.job_name), 30, f"qacct of {s.job_name}")
        assert ids == [s.native_id], f"{s.name} submitted as {ids}"


def test_a_job_that_can_never_start_is_reported(engine_factory: Callable[..., Engine]) -> None:
    wf = {
        "name": "too-big",
        "steps": [
            {"name": "big", "run": "echo never", "resources": {"cpus_per_task": 99}},
            {"name": "small", "run": "echo fine"},
        ],
    }

    async def main() -> tuple[list[str], object, object]:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="sge")
            deadline = time.monotonic() + 120
            while not eng.get(ex.id).warnings and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            seen = eng.get(ex.id).warnings
            await wait_step(eng, ex.id, "small", lambda s: s.state.final)
            big = eng.get(ex.id).step("big")
            assert big.state is StepState.QUEUED, big
            await eng.cancel(ex.id)
            deadline = time.monotonic() + 30
            while eng.get(ex.id).warnings and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return seen, big.native_id, eng.get(ex.id)

    seen, native, final = arun(main())
    assert len(seen) == 1, seen
    assert seen[0].startswith(
        f"step 'big' (job {native}) will not start as it stands: no suitable queues: "
        'cannot run in PE "smp" because it only offers 0 slots'
    ), seen
    assert "cancel and submit it again" in seen[0]
    assert final.state.value == "canceled" and final.warnings == []  # type: ignore[attr-defined]
    assert final.step("small").state is StepState.COMPLETED  # type: ignore[attr-defined]


def test_live_summary_counts_slots_hosts_and_my_jobs(stax_env: Path) -> None:
    from jupyter_stax.service import LocalService

    def scheduler_summary() -> object:  # what `GET clusters/sge` and `jupyter stax` show
        return LocalService(stax_env / "state" / "stax.sqlite").cluster("sge").summary

    before = scheduler_summary()
    assert isinstance(before, SgeSummary) and before.queue == "all.q"
    assert before.slots.total == 4 and before.hosts.total == 1
    job = subprocess.run(
        [
            "qsub",
            "-terse",
            "-b",
            "y",
            "-pe",
            "smp",
            "2",
            "-o",
            "/dev/null",
            "-j",
            "y",
            "sleep",
            "60",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        wait_for(
            lambda: "r" in subprocess.run(["qstat"], capture_output=True, text=True).stdout.split(),
            60,
            "the job to run",
        )
        s = scheduler_summary()
        assert isinstance(s, SgeSummary)
        assert s.slots.used >= 2 and s.slots.used + s.slots.available <= s.slots.total
        assert s.jobs.running >= 1 and s.hosts.allocated == 1
    finally:
        subprocess.run(["qdel", job], capture_output=True)


@pytest.fixture
def cli(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stax]:
    """``jupyter stax`` in the test's environment (as tests/cli's fixture)."""
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    monkeypatch.delenv("COLUMNS", raising=False)
    stax = Stax(stax_env, stax_env / "state" / "stax.sqlite")
    yield stax
    kill(stax.daemon_pids())


def test_cli_run_wait_on_the_sge_cluster(cli: Stax) -> None:
    cli.write(
        "two.yaml",
        "name: two\nsteps:\n  - name: a\n    run: echo A > out\n"
        "  - name: b\n    after: [a]\n    run: cat ../a/out; echo $JOB_ID\n",
    )
    r = cli("run", "two.yaml", "--cluster", "sge", "--wait", timeout=240)
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    assert r.stdout.startswith(f"submitted {eid} (two, 2 steps on sge)")
    st = cli.status(eid)
    assert st["state"] == "completed"
    b = next(s for s in st["steps"] if s["name"] == "b")
    assert cli.ok("logs", eid, "b") == f"A\n{b['native_id']}\n"  # $JOB_ID: a Grid Engine job


def test_doctor_checks_the_live_grid_engine(sge: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_stax.core.models import Cluster
    from jupyter_stax.doctor import check_cluster

    c = Cluster(name="g", scheduler="gridengine")
    (f,) = list(check_cluster(c))
    assert (f.level, f.what) == ("ok", "cluster g (sge)")
    assert f.detail.startswith("qstat -f answers: 1 queue instance(s) (all.q@"), f.detail
    monkeypatch.setenv("SGE_CELL", "nosuchcell")
    (f,) = list(check_cluster(c))
    assert f.level == "fail" and "nosuchcell/common/act_qmaster does not exist" in f.detail
    assert "settings.sh" in f.fix
    monkeypatch.delenv("SGE_ROOT", raising=False)
    monkeypatch.delenv("SGE_CELL", raising=False)
    warn, ok = list(check_cluster(c))  # Debian's wrappers default SGE_ROOT
    assert (warn.level, ok.level) == ("warn", "ok") and "SGE_ROOT is not set" in warn.detail


def test_step_runs_inside_a_stax_image_with_ch_run(
    stax_env: Path, engine_factory: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tests/engine/test_stax_live.py on Slurm: a StaX catalog image run by ch-run inside a
    Grid Engine job, parameters quoted, the step and work directories bound."""
    from jupyter_stax.core.clusters import ClusterRegistry

    from ..images import LABELS, MARKER, busybox_available, charliecloud_image

    if not busybox_available():
        pytest.skip("needs ch-run and busybox-static")
    img = charliecloud_image(stax_env / "images" / "busy-x86")
    (stax_env / "images.yaml").write_text(
        "stax:\n  busy:\n    description: busybox, for tests\n"
        f"    variants:\n      - image: {img}\n"
    )
    monkeypatch.setenv("JUPYTER_STAX_IMAGES", str(stax_env / "images.yaml"))
    (stax_env / "clusters.yaml").write_text(
        "clusters:\n"
        + SGE_CLUSTER
        + "    container_runtime: charliecloud\n    traits: {cpu: x86_64, mpi: none}\n"
    )
    monkeypatch.delenv("USER", raising=False)  # the job script sets it for ch-run
    wf = {
        "name": "in-stax",
        "params": {"word": "x; echo INJECTED"},
        "steps": [
            {"name": "prep", "run": "touch from-host; test ! -f /etc/stax-marker && echo host"},
            {
                "name": "probe",
                "after": ["prep"],
                "image": "busy",
                "run": 'cat /etc/stax-marker; echo "step={{word}}"; pwd; '
                "test -f ../prep/from-host && echo host-file-seen",
            },
        ],
    }

    async def main() -> object:
        async with engine_factory(clusters=ClusterRegistry.load()) as eng:
            ex = await eng.submit(wf, cluster="sge")
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]  # type: ignore[attr-defined]
    probe = ex.step("probe")  # type: ignore[attr-defined]
    out = Path(probe.stdout).read_text().splitlines()
    assert out == [MARKER, "step=x; echo INJECTED", probe.directory, "host-file-seen"]
    r = probe.resolved_image
    assert r is not None and r.runtime == "charliecloud" and r.labels == LABELS
    assert "ch-run -b " in Path(probe.directory, "stax.job.sh").read_text()
