"""Executions outlive the process that submitted them; the scheduler may go away for a while."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_stax.core.models import Execution, StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.store import Store

from ..conftest import SGE_SCRIPTS, SLURM_SCRIPTS
from ..waiting import wait_for, wait_for_async
from .conftest import arun, use_scheduler

HERE = Path(__file__).parent


def _start_engine_proc(
    cluster: str, wf: dict[str, object], *args: str
) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [sys.executable, str(HERE / "engine_proc.py"), cluster, json.dumps(wf), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    eid = p.stdout.readline().strip()
    assert eid, "engine process did not start"
    return p, eid


def _wait_store(
    store: Path, eid: str, pred: Callable[[Execution], bool], timeout: float, what: str
) -> Execution:
    st = Store(store)
    try:
        return wait_for(lambda: ex if pred(ex := st.get(eid)) else None, timeout, what)
    finally:
        st.close()


def _squeue(*native_ids: str, states: str = "all") -> dict[str, str]:
    """Slurm's word on jobs: native id -> "STATE REASON" (jobs it forgot are left out)."""
    out = subprocess.run(
        ["squeue", "-h", "-j", ",".join(native_ids), "-t", states, "-o", "%i %T %r"],
        capture_output=True,
        text=True,
    ).stdout
    return {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in out.splitlines() if " " in ln}


def test_kill9_engine_then_new_engine_finishes_each_step_submitted_once(
    cluster: str, engine_factory: Callable[..., Engine], store_path: Path
) -> None:
    # a chain of 10 steps; every run of a step leaves a line in ../runs.log
    steps = [
        {"name": f"s{i}", "run": f"echo $STAX_STEP >> ../runs.log; sleep 0.5; exit {i % 2 * 0}"}
        for i in range(10)
    ]
    for i in range(1, 10):
        steps[i]["after"] = [f"s{i - 1}"]
    steps[7]["run"] = "echo $STAX_STEP >> ../runs.log; exit 4"  # a failure must survive too
    steps[8]["after"] = ["s6"]
    steps[9]["after"] = ["s7"]
    wf = {"name": "chain10", "steps": steps}
    proc, eid = _start_engine_proc(cluster, wf)
    try:
        _wait_store(store_path, eid, lambda ex: ex.step("s3").state.final, 120, "s3 to end")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    async def main() -> object:
        async with engine_factory() as eng:  # adopts the orphan at start
            return await eng.wait(eid, timeout=180)

    ex = arun(main())
    states = {s.name: (s.state.value, s.exit_code, s.attempt) for s in ex.steps}  # type: ignore[attr-defined]
    expected = {f"s{i}": ("completed", 0, 1) for i in range(10)}
    expected["s7"] = ("failed", 4, 1)
    expected["s9"] = ("skipped", None, 0)
    assert states == expected
    runs = Path(ex.work_dir, "runs.log").read_text().split()  # type: ignore[attr-defined]
    assert sorted(runs) == sorted(f"s{i}" for i in range(9)), "a step ran twice or never"
    if cluster == "slurm":
        for s in ex.steps:  # type: ignore[attr-defined]
            if s.job_name:
                ids = subprocess.run(
                    ["squeue", "--me", "-h", "-t", "all", "-n", s.job_name, "-o", "%i"],
                    capture_output=True,
                    text=True,
                ).stdout.split()
                assert len(ids) == 1, f"{s.name} submitted {len(ids)} times: {ids}"


