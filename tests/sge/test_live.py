"""The Grid Engine executor through PSI/J on the project's real SGE (scripts/sge/start-sge.sh):
``psij.JobExecutor.get_instance('sge')`` finds it through the descriptor, and jobs really run."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psij
import pytest

from jupyter_stax.psij_sge import SgeExecutorConfig, parse

pytestmark = pytest.mark.sge

DEADLINE = 90.0  # seconds; a loaded 2-core machine schedules slowly


class Watched:
    """A PSI/J job and the states its callback saw, in order."""

    def __init__(self, spec: psij.JobSpec) -> None:
        self.job = psij.Job(spec)
        self.seen: list[psij.JobStatus] = []
        self._cond = threading.Condition()
        self.job.set_job_status_callback(self._cb)

    def _cb(self, job: psij.Job, status: psij.JobStatus) -> None:
        with self._cond:
            self.seen.append(status)
            self._cond.notify_all()

    def states(self) -> list[str]:
        with self._cond:
            return [s.state.name for s in self.seen]

    def wait_for(self, state: str, timeout: float = DEADLINE) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: state in [s.state.name for s in self.seen], timeout)
        assert ok, f"job {self.job.native_id} never reached {state}: {self.states()}"

    def final(self, timeout: float = DEADLINE) -> psij.JobStatus:
        st = self.job.wait(timeout=timedelta(seconds=timeout))
        assert st is not None and st.final, f"job {self.job.native_id} not final: {self.states()}"
        return st


@pytest.fixture(scope="module")
def executor(sge: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    work = tmp_path_factory.mktemp("sge-work")
    ex = psij.JobExecutor.get_instance(
        "sge",
        config=SgeExecutorConfig(
            work_directory=work, queue_polling_interval=0.5, initial_queue_polling_delay=0.2
        ),
    )
    yield ex
    ex._queue_poll_thread.done = True


def job_spec(d: Path, script: str, name: str = "stax-test", **kw: Any) -> psij.JobSpec:
    attrs = {"duration": timedelta(minutes=5), "queue_name": "all.q", **kw.pop("attributes", {})}
    d.mkdir(parents=True, exist_ok=True)
    return psij.JobSpec(
        executable="/bin/bash",
        arguments=["-c", script],
        directory=kw.pop("directory", d),
        name=name,
        stdout_path=d / "out.txt",
        stderr_path=d / "err.txt",
        launcher="single",
        attributes=psij.JobAttributes(**attrs),
        **kw,
    )


def submit(executor: Any, spec: psij.JobSpec) -> Watched:
    w = Watched(spec)
    executor.submit(w.job)
    assert w.job.native_id and w.job.native_id.isdigit()
    return w


def qstat_ids() -> set[str]:
    out = subprocess.run(
        ["qstat", "-xml", "-u", "*"], capture_output=True, text=True, check=True
    ).stdout
    return set(parse.parse_qstat_xml(out))


def qacct(native_id: str) -> dict[str, str]:
    """The job's accounting record (qacct writes it when the job ends; wait for it)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        r = subprocess.run(["qacct", "-j", native_id], capture_output=True, text=True)
        if r.returncode == 0 and "exit_status" in r.stdout:
            rec = r.stdout.split("\n=")[-1]
            return {
                k: v.strip() for k, _, v in (line.partition(" ") for line in rec.splitlines()) if k
            }
        assert time.monotonic() < deadline, f"no accounting record for job {native_id}"
        time.sleep(0.2)


def test_descriptor_registers_sge_and_gridengine(sge: str) -> None:
    names = psij.JobExecutor.get_executor_names()
    assert {"sge", "gridengine"} <= set(names)
    ex = psij.JobExecutor.get_instance("gridengine")
    try:
        assert ex.name == "gridengine"
        assert type(ex).__name__ == "SgeJobExecutor"
    finally:
        ex._queue_poll_thread.done = True


