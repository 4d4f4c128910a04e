"""Faults during a whole run on remote clusters (the real Slurm and a workstation, reached only
through a real sshd): kill -9 of the engine process, connections killed from the server side,
a host key changed between runs. The outage of the login node (sshd stopped for 30 s) is
``test_remote_slurm.py::test_sshd_down_mid_run_no_step_fails``.

Each test that breaks its sshd uses this module's PRIVATE one (``own_sshd``), never the shared
one. "Submitted once" is checked at the scheduler: the remote account's jobs of each step name
(``squeue -u stax-remote -t all``, which keeps ended jobs for Slurm's MinJobAge) and, on the
workstation, a line per start that the step appends to a file."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.errors import StaxError
from jupyter_stax.core.models import Cluster, Execution
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.store import Store
from jupyter_stax.engine.transport import CommandResult, Transport, TransportError

from ..waiting import wait_for
from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import WAIT_FOR_GO, Counting, cluster, step_state, until
from .test_workstation import box, engine

pytestmark = pytest.mark.ssh

ENGINE_PROC = Path(__file__).resolve().parents[1] / "engine" / "engine_proc.py"
#: a step that notes each start, then waits for its ``go`` file
NOTED = "echo start >> runs.log; " + WAIT_FOR_GO


def jobs_named(name: str) -> list[str]:
    """The remote account's Slurm jobs called ``name``, ended ones included."""
    out = subprocess.run(["squeue", "-h", "-u", REMOTE_USER, "-t", "all", "-n", name, "-o",
                          "%i"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def release_as_root(directory: str) -> None:
    """A ``go`` file written through the file system (the login node may be unreachable)."""
    go = Path(directory, "go")
    go.write_text("")
    uid = pwd.getpwnam(REMOTE_USER).pw_uid
    os.chown(go, uid, uid)


def assert_each_step_ran_once(ex: Execution) -> None:
    for s in ex.steps:
        if s.native_id is None:
            continue
        assert s.attempt == 1, (s.name, s.attempt)
        if s.cluster == "far":
            assert jobs_named(s.job_name or "?") == [s.native_id], s.name
        log = Path(s.directory, "runs.log")
        if log.exists():
            assert log.read_text() == "start\n", f"{s.name} started more than once"


def test_kill9_of_the_engine_mid_run_then_a_new_engine_reattaches_over_ssh(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A separate engine process drives a run on the remote Slurm and the remote workstation
    and is killed -9 while their jobs run (others may be being submitted); the next engine
    adopts the run, finds each job over SSH by native id (or by its name/start record), and
    every step is submitted once."""
    far, wsbox = cluster(sshd, client), box(sshd, client)
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(yaml.safe_dump({"clusters": {
        c.name: c.model_dump(exclude_none=True, exclude_defaults=True, exclude={"name"})
        for c in (far, wsbox)
    }}))
    store = tmp_path / "state" / "stax.sqlite"
    monkeypatch.setenv("JUPYTER_STAX_STORE", str(store))
    monkeypatch.setenv("JUPYTER_STAX_CLUSTERS", str(clusters))
    monkeypatch.setenv("JUPYTER_STAX_WORK_DIR", str(tmp_path / "runs"))
    wf = {"name": "kill9", "steps": [
        *({"name": f"h{i}", "run": NOTED} for i in range(4)),
        {"name": "desk", "cluster": "box", "run": NOTED},
        {"name": "join", "cluster": "box", "run": "echo start >> runs.log; echo joined",
         "after": ["h0", "h1", "h2", "h3", "desk"]},
    ]}
    proc = subprocess.Popen([sys.executable, str(ENGINE_PROC), "far", json.dumps(wf)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        eid = proc.stdout.readline().strip()
        assert eid, "the engine process did not start"
        st = Store(store)
        try:
            # mid-run: some of the remote jobs run (the others may still be being submitted)
            wait_for(lambda: sum(s.state is StepState.RUNNING for s in st.get(eid).steps) >= 2,
                     180, "two remote steps running")
        finally:
            st.close()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    async def body() -> None:
        async with engine(tmp_path, far, wsbox, adopt=True) as e:
            await until(lambda: eid in e._runs, 60, "the execution to be adopted")
            ex = e.get(eid)
            for s in ex.steps:
                if s.name != "join":
                    release_as_root(s.directory)
            done = await e.wait(eid, 300)
            assert [(s.name, s.state) for s in done.steps] == [
                (s["name"], StepState.COMPLETED) for s in wf["steps"]  # type: ignore[index]
            ], [s.reason for s in done.steps]
            assert_each_step_ran_once(done)

    asyncio.run(body())


@pytest.fixture
def far_own(own_sshd: Sshd, own_client: Client, slurm: str) -> Cluster:
    return cluster(own_sshd, own_client)


def test_connections_killed_by_the_server_mid_run_reconnect_and_no_step_fails(
    far_own: Cluster, own_sshd: Sshd, own_client: Client, tmp_path: Path
) -> None:
    wsbox = box(own_sshd, own_client)
    wf = {"name": "killed", "steps": [
        {"name": "a", "run": NOTED},
        {"name": "w", "cluster": "box", "run": NOTED},
        {"name": "b", "run": "echo start >> runs.log; echo b", "after": ["a", "w"]},
        {"name": "c", "cluster": "box", "run": "echo start >> runs.log; echo c", "after": ["b"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far_own, wsbox) as e:
            ex = await e.submit(wf, "far")
            await until(lambda: all(step_state(e, ex.id, n) is StepState.RUNNING
                                    for n in ("a", "w")), 180, "a and w running")
            # no submission is in flight now: every connection is killed under the polls
            killed = await asyncio.to_thread(own_sshd.kill_connections)
            assert killed
            far_tr, box_tr = e._transports["far"], e._transports["box"]
            await until(lambda: far_tr.connection.stats.connects >= 2  # type: ignore[attr-defined]
                        and box_tr.connection.stats.connects >= 2,  # type: ignore[attr-defined]
                        60, "both clusters to reconnect")
            steps = {s.name: s for s in e.get(ex.id).steps}
            assert all(not s.state.final for s in steps.values()), steps
            release_as_root(steps["a"].directory)
            release_as_root(steps["w"].directory)
            # killed again while the jobs end and their records are read
            await until(lambda: not {"a", "w"} & {n for n, s in
                                                  {s.name: s for s in e.get(ex.id).steps}.items()
                                                  if not s.state.final}, 120, "a and w to end")
            await asyncio.to_thread(own_sshd.kill_connections)
            done = await e.wait(ex.id, 240)
            assert [(s.name, s.state) for s in done.steps] == [
                ("a", StepState.COMPLETED), ("w", StepState.COMPLETED),
                ("b", StepState.COMPLETED), ("c", StepState.COMPLETED),
            ], [s.reason for s in done.steps]
            assert_each_step_ran_once(done)
            assert far_tr.warning() is None and box_tr.warning() is None

    asyncio.run(body())


def test_a_changed_host_key_refuses_new_runs_and_fails_no_running_step(
    far_own: Cluster, own_sshd: Sshd, own_client: Client, tmp_path: Path
) -> None:
    """The login node's host key changes while a run's job runs (a re-installed node, or a
    machine in the middle): a new run is refused with the fix and nothing is submitted; the
    running job is not marked failed (the execution says why it cannot be watched); once the
    old key is back the run completes."""
    wf = {"name": "first", "steps": [{"name": "a", "run": NOTED},
                                     {"name": "b", "run": "echo b", "after": ["a"]}]}

    async def body() -> None:
        async with engine(tmp_path, far_own) as e:
            ex = await e.submit(wf, "far")
            await until(lambda: step_state(e, ex.id, "a") is StepState.RUNNING, 180, "a running")
            before = set(subprocess.run(["squeue", "-h", "-u", REMOTE_USER, "-o", "%i"],
                                        capture_output=True, text=True).stdout.split())
            with own_sshd.other_host_key():
                await asyncio.to_thread(own_sshd.kill_connections)  # the next one verifies
                warned = await until(lambda: e.get(ex.id).warnings, 60, "a warning on the run")
                assert any("host key" in w.lower() for w in warned), warned
                with pytest.raises(StaxError) as err:
                    await e.submit({"name": "second", "steps": [{"name": "s", "run": "true"}]},
                                   "far")
                msg = str(err.value)
                assert "CHANGED" in msg and f"ssh-keygen -R '[127.0.0.1]:{own_sshd.port}'" in msg
                assert [x.id for x in e.list()] == [ex.id]  # nothing stored for the second
                now = set(subprocess.run(["squeue", "-h", "-u", REMOTE_USER, "-o", "%i"],
                                         capture_output=True, text=True).stdout.split())
                assert now <= before  # nothing submitted
                # the job ends meanwhile; its step is not failed while it cannot be watched
                release_as_root(e.get(ex.id).steps[0].directory)
                native = e.get(ex.id).steps[0].native_id or "?"
                await until(lambda: native not in now_running(), 60, "job a to end")
                assert all(not s.state.final for s in e.get(ex.id).steps)
            done = await e.wait(ex.id, 180)  # the old key is back (the user fixed it)
            assert [(s.name, s.state) for s in done.steps] == [
                ("a", StepState.COMPLETED), ("b", StepState.COMPLETED)
            ], [s.reason for s in done.steps]
            assert done.state is ExecutionState.COMPLETED
            assert_each_step_ran_once(done)

    asyncio.run(body())


def now_running() -> set[str]:
    return set(subprocess.run(["squeue", "-h", "-u", REMOTE_USER, "-o", "%i"],
                              capture_output=True, text=True).stdout.split())


class LosesFirstSbatchAnswer(Counting):
    """The SSH transport; the first ``sbatch`` runs on the cluster, but its answer is lost
    (as when the connection drops between the command and its output)."""

    lost: list[str]

    def run(self, argv: Sequence[str], **kw: Any) -> CommandResult:
        res = super().run(argv, **kw)
        if argv and argv[0] == "sbatch" and not getattr(self, "lost", None):
            self.lost = [res.stdout]
            raise TransportError(f"{self.where}: the connection was lost (test)")
        return res

    def run_many(  # the submissions of a remote cluster come in batches
        self, commands: Sequence[Sequence[str]], **kw: Any
    ) -> list[CommandResult | TransportError]:
        res = super().run_many(commands, **kw)
        sbatch = [r for c, r in zip(commands, res, strict=True) if c and c[0] == "sbatch"]
        if sbatch and not getattr(self, "lost", None):
            self.lost = [r.stdout for r in sbatch if isinstance(r, CommandResult)]
            raise TransportError(f"{self.where}: the connection was lost (test)")
        return res


def test_a_submission_whose_answer_was_lost_is_found_not_repeated(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    far = cluster(sshd, client)

    def transports(cl: Cluster, state_dir: Path) -> Transport:
        return LosesFirstSbatchAnswer(cl, state_dir, (0.5, 2.0))

    async def body() -> None:
        e = Engine(store=tmp_path / "state" / "stax.sqlite", transports=transports,
                   clusters=ClusterRegistry([far]), adopt=False, submit_backoff=(0.5,))
        await e.start()
        try:
            ex = await e.submit({"name": "lost", "steps": [{"name": "s", "run": "echo s"}]},
                                "far")
            done = await e.wait(ex.id, 180)
            s = done.steps[0]
            assert s.state is StepState.COMPLETED, s.reason
            tr = e._transports["far"]
            assert isinstance(tr, LosesFirstSbatchAnswer) and tr.lost  # an answer was lost
            assert s.native_id and s.native_id in tr.lost[0]  # ... and its job was found
            assert tr.kinds.get("sbatch") == 1
            assert jobs_named(s.job_name or "?") == [s.native_id]
        finally:
            await e.stop()

    asyncio.run(body())


def test_closing_the_transport_ends_calls_on_their_way(
    sshd: Sshd, client: Client, tmp_path: Path
) -> None:
    """An engine that stops closes its transports while worker threads may wait for a call
    (here: one stuck connecting to a login node that accepts TCP and never speaks): the call
    ends at once with a TransportError. A thread left waiting on the stopped loop would hang
    the interpreter's exit, which joins the engine's worker threads."""
    import concurrent.futures
    import socket

    from jupyter_stax.engine.remote.transport import SSHTransport

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        tr = SSHTransport(cluster(sshd, client, port=silent.getsockname()[1]), tmp_path)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(tr.run, ["true"])
            wait_for(lambda: tr.connection._lock.locked(), 30, "the call to be connecting")
            tr.close()
            with pytest.raises(TransportError, match="closed"):
                fut.result(30)
    finally:
        silent.close()