@pytest.mark.slurm
def test_unknown_native_id_after_restart_is_lost_not_completed(
    slurm: str, engine_factory: Callable[..., Engine], store_path: Path, stax_env: Path
) -> None:
    # a cluster whose jobs may begin only in an hour: the job cannot start, so it can never
    # leave an exit record (which would rightly make the next engine say 'failed')
    clusters = stax_env / "clusters.yaml"
    clusters.write_text(
        clusters.read_text() + "  later:\n"
        "    scheduler: slurm\n"
        "    queue: debug\n"
        '    walltime: "00:10:00"\n'
        "    poll_interval: 1\n"
        "    custom_attributes: {slurm.begin: now+3600}\n"
    )
    wf = {"name": "lost", "steps": [{"name": "a", "run": "sleep 600"}]}
    proc, eid = _start_engine_proc("later", wf)
    try:
        ex = _wait_store(
            store_path, eid, lambda ex: ex.step("a").native_id is not None, 60, "a's job id"
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    real = ex.step("a").native_id
    assert real
    wait_for(
        lambda: _squeue(real).get(real) == "PENDING BeginTime",
        30,
        f"Slurm to hold job {real} back until its begin time",
    )
    subprocess.run(["scancel", real], check=True)
    wait_for(
        lambda: _squeue(real).get(real, "CANCELLED").startswith("CANCELLED"),
        30,
        f"Slurm to cancel job {real}",
    )
    assert not Path(ex.step("a").directory, "stax.exit").exists()
    # the store now names a job id Slurm never had
    st = Store(store_path)
    with st.transaction() as db:
        db.execute("UPDATE steps SET native_id='99999999' WHERE execution_id=?", (eid,))
    st.close()

    async def main() -> Execution:
        async with engine_factory() as eng:
            return await eng.wait(eid, timeout=60)

    done = arun(main())
    a = done.step("a")
    assert a.state is StepState.LOST
    assert "99999999" in (a.reason or "") and "unknown" in (a.reason or "")


#: a scheduler's controller stopped mid-run: (cluster, the script that stops and starts it,
#: seconds it stays down, words of the warning the execution shows meanwhile)
OUTAGES = [
    pytest.param(
        "slurm", SLURM_SCRIPTS / "ctld.sh", 30, ("not answering",),
        marks=pytest.mark.slurm, id="slurmctld-30s",
    ),
    pytest.param(
        "sge", SGE_SCRIPTS / "qmaster.sh", 15, ("not answering", "qmaster"),
        marks=pytest.mark.sge, id="sge_qmaster-15s",
    ),
]


@pytest.mark.parametrize(("name", "controller", "seconds", "said"), OUTAGES)
def test_scheduler_down_fails_nothing_and_run_completes(
    name: str,
    controller: Path,
    seconds: float,
    said: tuple[str, ...],
    request: pytest.FixtureRequest,
    engine_factory: Callable[..., Engine],
) -> None:
    use_scheduler(request, name)
    steps = [{"name": f"w{i}", "run": "sleep 8; echo done"} for i in range(3)]
    steps.append({"name": "last", "after": ["w0", "w1", "w2"], "run": "echo last"})
    wf = {"name": "outage", "steps": steps}
    ctl = str(controller)
    seen_warning: list[str] = []

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=name)
            # each has started (one that already ended cannot go back to running)
            await wait_for_async(
                lambda: all(
                    eng.get(ex.id).step(f"w{i}").state in (StepState.RUNNING, StepState.COMPLETED)
                    for i in range(3)
                ),
                120,
                "w0, w1 and w2 to run",
            )
            await asyncio.to_thread(subprocess.run, ["bash", ctl, "stop"], check=True)
            try:
                t_end = time.monotonic() + seconds
                while time.monotonic() < t_end:
                    cur = eng.get(ex.id)
                    assert not any(
                        s.state in (StepState.FAILED, StepState.LOST) for s in cur.steps
                    ), [(s.name, s.reason) for s in cur.steps]
                    seen_warning.extend(cur.warnings)
                    await asyncio.sleep(0.5)
            finally:
                await asyncio.to_thread(subprocess.run, ["bash", ctl, "start"], check=True)
            return await eng.wait(ex.id, timeout=180)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]  # type: ignore[attr-defined]
    assert any(all(w in warning for w in said) for warning in seen_warning), (
        f"no warning saying {said} while {Path(ctl).name} had stopped the scheduler: "
        f"{seen_warning}"
    )
    assert not ex.warnings  # type: ignore[attr-defined]


#: the schedulers of detached mode (scheduler-native dependencies: afterany, -hold_jid)
DETACHED = [
    pytest.param("slurm", marks=pytest.mark.slurm),
    pytest.param("sge", marks=pytest.mark.sge),
]


