"""A remote Grid Engine cluster: the engine drives the project's real Grid Engine ONLY through the
real test sshd (``stax-remote@127.0.0.1``), as the remote account: ``qsub``, ``qstat`` (and
``qacct``, ``qdel``) run on the cluster through the SSH transport, the jobs are the remote
account's, a failing middle step skips its dependant, cancel deletes the remote job."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from jupyter_stax.core.models import Cluster
from jupyter_stax.core.states import ExecutionState, StepState

from ..waiting import wait_for
from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import (
    HOME,
    WAIT_FOR_GO,
    cluster,
    engine,
    release,
    step_state,
    transport,
    until,
)

pytestmark = [pytest.mark.ssh, pytest.mark.sge]


def sge_cluster(sshd: Sshd, client: Client, **kw: object) -> Cluster:
    return cluster(sshd, client, scheduler="sge", queue="all.q", **kw)


def remote_jobs() -> dict[str, str]:
    """The remote account's jobs in Grid Engine (asked on this machine, as root, with
    ``qstat -u REMOTEUSER``): job name -> job number."""
    out = subprocess.run(["qstat", "-xml", "-u", REMOTE_USER], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    return {
        (j.findtext("JB_name") or "").strip(): (j.findtext("JB_job_number") or "").strip()
        for j in ET.fromstring(out.stdout).iter("job_list")
    }


def job_owner(native_id: str) -> str:
    """The owner of an ended job, from Grid Engine's accounting (``qacct -j``). The engine can
    know the job ended (its exit record) before the execd's report reaches the accounting file
    (seen once with a CPU hog beside the run): wait for the job's record there."""

    def owners() -> list[str]:
        out = subprocess.run(["qacct", "-j", native_id], capture_output=True, text=True,
                             timeout=30)
        return [ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("owner ")]

    return str(wait_for(owners, 60, f"job {native_id} in Grid Engine's accounting", 0.5)[0])


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_dag_with_a_failing_middle_step_runs_on_a_remote_grid_engine(
    sshd: Sshd, client: Client, sge: str, tmp_path: Path, client_kind: str
) -> None:
    far = sge_cluster(sshd, client, ssh=client_kind)
    wf = {"name": "remote-sge", "steps": [
        {"name": "a", "run": WAIT_FOR_GO + '; echo hello; id -un; echo "job $JOB_ID"'},
        {"name": "b", "run": "echo bad >&2; exit 3", "after": ["a"]},
        {"name": "c", "run": "echo never > ../c-ran", "after": ["b"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit(wf, "far")
            assert ex.work_dir.startswith(str(HOME / "stax-runs") + "/")
            await until(lambda: step_state(e, ex.id, "a") is StepState.RUNNING, 120, "a running")
            native_a = e.get(ex.id).steps[0].native_id
            # the job is the remote account's (qstat -u stax-remote, asked here as root)
            assert remote_jobs().get(f"stax-{ex.id}-a") == native_a
            release(e, ex, "a")
            done = await e.wait(ex.id, 180)
            states = {s.name: (s.state, s.exit_code) for s in done.steps}
            assert states == {
                "a": (StepState.COMPLETED, 0), "b": (StepState.FAILED, 3),
                "c": (StepState.SKIPPED, None),
            }
            assert done.state is ExecutionState.FAILED
            assert not Path(done.work_dir, "c-ran").exists()
            a, b = done.steps[0], done.steps[1]
            tr = transport(e)
            out = f"released\nhello\n{REMOTE_USER}\njob {native_a}\n".encode()
            assert tr.read_chunk(a.stdout, 0, 1 << 16) == out
            assert tr.read_tail(b.stderr, 4) == b"bad\n"
            # Grid Engine's commands ran on the cluster, through the transport: qsub per
            # step, ONE qstat -xml per poll for all jobs
            assert tr.kinds.get("qsub") == 2, tr.kinds
            assert tr.kinds.get("qstat", 0) >= 1, tr.kinds
            assert tr.connection.stats.connects == 1
            for s in (a, b):
                assert s.native_id and job_owner(s.native_id) == REMOTE_USER
            # the step files are on the cluster, in the remote user's home, owned by it
            uid = pwd.getpwnam(REMOTE_USER).pw_uid
            for s in (a, b):
                for f in ("stax.job.sh", "stax.start", "stax.exit", "stax.out"):
                    assert os.stat(Path(s.directory, f)).st_uid == uid, f
            # PSI/J's local copies of the submit scripts are removed once the jobs ended
            state = tmp_path / "state" / "psij" / "far"
            await until(lambda: not list(state.rglob("*.job")), 30, "no local .job files")

    asyncio.run(body())


def test_cancel_deletes_the_remote_grid_engine_job(
    sshd: Sshd, client: Client, sge: str, tmp_path: Path
) -> None:
    far = sge_cluster(sshd, client)
    wf = {"name": "cancel-sge", "steps": [
        {"name": "long", "run": WAIT_FOR_GO},
        {"name": "later", "run": "echo never", "after": ["long"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit(wf, "far")
            await until(lambda: step_state(e, ex.id, "long") is StepState.RUNNING, 120, "running")
            name = f"stax-{ex.id}-long"
            assert name in remote_jobs()
            await e.cancel(ex.id)
            done = await e.wait(ex.id, 120)
            assert done.state is ExecutionState.CANCELED, done.steps[0].reason
            assert [s.state for s in done.steps] == [StepState.CANCELED, StepState.CANCELED]
            assert transport(e).kinds.get("qdel") == 1, transport(e).kinds  # over SSH
            await until(lambda: name not in remote_jobs(), 60, "the job to leave qstat")

    asyncio.run(body())
