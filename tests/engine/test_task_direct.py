"""Function tasks on ``local`` handed by the engine straight to the warm task worker, no job
process (engine/taskdirect.py): the real engine (in this process, or a process of its own that
is killed), the real worker (started by the first task's job, as in a notebook), in a private
``TMPDIR``. What a step has stays: records, log, exit code, result file, state; a kill -9 of
the engine while a task runs (adopted, run once, its result kept); a cancel (the task's
process killed, the worker serves on); a worker killed while its task runs, with the engine up
or down (the step fails, saying so; the task does not run on)."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from jupyter_stax.core.functask import call_header, result_file, task_source
from jupyter_stax.core.jobscript import read_exit_record, read_start_record
from jupyter_stax.core.models import StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.taskdirect import parse_native

from ..proc import alive
from ..waiting import wait_for, wait_for_async
from .conftest import arun
from .test_recovery import _start_engine_proc, _wait_store

#: the functions of the tasks (made in a ``__main__`` namespace: pickled by value)
SOURCE = r'''
import os, time

def add(a, b):
    print("adding", a, b, os.environ["STAX_STEP"], flush=True)
    return a + b

def boom():
    raise ValueError("bad input")

def flaky():
    if os.environ["STAX_ATTEMPT"] == "1":
        raise RuntimeError("first attempt fails")
    return "second"

def hold(tag):
    here = os.environ["STAX_STEP_DIR"]
    with open(os.path.join(here, "..", "runs.log"), "a") as f:
        f.write(tag + "\n")
    with open(os.path.join(here, "pid"), "w") as f:
        f.write(str(os.getpid()))
    go = os.path.join(here, "..", "go")
    deadline = time.time() + 120
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.05)
    return tag + "-done"
'''


def fn(name: str) -> Callable[..., Any]:
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(SOURCE, ns)
    return ns[name]  # type: ignore[no-any-return]


def task(
    name: str, func: str, *args: object, after: tuple[str, ...] = (), retries: int = 0
) -> dict[str, Any]:
    call = call_header(name, None) + cloudpickle.dumps((fn(func), [(args, {})]))
    return {
        "name": name, "language": "python", "run": task_source(call, ref=True),
        "env": {"STAX_TASK_WORKER": "1", "STAX_PYTHON": sys.executable},
        "after": list(after), "retries": retries,
    }


@pytest.fixture
def warm(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private worker directory (``TMPDIR``); the worker serves 60 s after its last task (a
    loaded machine took more than 3 s to start the next engine: the worker had gone, the task ran
    as a job; seen in CI) and is killed at the end."""
    tmp = stax_env / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("STAX_TASK_WORKER_IDLE", "60")
    monkeypatch.delenv("STAX_TASK_DIRECT", raising=False)
    yield tmp / f"stax-taskworker-{os.getuid()}"
    for pid_file in (tmp / f"stax-taskworker-{os.getuid()}").glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def result(step_dir: str, name: str) -> object:
    return pickle.loads(Path(step_dir, result_file(name)).read_bytes())


async def warm_up(eng: Engine, warm: Path) -> tuple[Any, int]:
    """One task, run as a job (no worker yet), which starts the worker: its execution when it
    ended, and the worker's pid (from its pid file)."""
    ex = await eng.submit({"name": "warm", "steps": [task("w", "add", 1, 1)]}, cluster="local")
    done = await eng.wait(ex.id, timeout=120)
    pid_file = await wait_for_async(lambda: next(iter(warm.glob("*.pid")), None), 30, "the worker")
    return done, int(pid_file.read_text())


async def held_task(eng: Engine) -> tuple[Any, int]:
    """A task ``h`` that runs until ``go`` exists: its execution and its process id."""
    ex = await eng.submit({"name": "held", "steps": [task("h", "hold", "h")]}, cluster="local")
    pid_file = Path(ex.step("h").directory, "pid")
    await wait_for_async(pid_file.exists, 60, "the task to run")
    return ex, int(pid_file.read_text())


def held_with_its_engine_killed(
    engine_factory: Callable[..., Engine], warm: Path, store_path: Path
) -> Any:
    """The worker warmed up by one engine; then an engine process of its own hands ``h`` to
    the worker directly and is killed (-9) while ``h`` runs: the execution as it was left."""

    async def first() -> None:
        async with engine_factory() as eng:
            await warm_up(eng, warm)

    arun(first())
    proc, eid = _start_engine_proc("local", {"name": "held", "steps": [task("h", "hold", "h")]})
    try:
        ex = _wait_store(store_path, eid, lambda ex: ex.step("h").state is StepState.RUNNING
                         and Path(ex.step("h").directory, "pid").exists(), 60, "h to run")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    native = ex.step("h").native_id
    assert native and native.startswith("tw:")
    return ex


