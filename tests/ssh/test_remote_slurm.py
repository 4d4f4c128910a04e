"""A remote Slurm cluster end to end: the engine drives the project's real Slurm ONLY through the
real test sshd (``stax-remote@127.0.0.1``), as the remote account: submission, records, logs,
cancel, a work directory with spaces, one records command per poll, and sshd down mid-run."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import pwd
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.errors import StaxError
from jupyter_stax.core.models import Cluster, Execution
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.remote import open_connection
from jupyter_stax.engine.remote.transport import SSHTransport, target_of
from jupyter_stax.engine.store import Store
from jupyter_stax.engine.transport import Transport
from jupyter_stax.operations import Operations

from .sshd import REMOTE_USER, Client, Sshd, load_relay
from .test_relay import DELAY, known_hosts_for

pytestmark = pytest.mark.ssh

HOME = Path(pwd.getpwnam(REMOTE_USER).pw_dir) if REMOTE_USER in {
    p.pw_name for p in pwd.getpwall()
} else Path("/nonexistent")

#: a step that runs until the test lets it go (a file ``go`` in its directory)
WAIT_FOR_GO = "while [ ! -e go ]; do sleep 0.2; done; echo released"


def cluster(sshd: Sshd, client: Client, **kw: Any) -> Cluster:
    return Cluster.model_validate({
        "name": "far", "scheduler": "slurm", "host": f"{REMOTE_USER}@127.0.0.1",
        "port": sshd.port, "identity_file": client.identity, "known_hosts": client.known_hosts,
        "queue": "debug", "walltime": "00:05:00", "poll_interval": 1, **kw,
    })


#: the exec-channel counter of the records read running in this task
_READ: contextvars.ContextVar[list[int]] = contextvars.ContextVar("read")


class Counting(SSHTransport):
    """The SSH transport, counting the exec channels (round trips) by kind, and for each
    records read how many directories it covered and how many channels it cost."""

    def __init__(self, c: Cluster, state_dir: Path, backoff: tuple[float, float]) -> None:
        super().__init__(c, state_dir, connection=open_connection(target_of(c), backoff=backoff))
        self.record_reads: list[tuple[int, int]] = []  # (directories, exec channels)
        self.kinds: dict[str, int] = {}
        self.scripts: list[bytes] = []  # the scripts (stdin) of the exec channels, in order
        conn = self.connection
        exec_inner, read_inner = conn.exec, conn.read_files

        async def exec_(command: str, stdin: bytes | None = None, **kw: Any) -> Any:
            kind = "records" if stdin and b"@@tar" in stdin else command.split()[0]
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            self.scripts.append(stdin or b"")
            if stdin and b"@@cmd" in stdin:  # a batch of commands: each submit command counts
                for line in stdin.splitlines():
                    word = line.split(b" ", 1)[0].decode(errors="replace")
                    if word in ("sbatch", "qsub"):
                        self.kinds[word] = self.kinds.get(word, 0) + 1
            counter = _READ.get(None)
            if counter is not None:
                counter[0] += 1
            return await exec_inner(command, stdin, **kw)

        async def read_files(paths: list[str], max_bytes: int = 65536, **kw: Any) -> Any:
            counter = [0]
            token = _READ.set(counter)
            try:
                return await read_inner(paths, max_bytes, **kw)
            finally:
                _READ.reset(token)
                self.record_reads.append((len(paths) // 2, counter[0]))

        conn.exec = exec_  # type: ignore[method-assign]
        conn.read_files = read_files  # type: ignore[method-assign]


class engine:  # lower case: used as ``async with engine(...) as e``
    """An engine on the test's store with the counting SSH transport. On leaving, the
    executions it still drives are canceled (a failed test leaves no job waiting in Slurm),
    unless ``keep_jobs`` (the engine stops and the jobs go on, for the next engine)."""

    def __init__(
        self, tmp_path: Path, c: Cluster, backoff: tuple[float, float] = (0.5, 2.0),
        adopt: bool = False, keep_jobs: bool = False,
    ) -> None:
        def transports(cl: Cluster, state_dir: Path) -> Transport:
            return Counting(cl, state_dir, backoff)

        self.keep_jobs = keep_jobs
        self.e = Engine(store=tmp_path / "state" / "stax.sqlite",
                        clusters=ClusterRegistry([c]), adopt=adopt, transports=transports)

    async def __aenter__(self) -> Engine:
        return await self.e.start()

    async def __aexit__(self, *exc: object) -> None:
        try:
            if not self.keep_jobs:
                for ex in self.e.list():
                    if not ex.state.final and ex.id in self.e._runs:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(self.e.cancel(ex.id), 60)
        finally:
            await self.e.stop()


def slurm_cpus() -> int:
    """The CPUs of the test Slurm's partition (how many one-CPU jobs can run at once)."""
    out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, timeout=30)
    return int(out.stdout.split()[0].split("/")[-1])