def test_echo_completes_with_states_in_order(executor: Any, tmp_path: Path) -> None:
    w = submit(
        executor,
        job_spec(tmp_path, "echo hello from $JOB_ID; pwd", attributes={"account": "stax"}),
    )
    st = w.final()
    assert st.state == psij.JobState.COMPLETED and st.exit_code == 0
    assert w.states() == ["QUEUED", "ACTIVE", "COMPLETED"]
    assert (tmp_path / "out.txt").read_text() == (f"hello from {w.job.native_id}\n{tmp_path}\n")
    rec = qacct(w.job.native_id)
    assert (rec["qname"], rec["project"], rec["jobname"], rec["exit_status"]) == (
        "all.q",
        "stax",
        "stax-test",
        "0",
    )


def test_exit_code_3_in_psij_and_accounting(executor: Any, tmp_path: Path) -> None:
    w = submit(executor, job_spec(tmp_path, "exit 3"))
    st = w.final()
    assert (st.state, st.exit_code) == (psij.JobState.FAILED, 3)
    # the script exits with the job's code, so Grid Engine's accounting has it too
    assert qacct(w.job.native_id)["exit_status"] == "3"


def test_exit_99_is_not_requeued(executor: Any, tmp_path: Path) -> None:
    """Grid Engine reschedules a job that exits 99: the script exits 1 instead, the .ec file
    keeps the real code."""
    w = submit(executor, job_spec(tmp_path, "echo run >> runs.txt; exit 99"))
    st = w.final()
    assert (st.state, st.exit_code) == (psij.JobState.FAILED, 99)
    assert (tmp_path / "runs.txt").read_text() == "run\n"
    assert qacct(w.job.native_id)["exit_status"] == "1"


def test_walltime_kill_takes_exit_status_from_qacct(executor: Any, tmp_path: Path) -> None:
    """h_rt is enforced; the killed job writes no exit code file, so qacct supplies it."""
    w = submit(
        executor,
        job_spec(tmp_path, "sleep 120", attributes={"duration": timedelta(seconds=2)}),
    )
    st = w.final()
    assert st.state == psij.JobState.FAILED
    assert st.exit_code == 137
    assert st.message and "h_rt" in st.message and "code 37" in st.message


def test_cancel_running_job(executor: Any, tmp_path: Path) -> None:
    w = submit(executor, job_spec(tmp_path, "echo started > started.txt; sleep 300"))
    w.wait_for("ACTIVE")
    deadline = time.monotonic() + DEADLINE
    while not (tmp_path / "started.txt").exists():  # really running, not just dispatched
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    executor.cancel(w.job)
    st = w.final()
    assert st.state == psij.JobState.CANCELED
    assert w.job.native_id not in qstat_ids()
    assert w.states()[-1] == "CANCELED"


def test_multi_slot_job_gets_the_pe_and_memory_per_slot(executor: Any, tmp_path: Path) -> None:
    w = submit(
        executor,
        job_spec(
            tmp_path,
            'echo "$NSLOTS $PE"; wc -l < "$PSIJ_NODEFILE"; ulimit -v',
            resources=psij.ResourceSpecV1(process_count=2, memory=2**30),
        ),
    )
    st = w.final()
    assert st.state == psij.JobState.COMPLETED, st
    # 2 slots of the smp PE, one node file line per slot, h_vmem 512 MiB per slot = 1 GiB
    assert (tmp_path / "out.txt").read_text().split() == ["2", "smp", "2", "1048576"]
    rec = qacct(w.job.native_id)
    assert (rec["granted_pe"], rec["slots"]) == ("smp", "2")


def test_job_name_and_working_directory_with_spaces(executor: Any, tmp_path: Path) -> None:
    wd = tmp_path / "a dir with spaces"
    wd.mkdir()
    w = submit(executor, job_spec(tmp_path, "pwd", name="my step: 1/2", directory=wd))
    st = w.final()
    assert st.state == psij.JobState.COMPLETED, st
    assert (tmp_path / "out.txt").read_text() == f"{wd}\n"
    assert qacct(w.job.native_id)["jobname"] == "my_step__1_2"


