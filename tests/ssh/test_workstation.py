"""A remote workstation (``scheduler: local`` with a ``host``: no scheduler, the steps are
processes started detached over SSH on the test login node, as the remote account): one DAG
across the local cluster, the remote Slurm and the remote workstation; cancel (the process
group); a process killed behind the engine's back; a new engine that finds the processes again
by pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import Cluster
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.remote.workstation import WorkstationBackend
from jupyter_stax.engine.schedulers import workstation as ws
from jupyter_stax.engine.transport import FileSpec, Transport
from jupyter_stax.engine.transports import transport_for

from ..proc import alive
from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import WAIT_FOR_GO, Counting, cluster, squeue_names, step_state, until

pytestmark = pytest.mark.ssh


def box(sshd: Sshd, client: Client, **kw: Any) -> Cluster:
    """The workstation entry: the same login node, no scheduler."""
    return cluster(sshd, client, name="box", scheduler="local", queue=None, **kw)


@contextlib.asynccontextmanager
async def engine(tmp_path: Path, *clusters: Cluster, adopt: bool = False,
                 keep_jobs: bool = False) -> AsyncIterator[Engine]:
    """An engine over several clusters (remote ones through the counting SSH transport); on
    leaving, what it still drives is canceled unless ``keep_jobs``."""

    def transports(cl: Cluster, state_dir: Path) -> Transport:
        return Counting(cl, state_dir, (0.5, 2.0)) if cl.remote else transport_for(cl, state_dir)

    e = Engine(store=tmp_path / "state" / "stax.sqlite", adopt=adopt, transports=transports,
               clusters=ClusterRegistry(clusters, work_dir=tmp_path / "runs"))
    await e.start()
    try:
        yield e
    finally:
        try:
            if not keep_jobs:
                for ex in e.list():
                    if not ex.state.final and ex.id in e._runs:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(e.cancel(ex.id), 60)
        finally:
            await e.stop()


def remote_pids(e: Engine, name: str = "box") -> dict[str, int]:
    """The native ids (pids) of the steps of ``name`` the engine knows."""
    return {s.name: int(s.native_id) for ex in e.list() for s in ex.steps
            if s.cluster == name and s.native_id}


def owner(pid: int) -> str:
    return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name


def release(e: Engine, cluster_name: str, directory: str) -> None:
    e._transports[cluster_name].write_files({f"{directory}/go": FileSpec("")})


def test_one_dag_across_local_remote_slurm_and_remote_workstation(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    far, wsbox = cluster(sshd, client), box(sshd, client)
    wf = {"name": "three", "steps": [
        {"name": "here", "cluster": "local", "run": "echo here > here.txt; id -un"},
        {"name": "hpc", "cluster": "far", "run": "echo $SLURM_JOB_ID; id -un", "after": ["here"]},
        {"name": "desk", "cluster": "box", "after": ["hpc"],
         "run": WAIT_FOR_GO + "; id -un; exit 4"},
        {"name": "after", "cluster": "box", "run": "echo never", "after": ["desk"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far, wsbox) as e:
            ex = await e.submit(wf, "local")
            await until(lambda: step_state(e, ex.id, "desk") is StepState.RUNNING, 180,
                        "the workstation step running")
            desk = next(s for s in e.get(ex.id).steps if s.name == "desk")
            pid = int(desk.native_id or 0)
            assert alive(pid) and owner(pid) == REMOTE_USER  # started over SSH, as the account
            assert Path(desk.directory, ws.PID_FILE).read_text() == f"1 {pid}\n"
            assert os.getsid(pid) == pid  # detached: its own session (setsid)
            assert isinstance(e._backends["box"], WorkstationBackend)
            release(e, "box", desk.directory)
            done = await e.wait(ex.id, 180)
            got = {s.name: (s.state, s.exit_code) for s in done.steps}
            assert got == {
                "here": (StepState.COMPLETED, 0), "hpc": (StepState.COMPLETED, 0),
                "desk": (StepState.FAILED, 4), "after": (StepState.SKIPPED, None),
            }, [s.reason for s in done.steps]
            assert done.state is ExecutionState.FAILED
            steps = {s.name: s for s in done.steps}
            assert steps["desk"].reason and "exit code 4" in steps["desk"].reason
            here = steps["here"]
            assert Path(here.stdout).read_text().strip() == pwd.getpwuid(os.getuid()).pw_name
            hpc_out = e._transports["far"].read_chunk(steps["hpc"].stdout, 0, 4096).decode()
            assert hpc_out.split() == [steps["hpc"].native_id, REMOTE_USER]
            desk_out = e._transports["box"].read_chunk(steps["desk"].stdout, 0, 4096)
            assert desk_out == f"released\n{REMOTE_USER}\n".encode()
            # the workstation's status: ONE command per poll (a `/bin/sh -s` script) for all
            # its watched processes; the records: one tar read each time
            kinds = e._transports["box"].kinds  # type: ignore[attr-defined]
            assert kinds.get("records", 0) >= 1 and kinds.get("/bin/sh", 0) >= 1, kinds

    asyncio.run(body())


def test_cancel_kills_the_process_group(sshd: Sshd, client: Client, tmp_path: Path) -> None:
    wsbox = box(sshd, client)
    wf = {"name": "c", "steps": [{"name": "long", "run": "sleep 600 & sleep 600; wait"}]}

    async def body() -> None:
        async with engine(tmp_path, wsbox) as e:
            ex = await e.submit(wf, "box")
            await until(lambda: step_state(e, ex.id, "long") is StepState.RUNNING, 60, "running")
            pid = remote_pids(e)["long"]
            await until(lambda: len(session(pid)) >= 3, 30, "the step's children")
            await e.cancel(ex.id)
            done = await e.wait(ex.id, 60)
            assert done.steps[0].state is StepState.CANCELED, done.steps[0].reason
            await until(lambda: not session(pid), 30, "every process of the step to end")

    asyncio.run(body())


def session(sid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True).stdout
    return [p for p in map(int, out.split()) if alive(p)]


def test_a_process_killed_behind_the_engines_back_fails_the_step(
    sshd: Sshd, client: Client, tmp_path: Path
) -> None:
    wsbox = box(sshd, client)
    wf = {"name": "k", "steps": [{"name": "s", "run": WAIT_FOR_GO}]}

    async def body() -> None:
        async with engine(tmp_path, wsbox) as e:
            ex = await e.submit(wf, "box")
            await until(lambda: step_state(e, ex.id, "s") is StepState.RUNNING, 60, "running")
            os.killpg(remote_pids(e)["s"], signal.SIGKILL)
            done = await e.wait(ex.id, 60)
            s = done.steps[0]
            assert s.state is StepState.FAILED
            assert s.reason and "ended without writing its exit record" in s.reason, s.reason

    asyncio.run(body())


def test_a_new_engine_finds_the_processes_again_by_pid(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    """The first engine stops while a workstation step and a remote Slurm step run; the next
    one adopts the execution, finds both over SSH by native id (the pid: its step directory
    through the index), and each step ran once."""
    far, wsbox = cluster(sshd, client), box(sshd, client)
    wf = {"name": "adopt", "steps": [
        {"name": "desk", "cluster": "box", "run": "echo start >> runs.log; " + WAIT_FOR_GO},
        {"name": "hpc", "cluster": "far", "run": "echo start >> runs.log; " + WAIT_FOR_GO},
        {"name": "next", "cluster": "box", "run": "echo next", "after": ["desk", "hpc"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far, wsbox, keep_jobs=True) as first:
            ex = await first.submit(wf, "box")
            await until(lambda: all(step_state(first, ex.id, n) is StepState.RUNNING
                                    for n in ("desk", "hpc")), 180, "both running")
            before = {s.name: s.native_id for s in first.get(ex.id).steps}
        pid = int(before["desk"] or 0)
        assert alive(pid)  # the process outlives the engine and its connection
        async with engine(tmp_path, far, wsbox, adopt=True) as second:
            await until(lambda: ex.id in second._runs, 60, "the execution to be adopted")
            steps = {s.name: s for s in second.get(ex.id).steps}
            assert f"stax-{ex.id}-hpc" in " ".join(squeue_names())
            for n in ("desk", "hpc"):
                release(second, steps[n].cluster, steps[n].directory)
            done = await second.wait(ex.id, 180)
            assert [(s.name, s.state) for s in done.steps] == [
                ("desk", StepState.COMPLETED), ("hpc", StepState.COMPLETED),
                ("next", StepState.COMPLETED),
            ], [s.reason for s in done.steps]
            for s in done.steps[:2]:
                assert s.native_id == before[s.name] and s.attempt == 1
                assert Path(s.directory, "runs.log").read_text() == "start\n"  # started once

    asyncio.run(body())