def _unfinished(name: str, native_ids: list[str]) -> list[str]:
    """The jobs among ``native_ids`` that the scheduler still has queued or running."""
    if name == "slurm":
        return list(_squeue(*native_ids, states="PD,R,CG,S"))
    out = subprocess.run(["qstat"], capture_output=True, text=True, check=True).stdout
    listed = {ln.split()[0] for ln in out.splitlines()[2:] if ln.split()}
    return [n for n in native_ids if n in listed]


@pytest.mark.parametrize("name", DETACHED)
def test_detached_chain_runs_with_no_engine_and_is_reported_afterwards(
    name: str,
    request: pytest.FixtureRequest,
    engine_factory: Callable[..., Engine],
    store_path: Path,
) -> None:
    use_scheduler(request, name)
    steps = [{"name": f"c{i}", "run": "sleep 1; echo $STAX_STEP >> ../order.log"} for i in range(5)]
    for i in range(1, 5):
        steps[i]["after"] = [f"c{i - 1}"]
    wf = {"name": "detached", "steps": steps}
    proc, eid = _start_engine_proc(name, wf, "--detach")
    assert proc.wait(timeout=60) == 0  # the submitting process is gone
    ex = Store(store_path).get(eid)
    ids = [str(s.native_id) for s in ex.steps]
    assert all(s.native_id for s in ex.steps) and not ex.state.final
    assert ex.owner is None
    if name == "sge":  # the scheduler holds each job for the one before (-hold_jid); Slurm
        # shows a dependency only until it is satisfied, which may be before this line
        held = subprocess.run(["qstat", "-j", ids[4]], capture_output=True, text=True).stdout
        assert "jid_predecessor_list" in held and ids[3] in held
    order = Path(ex.work_dir, "order.log")
    wait_for(
        lambda: len(order.read_text().split() if order.exists() else []) >= 5,
        120,
        f"{name} to run the five steps (order.log)",
    )
    assert order.read_text().split() == [f"c{i}" for i in range(5)]  # the scheduler ran it alone
    ex = Store(store_path).get(eid)
    assert not ex.state.final  # nobody watched

    async def main() -> object:
        async with engine_factory() as eng:
            return await eng.wait(eid, timeout=60)

    ex = arun(main())
    assert [(s.state.value, s.exit_code) for s in ex.steps] == [("completed", 0)] * 5  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", DETACHED)
def test_detached_failure_skips_dependants(
    name: str,
    request: pytest.FixtureRequest,
    engine_factory: Callable[..., Engine],
    store_path: Path,
) -> None:
    use_scheduler(request, name)
    wf = {
        "name": "detfail",
        "steps": [
            {"name": "a", "run": "exit 5"},
            {"name": "b", "after": ["a"], "run": "echo never > ../b-ran"},
            {"name": "c", "after": ["b"], "run": "echo never > ../c-ran"},
        ],
    }
    proc, eid = _start_engine_proc(name, wf, "--detach")
    assert proc.wait(timeout=60) == 0
    # the engine comes only once the scheduler is done with all three jobs (nobody watched)
    ids = [s.native_id for s in Store(store_path).get(eid).steps if s.native_id]
    assert len(ids) == 3
    wait_for(
        lambda: not _unfinished(name, ids),
        120,
        f"{name} to finish jobs {ids}",
        interval=0.5,
    )

    async def main() -> object:
        async with engine_factory() as eng:
            return await eng.wait(eid, timeout=90)

    ex = arun(main())
    got = [(s.name, s.state.value, s.exit_code, s.reason) for s in ex.steps]  # type: ignore[attr-defined]
    assert got == [
        ("a", "failed", 5, "exit code 5"),
        ("b", "skipped", None, "not run: upstream step 'a' failed"),
        ("c", "skipped", None, "not run: upstream step 'b' skipped"),
    ]
    assert not Path(ex.work_dir, "b-ran").exists() and not Path(ex.work_dir, "c-ran").exists()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", DETACHED)
