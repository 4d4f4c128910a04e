"""The transport seam: LocalTransport keeps the contract of engine/transport.py, the engine reads
records in one batch per cluster, every scheduler command goes through the transport, a cluster
whose helper directory is elsewhere (as a remote one's is) gets PSI/J's files there, and a
transport that stops answering never fails a step."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from jupyter_stax.core.models import Cluster
from jupyter_stax.core.states import StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.records import RecordReader
from jupyter_stax.engine.transport import (
    ClusterPath,
    CommandResult,
    CommandTimedOut,
    FileSpec,
    LocalTransport,
    StepRecords,
    TransportError,
)

from ..waiting import wait_for
from .conftest import arun, use_scheduler


# ---------------------------------------------------------------------- LocalTransport contract
@pytest.mark.parametrize(
    ("argv", "stdin", "rc", "stdout", "stderr"),
    [
        (["echo", "hi"], None, 0, "hi\n", ""),
        (["sh", "-c", "echo oops >&2; exit 3"], None, 3, "", "oops\n"),
        (["cat"], "script\nbody\n", 0, "script\nbody\n", ""),
        (["cat"], None, 0, "", ""),  # no stdin: never waits on the caller's
        (
            ["stax-no-such-command-xyz"],
            None,
            127,
            "",
            "stax-no-such-command-xyz: command not found",
        ),
    ],
)
def test_run(argv: list[str], stdin: str | None, rc: int, stdout: str, stderr: str) -> None:
    assert LocalTransport().run(argv, stdin=stdin) == CommandResult(rc, stdout, stderr)


def test_run_timeout_is_a_transient_transport_error() -> None:
    with pytest.raises(CommandTimedOut, match=r"did not answer within 0\.2 s") as e:
        LocalTransport().run(["sleep", "5"], timeout=0.2)
    assert isinstance(e.value, TransportError)


def test_command_result_message_joins_stdout_and_stderr() -> None:
    assert CommandResult(1, "out", "err").message == "out\nerr"
    assert CommandResult(1, "", "err").message == "err"
    assert CommandResult(1, "", "").message == ""


def test_files(tmp_path: Path) -> None:
    t = LocalTransport(tmp_path / "aux")
    d = tmp_path / "a dir" / "step"  # a path with a space: plain files do not care
    t.make_dirs([d, d])
    t.write_files({d / "x.sh": FileSpec("echo x\n", 0o755), d / "sub" / "y": FileSpec("y")})
    assert (d / "x.sh").read_text() == "echo x\n"
    assert stat.S_IMODE((d / "x.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((d / "sub" / "y").stat().st_mode) == 0o644
    t.write_files({d / "x.sh": FileSpec("echo two\n")})
    assert (d / "x.sh").read_text() == "echo two\n"
    assert sorted(p.name for p in d.iterdir()) == ["sub", "x.sh"]  # no temporary left
    t.rename([(d / "x.sh", d / "x.sh.1"), (d / "missing", d / "missing.1")])
    assert (d / "x.sh.1").exists() and not (d / "x.sh").exists()
    assert not (d / "missing.1").exists()
    t.remove([d / "x.sh.1", d / "never-there"])
    assert not (d / "x.sh.1").exists()
    t.symlink(tmp_path / "link", d)
    t.symlink(tmp_path / "link", d)  # again: kept
    assert os.readlink(tmp_path / "link") == str(d)
    t.symlink(tmp_path / "link", d / "sub")  # elsewhere: re-pointed
    assert os.readlink(tmp_path / "link") == str(d / "sub")


def test_read_chunk_and_tail(tmp_path: Path) -> None:
    t = LocalTransport()
    f = tmp_path / "log"
    f.write_bytes(b"0123456789")
    assert t.read_chunk(f, 0, 4) == b"0123"
    assert t.read_chunk(f, 8, 100) == b"89"
    assert t.read_chunk(f, 20, 4) == b""
    assert t.read_chunk(tmp_path / "none", 0, 4) == b""
    assert t.read_tail(f, 3) == b"789"
    assert t.read_tail(f, 100) == b"0123456789"
    assert t.read_tail(tmp_path / "none", 3) == b""


@pytest.mark.parametrize(
    ("start", "exit", "has_start", "exit_code"),
    [
        (None, None, False, "none"),
        ("1 77 node1 100.5\n", None, True, "none"),
        ("1 77 node1 100.5\n", "1 0 101.0\n", True, 0),
        ("1 77 node1 100,5\n", "1 3 101,0\n", True, 3),  # a locale's decimal comma
        ("1 77 node1 100.5\n", "1 skipped 101.0\n", True, None),
        ("1 77 node1 100.5", "1 0 101.0", False, "none"),  # being written: no newline yet
        ("garbage\n", "1 x 2\n", False, "none"),
    ],
)
def test_read_records(
    tmp_path: Path, start: str | None, exit: str | None, has_start: bool, exit_code: object
) -> None:
    d = tmp_path / "s"
    d.mkdir()
    if start is not None:
        (d / "stax.start").write_text(start)
    if exit is not None:
        (d / "stax.exit").write_text(exit)
    got = LocalTransport().read_records([d, tmp_path / "missing"])
    assert set(got) == {str(d), str(tmp_path / "missing")}
    assert got[str(tmp_path / "missing")] == StepRecords(None, None)
    rec = got[str(d)]
    assert (rec.start is not None) is has_start
    if exit_code == "none":
        assert rec.exit is None
    else:
        assert rec.exit is not None and rec.exit.exit_code == exit_code


# ---------------------------------------------------------------------- batching
class Recording(LocalTransport):
    """A LocalTransport that notes what it was asked (and can stop answering)."""

    def __init__(self, aux_dir: Path | None = None) -> None:
        super().__init__(aux_dir)
        self.lock = threading.Lock()
        self.batches: list[list[str]] = []
        self.commands: list[list[str]] = []
        self.written: list[str] = []
        self.down = threading.Event()
        self.refused = 0

    def _check(self) -> None:
        if self.down.is_set():
            with self.lock:
                self.refused += 1
            raise TransportError("connection lost (test)")

    def read_records(self, step_dirs: Sequence[ClusterPath]) -> dict[str, StepRecords]:
        self._check()
        with self.lock:
            self.batches.append([str(d) for d in step_dirs])
        return super().read_records(step_dirs)

    def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        self._check()
        with self.lock:
            self.commands.append(list(argv))
        return super().run(argv, stdin=stdin, timeout=timeout)

    def write_files(self, files: Mapping[ClusterPath, FileSpec]) -> None:
        self._check()
        with self.lock:
            self.written += [str(p) for p in files]
        super().write_files(files)

    def warning(self) -> str | None:
        return "connection lost since the test said so; retrying" if self.down.is_set() else None


def test_reads_asked_in_one_loop_turn_are_one_batch(tmp_path: Path) -> None:
    t = Recording()
    dirs = [str(tmp_path / f"s{i}") for i in range(50)]

    async def main() -> list[StepRecords]:
        reader = RecordReader(t, lambda fn, *a: asyncio.to_thread(fn, *a))
        got = await asyncio.gather(*(reader.read(d) for d in dirs))
        await reader.read(dirs[0])  # a later turn: a batch of its own
        return list(got)

    got = arun(main())
    assert got == [StepRecords(None, None)] * 50
    assert [len(b) for b in t.batches] == [50, 1]


def test_a_batch_that_fails_fails_every_reader_of_it(tmp_path: Path) -> None:
    t = Recording()
    t.down.set()

    async def main() -> list[object]:
        reader = RecordReader(t, lambda fn, *a: asyncio.to_thread(fn, *a))
        got = await asyncio.gather(
            reader.read(str(tmp_path / "a")),
            reader.read(str(tmp_path / "b")),
            return_exceptions=True,
        )
        return list(got)

    got = arun(main())
    assert all(isinstance(e, TransportError) for e in got)


# ---------------------------------------------------------------------- the engine over it
def _factory(
    made: dict[str, Recording], aux: Callable[[Cluster, Path], Path] | None = None
) -> Callable[[Cluster, Path], Recording]:
    def make(cluster: Cluster, state_dir: Path) -> Recording:
        t = Recording(aux(cluster, state_dir) if aux else state_dir / cluster.scheduler)
        made[cluster.name] = t
        return t

    return make


def _wait_for(what: Callable[[], bool], timeout: float, about: str) -> None:
    wait_for(what, timeout, about)


def test_records_of_all_running_steps_are_read_in_one_batch(
    cluster: str, engine_factory: Callable[..., Engine]
) -> None:
    made: dict[str, Recording] = {}
    wf = {"name": "four", "steps": [{"name": f"s{i}", "run": "sleep 2"} for i in range(4)]}

    async def main() -> None:
        async with engine_factory(transports=_factory(made)) as eng:
            ex = await eng.submit(wf, cluster=cluster)
            ex = await eng.wait(ex.id, timeout=240)
            assert ex.state.value == "completed", [s.reason for s in ex.steps]

    arun(main())
    t = made[cluster]
    dirs_of_run = {d for b in t.batches for d in b}
    assert len(dirs_of_run) == 4
    assert max(len(b) for b in t.batches) == 4, t.batches  # all four in one call
    assert all(len(b) == len(set(b)) for b in t.batches)  # a directory once per call


#: (cluster, its submit command, which command is its ONE status query, PSI/J's helper files
#: that its jobs write into the helper directory)
SEAMS = [
    pytest.param(
        "slurm", "sbatch", lambda c: c[0] == "squeue", {".nodefile", ".out"},
        marks=pytest.mark.slurm, id="slurm",
    ),
    pytest.param(
        "sge", "qsub", lambda c: c == ["qstat", "-xml"], {".out"},
        marks=pytest.mark.sge, id="sge",
    ),
]


@pytest.mark.parametrize(("name", "submit", "is_status", "helper_files"), SEAMS)
def test_psij_commands_and_job_files_go_through_the_transport(
    name: str,
    submit: str,
    is_status: Callable[[list[str]], bool],
    helper_files: set[str],
    request: pytest.FixtureRequest,
    engine_factory: Callable[..., Engine],
    tmp_path: Path,
) -> None:
    """A helper directory that is not PSI/J's work directory (as a remote cluster's is): the
    submit script is written there through the transport, and the job writes PSI/J's files
    there; the submit and status commands (sbatch/squeue, qsub/qstat) run through the
    transport."""
    use_scheduler(request, name)
    made: dict[str, Recording] = {}
    aux = tmp_path / "cluster-side"
    seen_in_aux: set[str] = set()
    wf = {"name": "seam", "steps": [{"name": "a", "run": "echo through; sleep 2"}]}

    async def main() -> None:
        async with engine_factory(transports=_factory(made, lambda c, d: aux)) as eng:
            ex = await eng.submit(wf, cluster=name)
            while not (ex := eng.get(ex.id)).state.final:
                if aux.exists():
                    seen_in_aux.update(p.suffix for p in aux.iterdir())
                await asyncio.sleep(0.1)
            assert ex.state.value == "completed", [s.reason for s in ex.steps]
            assert Path(ex.steps[0].stdout).read_text() == "through\n"

    arun(main())
    t = made[name]
    assert any(c[0] == submit and c[-1].startswith(str(aux)) for c in t.commands), t.commands
    assert any(is_status(c) for c in t.commands), t.commands
    assert any(w.startswith(str(aux)) and w.endswith(".job") for w in t.written)
    assert helper_files <= seen_in_aux  # written by the job into the cluster's dir
    # removed once the step was final (.ec may come later: the job writes it after our record)
    assert not [p for p in aux.iterdir() if p.suffix in (".job", ".out", ".nodefile")]


def test_a_cluster_that_stops_answering_fails_no_step(
    cluster: str, engine_factory: Callable[..., Engine]
) -> None:
    """Transport errors are transient: a warning on the execution, then the run goes on."""
    made: dict[str, Recording] = {}
    wf = {"name": "outage", "steps": [{"name": "a", "run": "sleep 3"}]}
    warned: list[str] = []

    async def main() -> None:
        async with engine_factory(transports=_factory(made)) as eng:
            ex = await eng.submit(wf, cluster=cluster)
            await asyncio.to_thread(
                _wait_for,
                lambda: eng.get(ex.id).steps[0].state is StepState.RUNNING,
                120,
                "the step to run",
            )
            t = made[cluster]
            t.down.set()
            await asyncio.to_thread(
                _wait_for, lambda: bool(eng.get(ex.id).warnings), 60, "a warning"
            )
            warned.extend(eng.get(ex.id).warnings)
            # the job ends while the cluster does not answer; the engine keeps asking
            exit_record = Path(ex.steps[0].directory) / "stax.exit"
            await asyncio.to_thread(_wait_for, exit_record.exists, 60, "the job to end")
            refused = t.refused
            await asyncio.to_thread(
                _wait_for, lambda: t.refused >= refused + 3, 60, "the engine to ask again"
            )
            assert eng.get(ex.id).steps[0].state is StepState.RUNNING
            t.down.clear()
            ex = await eng.wait(ex.id, timeout=120)
            assert ex.state.value == "completed", [s.reason for s in ex.steps]
            assert ex.warnings == []

    arun(main())
    assert any("connection lost" in w for w in warned), warned