def test_hostile_custom_attributes_are_refused_or_literal(executor: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # a newline would start a shell line of the script: refused, nothing submitted
    bad = Watched(
        job_spec(
            tmp_path, "true", attributes={"custom_attributes": {"sge.l": f"h_rt=9\ntouch {marker}"}}
        )
    )
    with pytest.raises(psij.InvalidJobException, match="control characters"):
        executor.submit(bad.job)
    assert bad.job.native_id is None
    # shell syntax in a value is a literal word of the "#$" line (a comment to bash); the job
    # is held (bare option sge.h) until qstat -j has shown what Grid Engine kept
    value = f"x=$(touch {marker});`touch {marker}`"
    attrs = {"custom_attributes": {"sge.ac": value, "sge.h": ""}}
    w = submit(executor, job_spec(tmp_path, "echo ran", attributes=attrs))
    out = subprocess.run(
        ["qstat", "-j", w.job.native_id], capture_output=True, text=True, check=True
    ).stdout
    assert f"context:                    x=$(touch {marker});`touch {marker}`" in out
    subprocess.run(["qrls", w.job.native_id], capture_output=True, check=True)
    st = w.final()
    assert st.state == psij.JobState.COMPLETED, st
    assert (tmp_path / "out.txt").read_text() == "ran\n"
    assert not marker.exists()


def test_error_state_fails_with_reason_and_is_deleted(executor: Any, tmp_path: Path) -> None:
    w = submit(executor, job_spec(tmp_path, "true", directory=tmp_path / "missing"))
    st = w.final()
    assert st.state == psij.JobState.FAILED
    assert st.message and "Eqw" in st.message and "can't chdir" in st.message
    deadline = time.monotonic() + DEADLINE
    while w.job.native_id in qstat_ids():  # deleted, so it can never start later
        assert time.monotonic() < deadline, "the job in error state was not deleted"
        time.sleep(0.2)


def test_submit_refused_by_sge(executor: Any, tmp_path: Path) -> None:
    w = Watched(job_spec(tmp_path, "true", attributes={"queue_name": "nosuch.q"}))
    with pytest.raises(psij.SubmitException, match="unknown queue"):
        executor.submit(w.job)


def test_an_unprivileged_user_runs_jobs_too(sge: str) -> None:
    """The SGE of start-sge.sh runs root's jobs (min_uid 0) and any other user's."""
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root to submit as another user")
    import tempfile

    # pytest's tmp_path is under /tmp/pytest-of-root (mode 700): the job could not chdir there
    d = Path(tempfile.mkdtemp(prefix="stax-sge-"))
    d.chmod(0o777)
    out = d / "o.txt"
    env = ["env", f"SGE_ROOT={sge}", f"SGE_CELL={os.environ.get('SGE_CELL', 'default')}"]
    qsub = ["qsub", "-terse", "-sync", "y", "-wd", str(d), "-o", str(out), "-j", "y"]
    r = subprocess.run(
        ["runuser", "-u", "nobody", "--", *env, *qsub, "-b", "y", "id", "-un"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.read_text() == "nobody\n"
    assert qacct(r.stdout.split()[0])["owner"] == "nobody"
    shutil.rmtree(d)


def test_hold_jid_orders_jobs(executor: Any, tmp_path: Path) -> None:
    """``sge.hold_jid`` (what a detached execution needs): B starts only after A has ended."""
    a = submit(executor, job_spec(tmp_path / "a", "sleep 2; echo done > ../a-done.txt"))
    b = submit(
        executor,
        job_spec(
            tmp_path / "b",
            "cat ../a-done.txt",
            attributes={"custom_attributes": {"sge.hold_jid": a.job.native_id}},
        ),
    )
    assert a.final().state == psij.JobState.COMPLETED
    st = b.final()
    assert st.state == psij.JobState.COMPLETED, st
    assert (tmp_path / "b" / "out.txt").read_text() == "done\n"