def transport(e: Engine) -> Counting:
    t = e._transports["far"]
    assert isinstance(t, Counting)
    return t


async def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(cond)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


def squeue_names() -> set[str]:
    """The names of the remote account's jobs in Slurm (asked on this machine, as root)."""
    out = subprocess.run(["squeue", "-h", "-u", REMOTE_USER, "-o", "%j"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def step_state(e: Engine, eid: str, name: str) -> StepState:
    ex: Execution = e.get(eid)
    return next(s for s in ex.steps if s.name == name).state


def release(e: Engine, ex: Execution, *names: str) -> None:
    """Let waiting steps end: a ``go`` file in their directories, written over SSH."""
    from jupyter_stax.engine.transport import FileSpec

    transport(e).write_files({f"{s.directory}/go": FileSpec("") for s in ex.steps
                              if s.name in names})


@pytest.fixture
def far(sshd: Sshd, client: Client, slurm: str) -> Cluster:
    return cluster(sshd, client)


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_dag_with_a_failing_middle_step_runs_remotely(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path, client_kind: str
) -> None:
    far = cluster(sshd, client, ssh=client_kind)
    wf = {"name": "remote", "steps": [
        {"name": "a", "run": WAIT_FOR_GO + "; echo hello; id -un"},
        {"name": "b", "run": "echo bad >&2; exit 3", "after": ["a"]},
        {"name": "c", "run": "echo never", "after": ["b"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit(wf, "far")
            assert ex.work_dir.startswith(str(HOME / "stax-runs") + "/")
            await until(lambda: step_state(e, ex.id, "a") is StepState.RUNNING, 120, "a running")
            assert f"stax-{ex.id}-a" in " ".join(squeue_names())  # the job is stax-remote's
            release(e, ex, "a")
            done = await e.wait(ex.id, 180)
            states = {s.name: (s.state, s.exit_code) for s in done.steps}
            assert states == {
                "a": (StepState.COMPLETED, 0), "b": (StepState.FAILED, 3),
                "c": (StepState.SKIPPED, None),
            }
            assert done.state is ExecutionState.FAILED
            a, b = done.steps[0], done.steps[1]
            # the logs, read through the cluster's transport (bytes that came over SSH)
            tr = transport(e)
            out = f"released\nhello\n{REMOTE_USER}\n".encode()
            assert tr.read_chunk(a.stdout, 0, 1 << 16) == out
            assert tr.read_tail(b.stderr, 4) == b"bad\n"
            assert tr.read_chunk(a.stdout + ".missing", 0, 10) == b""
            # the step files are on the cluster, in the remote user's home, owned by it
            uid = pwd.getpwnam(REMOTE_USER).pw_uid
            for s in done.steps[:2]:
                for f in ("stax.job.sh", "stax.step.sh", "stax.start", "stax.exit", "stax.out"):
                    assert os.stat(Path(s.directory, f)).st_uid == uid, f
            # PSI/J's local copies of the submit scripts are removed once the jobs ended
            state = tmp_path / "state" / "psij" / "far"
            await until(lambda: not list(state.rglob("*.job")), 30, "no local .job files")
            # the provenance stays on the Jupyter side (the work dir is a path on the cluster)
            assert (tmp_path / "state" / "provenance" / ex.id / "execution.json").is_file()
            # the operations layer (REST, CLI, widgets) reads a remote step's log through the
            # engine's own transport (the ONE connection), never as a path of this machine ...
            ops = Operations(store=lambda: e.store, registry=lambda: ClusterRegistry([far]),
                             transport=e.transport)
            # the engine's own last commands for the ended run (e.g. removing PSI/J's files on
            # the cluster) may still be under way: count from when its connection is quiet
            # (no exec for 1.5 s, more than its poll; seen in a clean-clone CI run)
            last = [tr.connection.stats.execs, time.monotonic()]

            def quiet() -> bool:
                n = tr.connection.stats.execs
                if n != last[0]:
                    last[:] = [n, time.monotonic()]
                return time.monotonic() - last[1] >= 1.5

            await until(quiet, 60, "the engine's connection to be quiet")
            before = tr.connection.stats.execs
            chunk = await asyncio.to_thread(ops.read_log, ex.id, "a")
            assert (chunk.data, chunk.eof) == (out.decode(), True)
            assert tr.connection.stats.execs == before + 1 and tr.connection.stats.connects == 1
            # ... and has the remote Slurm's live numbers, asked over SSH in one command
            detail = await asyncio.to_thread(ops.cluster, "far")
            assert detail.summary is not None and detail.summary.scheduler == "slurm"
            assert detail.connection and detail.connection.state == "connected"
            assert tr.connection.stats.execs == before + 2

    asyncio.run(body())


def test_cancel_a_remote_run(far: Cluster, tmp_path: Path) -> None:
    wf = {"name": "cancel", "steps": [{"name": "long", "run": WAIT_FOR_GO}]}

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit(wf, "far")
            await until(lambda: step_state(e, ex.id, "long") is StepState.RUNNING, 120, "running")
            await e.cancel(ex.id)
            done = await e.wait(ex.id, 120)
            assert done.state is ExecutionState.CANCELED, done.steps[0].reason
            assert done.steps[0].state is StepState.CANCELED
            await until(lambda: f"stax-{ex.id}-long" not in " ".join(squeue_names()), 60,
                        "the job to leave squeue")

    asyncio.run(body())


def test_remote_work_dir_with_spaces_and_quotes(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    far = cluster(sshd, client, work_dir="~/stax runs/it's here")
    wf = {"name": "spaces", "steps": [{"name": "s", "run": "pwd; echo ok > out.txt"}]}

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit(wf, "far")
            done = await e.wait(ex.id, 180)
            assert done.state is ExecutionState.COMPLETED, done.steps[0].reason
            d = done.steps[0].directory
            assert d == f"{HOME}/stax runs/it's here/{ex.id}/s"
            assert Path(d, "out.txt").read_text() == "ok\n"
            assert transport(e).read_chunk(done.steps[0].stdout, 0, 4096).strip()

    asyncio.run(body())


def test_one_records_command_per_poll_for_many_running_steps(
    far: Cluster, tmp_path: Path
) -> None:
    n = 4
    wf = {"name": "many", "steps": [{"name": f"s{i}", "run": WAIT_FOR_GO} for i in range(n)]}

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit(wf, "far")
            await until(
                lambda: all(s.state is StepState.RUNNING for s in e.get(ex.id).steps), 180,
                "every step running",
            )
            tr = transport(e)
            await until(lambda: any(dirs >= n for dirs, _ in tr.record_reads), 30,
                        f"a records read of {n} directories")
            # every records read, whatever the number of steps: ONE exec channel
            assert tr.record_reads and all(execs == 1 for _, execs in tr.record_reads), (
                tr.record_reads
            )
            release(e, ex, *[f"s{i}" for i in range(n)])
            done = await e.wait(ex.id, 180)
            assert done.state is ExecutionState.COMPLETED
            assert all(execs == 1 for _, execs in tr.record_reads)
            assert tr.kinds.get("records", 0) == len(tr.record_reads)
            assert tr.connection.stats.connects == 1

    asyncio.run(body())


def test_steps_ready_together_are_submitted_with_two_commands(
    far: Cluster, tmp_path: Path
) -> None:
    """Seven steps become ready together: ONE command writes their directories and scripts,
    ONE more writes their submit scripts and runs their seven ``sbatch`` (the batching cannot
    regress unseen); each job id is its own step's (Slurm's job name, the job's output); a
    ``sbatch`` that fails fails its step alone, with Slurm's message; PSI/J's leftovers of
    ended jobs are removed by the engine's next scripts, never by a command of their own."""
    from jupyter_stax.engine.remote import shell
    from jupyter_stax.engine.remote.transport import BATCH_LIMIT

    n = 6
    assert n + 1 <= BATCH_LIMIT
    wf = {"name": "together", "steps": [
        *({"name": f"s{i}", "run": f"echo {i}"} for i in range(n)),
        {"name": "huge", "run": "true", "resources": {"memory": "100T"}},  # sbatch refuses it
    ]}

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit(wf, "far")
            done = await e.wait(ex.id, 180)
            tr = transport(e)
            scripts = list(tr.scripts)
            natives = {s.name: s.native_id for s in done.steps}
        steps_written = [x for x in scripts if b"STAX_TAR_EOF" in x and b"@@cmd" not in x]
        submitted = [x for x in scripts if b"@@cmd" in x]
        assert len(steps_written) == 1, len(steps_written)
        mkdir = next(ln for ln in steps_written[0].splitlines() if ln.startswith(b"mkdir -p"))
        assert all(f"/{ex.id}/{s.name}".encode() in mkdir for s in done.steps)
        assert len(submitted) == 1, len(submitted)
        assert sum(ln.startswith(b"sbatch ") for ln in submitted[0].splitlines()) == n + 1
        rm_only = shell.remove_script(["x"]).partition(b"rm ")[0] + b"rm "
        assert not [x for x in scripts if x.startswith(rm_only)]
        states = {s.name: (s.state, s.exit_code) for s in done.steps}
        assert states == {**{f"s{i}": (StepState.COMPLETED, 0) for i in range(n)},
                          "huge": (StepState.FAILED, None)}
        huge = done.steps[-1]
        assert huge.native_id is None and huge.reason and "not submitted" in huge.reason
        assert "Requested node configuration is not available" in huge.reason, huge.reason
        for s in done.steps[:n]:
            assert Path(s.stdout).read_text() == f"{s.name[1:]}\n"  # the remote home is here
            assert jobs_named(s.job_name or "?") == [natives[s.name]], s.name
        aux = HOME / ".stax" / "psij" / "far"  # removed with later scripts, or at the close
        assert not [x for x in natives.values() if x and (aux / f"{x}.out").exists()]

    asyncio.run(body())


def jobs_named(name: str) -> list[str]:
    """The remote account's Slurm jobs called ``name``, ended ones included."""
    out = subprocess.run(["squeue", "-h", "-u", REMOTE_USER, "-t", "all", "-n", name, "-o",
                          "%i"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.fixture
def far_own(own_sshd: Sshd, own_client: Client, slurm: str) -> Iterator[Cluster]:
    yield cluster(own_sshd, own_client)
    own_sshd.start()  # whatever happened: up again for the next test


def test_sshd_down_mid_run_no_step_fails(
    far_own: Cluster, own_sshd: Sshd, tmp_path: Path
) -> None:
    wf = {"name": "outage", "steps": [
        {"name": "a", "run": WAIT_FOR_GO},
        {"name": "b", "run": "echo after", "after": ["a"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far_own) as e:
            ex = await e.submit(wf, "far")
            await until(lambda: step_state(e, ex.id, "a") is StepState.RUNNING, 120, "a running")
            down_at = time.monotonic()
            await asyncio.to_thread(own_sshd.stop)
            warned = await until(lambda: e.get(ex.id).warnings, 60, "a warning on the run")
            assert any("ssh connection to" in w and "retrying" in w for w in warned), warned
            # the job ends while the login node is down (released on the shared file system)
            go = Path(e.get(ex.id).steps[0].directory, "go")
            go.write_text("")
            uid = pwd.getpwnam(REMOTE_USER).pw_uid
            os.chown(go, uid, uid)
            await until(lambda: f"stax-{ex.id}-a" not in " ".join(squeue_names()), 60,
                        "job a to end")
            # down for at least 30 s in all (the outage), and no step failed meanwhile
            await until(lambda: time.monotonic() - down_at >= 30, 60, "30 s of outage")
            assert e.get(ex.id).warnings  # still warned, all along
            assert all(not s.state.final or s.state is StepState.COMPLETED
                       for s in e.get(ex.id).steps)
            await asyncio.to_thread(own_sshd.start)
            done = await e.wait(ex.id, 180)
            assert [(s.name, s.state) for s in done.steps] == [
                ("a", StepState.COMPLETED), ("b", StepState.COMPLETED)
            ]
            assert done.state is ExecutionState.COMPLETED
            assert transport(e).connection.stats.connects >= 2
            assert transport(e).warning() is None

    asyncio.run(body())


def test_through_the_delay_relay(
    own_sshd: Sshd, own_client: Client, slurm: str, tmp_path: Path
) -> None:
    """100 ms round trips (the relay holds every chunk 50 ms each way): the run is right."""
    wf = {"name": "wan", "steps": [
        {"name": "a", "run": "echo a"}, {"name": "b", "run": "echo b", "after": ["a"]},
    ]}
    with load_relay().RelayThread("127.0.0.1", own_sshd.port, delay=DELAY) as relay:
        far = cluster(own_sshd, own_client, port=relay.port,
                      known_hosts=known_hosts_for(own_sshd, relay.port, tmp_path))

        async def body() -> None:
            async with engine(tmp_path, far) as e:
                ex = await e.submit(wf, "far")
                done = await e.wait(ex.id, 180)
                assert done.state is ExecutionState.COMPLETED, [s.reason for s in done.steps]
                tr = transport(e)
                assert tr.read_chunk(done.steps[1].stdout, 0, 100) == b"b\n"
                assert all(execs == 1 for _, execs in tr.record_reads)

        asyncio.run(body())


def test_unknown_host_key_refuses_the_submission(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    far = cluster(sshd, client, known_hosts=str(empty))

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            with pytest.raises(StaxError) as err:
                await e.submit({"name": "k", "steps": [{"name": "s", "run": "true"}]}, "far")
            assert "host key" in str(err.value) and "ssh-keyscan" in str(err.value)
            assert e.list() == []  # nothing stored, nothing submitted

    asyncio.run(body())


def test_a_new_engine_reattaches_to_remote_jobs(far: Cluster, tmp_path: Path) -> None:
    """The engine stops while a remote job runs (the job goes on); the next engine adopts the
    execution and follows the job over SSH by its native id: submitted once."""
    wf = {"name": "adopt", "steps": [
        {"name": "a", "run": WAIT_FOR_GO}, {"name": "b", "run": "echo b", "after": ["a"]},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far, keep_jobs=True) as first:
            ex = await first.submit(wf, "far")
            await until(lambda: step_state(first, ex.id, "a") is StepState.RUNNING, 120, "a")
            native = first.get(ex.id).steps[0].native_id
        async with engine(tmp_path, far, adopt=True) as second:
            await until(lambda: ex.id in second._runs, 60, "the execution to be adopted")
            release(second, ex, "a")
            done = await second.wait(ex.id, 180)
            assert [(s.name, s.state) for s in done.steps] == [
                ("a", StepState.COMPLETED), ("b", StepState.COMPLETED)
            ]
            assert done.steps[0].native_id == native and done.steps[0].attempt == 1

    asyncio.run(body())


def test_remote_work_dir_not_writable_fails_the_step_with_the_reason(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    far = cluster(sshd, client, work_dir="/proc/stax-cannot-write-here")

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            ex = await e.submit({"name": "ro", "steps": [{"name": "s", "run": "true"}]}, "far")
            done = await e.wait(ex.id, 120)
            s = done.steps[0]
            assert s.state is StepState.FAILED and s.native_id is None
            assert s.reason and "not submitted" in s.reason and "/proc/stax-cannot" in s.reason
            assert "mkdir" in s.reason

    asyncio.run(body())


def test_first_read_after_the_engine_was_gone_is_the_true_one(far: Cluster, tmp_path: Path) -> None:
    """Issue 21 over SSH: the engine stops while two remote jobs wait, they end (one fails)
    while no engine is alive, and the FIRST read once the next engine adopts the execution (the
    operation ``GET executions/{id}`` calls: wait for its first reconcile pass, then read) has the
    final states, settled from the exit records read over SSH, not the stored ``running``."""
    wf = {"name": "gone", "steps": [
        {"name": "ok", "run": WAIT_FOR_GO + "; true"},
        {"name": "bad", "run": WAIT_FOR_GO + "; exit 3"},
    ]}

    async def body() -> None:
        async with engine(tmp_path, far, keep_jobs=True) as first:
            ex = await first.submit(wf, "far")
            for name in ("ok", "bad"):
                await until(lambda n=name: step_state(first, ex.id, n) is StepState.RUNNING, 120,
                            f"{name} running")
            ex = first.get(ex.id)
        for s in ex.steps:  # the remote account's directories are on this machine too
            Path(s.directory, "go").touch()
        names = {f"stax-{ex.id}-{s.name}" for s in ex.steps}
        await until(lambda: not names & squeue_names(), 120, "both jobs to leave squeue")
        stored = Store(tmp_path / "state" / "stax.sqlite")
        try:  # nobody drives it: a read without an engine says the states are not current
            before = Operations(store=lambda: stored, registry=lambda: ClusterRegistry([far]))
            stale = before.get(ex.id)
            assert stale.unverified and {s.state for s in stale.steps} == {StepState.RUNNING}
        finally:
            stored.close()
        async with engine(tmp_path, far, adopt=True) as second:
            ops = Operations(store=lambda: second.store, registry=lambda: ClusterRegistry([far]))
            got = await ops.get_checked(ex.id)  # what GET executions/{id} answers
            assert {s.name: (s.state, s.exit_code) for s in got.steps} == {
                "ok": (StepState.COMPLETED, 0), "bad": (StepState.FAILED, 3)
            }
            assert got.state is ExecutionState.FAILED and not got.unverified

    asyncio.run(body())