def test_detached_skips_name_the_failed_upstream_when_every_end_is_seen_at_once(
    name: str,
    request: pytest.FixtureRequest,
    engine_factory: Callable[..., Engine],
    stax_env: Path,
) -> None:
    """A watching engine reads the records of a failed step and of the dependants that its
    jobs skipped in one poll: the failed step's outcome waits for its stderr tail, the skips'
    do not; their reasons still name the step that did not complete (not the general one)."""
    from jupyter_stax.core.models import SubmitOptions
    from jupyter_stax.engine import observing

    use_scheduler(request, name)
    clusters = stax_env / "clusters.yaml"  # no status poll after the first: records tell
    clusters.write_text(clusters.read_text().replace("poll_interval: 1\n", "poll_interval: 3600\n"))
    wf = {
        "name": "detfail2",
        "steps": [
            {"name": "a", "run": "sleep 2; echo a broke >&2; exit 5"},
            {"name": "b", "after": ["a"], "run": "echo never > ../b-ran"},
            {"name": "c", "after": ["b"], "run": "echo never > ../c-ran"},
        ],
    }

    async def main() -> Execution:
        async with engine_factory(record_interval=3600.0) as eng:  # one records read, at start
            ex = await eng.submit(wf, cluster=name, options=SubmitOptions(detached=True))
            dirs = [Path(s.directory) for s in ex.steps]
            await wait_for_async(
                lambda: all((d / "stax.exit").exists() for d in dirs), 120,
                f"{name} to end a, b and c",
            )
            assert not eng.get(ex.id).state.final  # nobody read a record yet
            await observing.check_records(eng)  # the engine's records poll: all three ended
            return await eng.wait(ex.id, timeout=60)

    ex = arun(main())
    got = [(s.name, s.state.value, s.reason) for s in ex.steps]
    assert got == [
        ("a", "failed", "exit code 5: a broke"),
        ("b", "skipped", "not run: upstream step 'a' failed"),
        ("c", "skipped", "not run: upstream step 'b' skipped"),
    ]
    assert not Path(ex.work_dir, "b-ran").exists() and not Path(ex.work_dir, "c-ran").exists()


@pytest.mark.slurm
def test_two_node_four_task_srun_step_sees_four_ranks(
    slurm: str, engine_factory: Callable[..., Engine]
) -> None:
    from ..conftest import slurm_nodes

    if slurm_nodes() < 2:
        pytest.skip("needs the two-node Slurm (SLURM_NODES=2)")
    wf = {
        "name": "mpi",
        "steps": [
            {
                "name": "ranks",
                "launcher": "srun",
                "resources": {"nodes": 2, "ntasks": 4},
                "run": 'echo "rank $SLURM_PROCID of $SLURM_NTASKS on $SLURMD_NODENAME"',
            }
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="slurm")
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    s = ex.step("ranks")  # type: ignore[attr-defined]
    assert s.state is StepState.COMPLETED, s.reason
    lines = sorted(Path(s.stdout).read_text().splitlines())
    assert [ln.split(" on ")[0] for ln in lines] == [f"rank {i} of 4" for i in range(4)]
    assert {ln.split(" on ")[1] for ln in lines} == {"node1", "node2"}


def test_interrupted_submission_that_never_reached_the_scheduler_runs_once(
    cluster: str, engine_factory: Callable[..., Engine], store_path: Path
) -> None:
    # what a crash right before sbatch/Popen leaves: an intent (submitted, attempt 1, job name)
    # and no job anywhere
    wf = {"name": "intent", "steps": [{"name": "a", "run": "echo ran >> ../runs.log"}]}
    ex = engine_factory(adopt=False).prepare(wf, cluster, owner=None)
    st = Store(store_path)
    st.insert_execution(ex)
    with st.transaction() as db:
        db.execute(
            "UPDATE steps SET state='submitted', attempt=1, job_name=?, submitted=? "
            "WHERE execution_id=?",
            (f"stax-{ex.id}-a", time.time(), ex.id),
        )
    st.close()
    t0 = time.monotonic()

    async def main() -> object:
        async with engine_factory(submit_settle=2.0) as eng:
            return await eng.wait(ex.id, timeout=120)

    done = arun(main())
    a = done.step("a")  # type: ignore[attr-defined]
    assert a.state is StepState.COMPLETED and a.attempt == 1
    assert time.monotonic() - t0 >= 2.0, "resubmitted before an orphaned submit could land"
    assert Path(done.work_dir, "runs.log").read_text() == "ran\n"  # type: ignore[attr-defined]