def test_direct_tasks_keep_what_a_step_has(
    engine_factory: Callable[..., Engine], warm: Path
) -> None:
    async def main() -> tuple[Any, Any, int]:
        async with engine_factory() as eng:
            first, worker = await warm_up(eng, warm)
            wf = {"name": "direct", "steps": [task("a", "add", 2, 3), task("b", "boom"),
                                               task("c", "add", 10, 20, after=("a",)),
                                               task("r", "flaky", retries=1)]}
            ex = await eng.submit(wf, cluster="local")
            return first, await eng.wait(ex.id, timeout=120), worker

    first, ex, worker = arun(main())
    assert first.step("w").native_id.isdigit()  # no worker yet: a job
    a, b, c, r = ex.step("a"), ex.step("b"), ex.step("c"), ex.step("r")
    for s in (a, b, c, r):  # no job: the worker ran them
        assert s.native_id and parse_native(s.native_id)[0] == worker, s.native_id
    assert (a.state, a.exit_code, c.state) == (StepState.COMPLETED, 0, StepState.COMPLETED)
    assert (result(a.directory, "a"), result(c.directory, "c")) == (5, 30)
    assert Path(a.stdout).read_text() == "adding 2 3 a\n"
    start, end = read_start_record(Path(a.directory)), read_exit_record(Path(a.directory))
    assert start is not None and (start.attempt, start.job_id) == (1, a.native_id)
    assert end is not None and (end.attempt, end.exit_code) == (1, 0)
    assert a.started_at is not None and a.finished_at is not None
    assert (b.state, b.exit_code) == (StepState.FAILED, 1)
    assert "ValueError: bad input" in Path(b.stderr).read_text()
    assert "bad input" in (b.reason or "")
    # retried: the first attempt's record and stderr kept, the second ran directly too
    assert (r.state, r.attempt, result(r.directory, "r")) == (StepState.COMPLETED, 2, "second")
    (first,) = r.history
    assert (first.attempt, first.state, first.exit_code) == (1, StepState.FAILED, 1)
    assert first.native_id and first.native_id.startswith("tw:") and first.native_id != r.native_id
    assert "first attempt fails" in Path(r.directory, "stax.err.1").read_text()


def test_kill9_engine_while_a_direct_task_runs(
    engine_factory: Callable[..., Engine], warm: Path, store_path: Path
) -> None:
    ex = held_with_its_engine_killed(engine_factory, warm, store_path)
    eid, h = ex.id, ex.step("h")
    task_pid = int(Path(h.directory, "pid").read_text())
    assert alive(task_pid)  # the engine's end does not end the task
    Path(ex.work_dir, "go").touch()

    async def second() -> Any:
        async with engine_factory() as eng:  # adopts it
            return await eng.wait(eid, timeout=120)

    done = arun(second())
    h = done.step("h")
    assert (h.state, h.exit_code, h.attempt) == (StepState.COMPLETED, 0, 1)
    assert result(h.directory, "h") == "h-done"
    assert Path(done.work_dir, "runs.log").read_text() == "h\n"  # once


def test_cancel_of_a_direct_task(engine_factory: Callable[..., Engine], warm: Path) -> None:
    async def main() -> tuple[Any, int, Any]:
        async with engine_factory() as eng:
            await warm_up(eng, warm)
            ex, task_pid = await held_task(eng)
            await eng.cancel(ex.id)
            canceled = await eng.wait(ex.id, timeout=60)
            again = await eng.submit({"name": "after", "steps": [task("a", "add", 4, 4)]},
                                     cluster="local")
            return canceled, task_pid, await eng.wait(again.id, timeout=60)

    canceled, task_pid, after = arun(main())
    h = canceled.step("h")
    assert h.native_id and h.native_id.startswith("tw:")
    assert h.state is StepState.CANCELED
    wait_for(lambda: not alive(task_pid), 10, "the canceled task's process to end")
    a = after.step("a")  # the worker serves on
    assert a.state is StepState.COMPLETED and a.native_id and a.native_id.startswith("tw:")
    assert result(a.directory, "a") == 8


def test_worker_killed_while_its_direct_task_runs(
    engine_factory: Callable[..., Engine], warm: Path
) -> None:
    async def main() -> tuple[Any, int]:
        async with engine_factory() as eng:
            await warm_up(eng, warm)
            ex, task_pid = await held_task(eng)
            native = eng.get(ex.id).step("h").native_id
            assert native and native.startswith("tw:")
            os.kill(parse_native(native)[0], signal.SIGKILL)
            return await eng.wait(ex.id, timeout=60), task_pid

    ex, task_pid = arun(main())
    h = ex.step("h")
    assert h.state is StepState.FAILED
    assert "task worker" in (h.reason or "") and "ended before the task" in (h.reason or "")
    wait_for(lambda: not alive(task_pid), 10, "the task of the dead worker to end")
    assert read_exit_record(Path(h.directory)) is None


def test_worker_killed_while_the_engine_is_down(
    engine_factory: Callable[..., Engine], warm: Path, store_path: Path
) -> None:
    ex = held_with_its_engine_killed(engine_factory, warm, store_path)
    eid, h = ex.id, ex.step("h")
    os.kill(parse_native(h.native_id)[0], signal.SIGKILL)

    async def second() -> Any:
        async with engine_factory() as eng:
            return await eng.wait(eid, timeout=60)

    done = arun(second())
    h = done.step("h")
    assert h.state is StepState.FAILED, (h.state, h.reason)
    assert "task worker" in (h.reason or ""), h.reason


def test_no_direct_path_when_turned_off(
    engine_factory: Callable[..., Engine], warm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> Any:
        async with engine_factory() as eng:
            await warm_up(eng, warm)
            monkeypatch.setenv("STAX_TASK_DIRECT", "0")
            ex = await eng.submit({"name": "job", "steps": [task("a", "add", 1, 2)]},
                                  cluster="local")
            return await eng.wait(ex.id, timeout=60)

    ex = arun(main())
    a = ex.step("a")
    assert a.state is StepState.COMPLETED and a.native_id and a.native_id.isdigit()
    assert result(a.directory, "a") == 3

