"""The ``local`` cluster's PSI/J launcher (engine/local_launch.py): ONE bash process per job,
which redirects the job's streams and sources its script, instead of PSI/J's
single_launch.sh + launcher_lib.sh. The pure parts table-driven; then real jobs through PSI/J's
own LocalJobExecutor (its submit, reaper, status and cancel), which must see what it saw with
its own launcher: exit codes, failures with a message, cancel."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psij
import psutil
import pytest

from jupyter_stax.core.jobscript import read_exit_record, read_start_record
from jupyter_stax.core.models import StepState
from jupyter_stax.engine import local_launch
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.local_launch import EXEC, SOURCE, failure_message, launch_command

from ..waiting import wait_for
from .conftest import arun

S = "/w/stax.job.sh"


@pytest.mark.parametrize(
    ("executable", "arguments", "expected"),
    [
        ("/bin/bash", [S], ["/bin/bash", "-c", SOURCE, S, "i", "o", "e"]),
        ("/bin/bash", [S, "a b", "$x"], ["/bin/bash", "-c", SOURCE, S, "i", "o", "e", "a b", "$x"]),
        # `.` looks a name without a slash up on PATH first: made relative to the directory
        ("/bin/bash", ["job.sh"], ["/bin/bash", "-c", SOURCE, "./job.sh", "i", "o", "e"]),
        # bash options are not a script: bash is exec'd as any other program
        ("/bin/bash", ["-c", "true"], ["/bin/bash", "-c", EXEC, "/bin/bash", "i", "o", "e", "-c",
                                       "true"]),
        ("/bin/bash", [], ["/bin/bash", "-c", EXEC, "/bin/bash", "i", "o", "e"]),
        ("/bin/echo", ["hi"], ["/bin/bash", "-c", EXEC, "/bin/echo", "i", "o", "e", "hi"]),
        ("bash", [S], ["/bin/bash", "-c", EXEC, "bash", "i", "o", "e", S]),
    ],
)
def test_launch_command(executable: str, arguments: list[str], expected: list[str]) -> None:
    assert launch_command(executable, arguments, "i", "o", "e") == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "/w/stax.job.sh: line 1: /w/stax.out: No such file or directory\n",
            "/w/stax.out: No such file or directory",
        ),
        (
            "/w/stax.job.sh: line 1: /w/stax.err: Permission denied\n",
            "/w/stax.err: Permission denied",
        ),
        ("something else\n\n", "something else"),
        ("a: line 1: x\nb: line 1: y\n", "x; y"),
    ],
)
def test_failure_message(output: str, expected: str) -> None:
    assert failure_message(output) == f"the job's standard streams cannot be opened: {expected}"


# ---------------------------------------------------------------------- real jobs
@pytest.fixture
def executor(tmp_path: Path) -> psij.JobExecutor:
    local_launch.register()
    local_launch.register()  # idempotent
    return psij.JobExecutor.get_instance(
        "local", config=psij.JobExecutorConfig(work_directory=tmp_path / "psij")
    )


def _job(d: Path, script: str, *args: str, stdout: Path | None = None) -> psij.Job:
    d.mkdir(parents=True, exist_ok=True)
    (d / "job.sh").write_text(script)
    return psij.Job(
        psij.JobSpec(
            executable="/bin/bash",
            arguments=[str(d / "job.sh"), *args],
            directory=d,
            stdout_path=stdout or d / "out",
            stderr_path=d / "err",
            launcher=local_launch.NAME,
        )
    )


def test_jobs_end_as_with_psij_single_launcher(executor: psij.JobExecutor, tmp_path: Path) -> None:
    """Exit codes and states as PSI/J's own launcher gives them, the streams in the spec's
    files, ``$0``, ``$$`` and arguments as ``bash SCRIPT ARGS`` has them, in ONE process."""
    ok = _job(
        tmp_path / "ok",
        'echo "out $0 $# $1|$2"; echo err >&2; echo $$ > pid; read -r x || echo "stdin empty"\n'
        "( exit 0 )\nexit 0\n",
        "a b", "$HOME",
    )
    fail = _job(tmp_path / "fail", "echo bad >&2\nexit 3\n")
    # the step's `exec` replaces the job's own process: its exit code is the job's
    execd = _job(tmp_path / "exec", "exec bash -c 'exit 5'\n")
    killed = _job(tmp_path / "killed", "kill -KILL $$\n")
    # a background process of the job does not hold the job open (nothing holds PSI/J's pipe)
    bg = _job(tmp_path / "bg", "sleep 60 & echo $! > bgpid\nexit 0\n")
    gone = _job(tmp_path / "gone", "")
    (tmp_path / "gone" / "job.sh").unlink()  # as `bash SCRIPT` of a missing script: 127
    jobs = [ok, fail, execd, killed, bg, gone]
    for j in jobs:
        executor.submit(j)
    names = ["ok", "fail", "exec", "killed", "bg", "gone"]
    st = {n: j.wait(timedelta(seconds=60)) for n, j in zip(names, jobs, strict=True)}
    try:
        assert (st["ok"].state, st["ok"].exit_code) == (psij.JobState.COMPLETED, 0)
        d = tmp_path / "ok"
        assert (d / "out").read_text() == f"out {d / 'job.sh'} 2 a b|$HOME\nstdin empty\n"
        assert (d / "err").read_text() == "err\n"
        assert (d / "pid").read_text().strip() == str(ok.native_id), "the job IS the process"
        assert (st["fail"].state, st["fail"].exit_code) == (psij.JobState.FAILED, 3)
        assert st["fail"].message is None, "a job's own failure is not the launcher's"
        assert (tmp_path / "fail" / "err").read_text() == "bad\n"
        assert (st["exec"].state, st["exec"].exit_code) == (psij.JobState.FAILED, 5)
        assert (st["killed"].state, st["killed"].exit_code) == (psij.JobState.FAILED, -9)
        assert (st["bg"].state, st["bg"].exit_code) == (psij.JobState.COMPLETED, 0)
        assert (st["gone"].state, st["gone"].exit_code) == (psij.JobState.FAILED, 127)
        assert st["gone"].message is None
        assert (tmp_path / "gone" / "err").read_text() == (
            f"/bin/bash: {tmp_path / 'gone' / 'job.sh'}: No such file or directory\n"
        )
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((tmp_path / "bg" / "bgpid").read_text()), 9)
    assert not any((tmp_path / "psij").glob("*/single_launch.sh")), "PSI/J's launcher deployed"


def test_a_stream_that_cannot_be_opened_fails_with_a_message(
    executor: psij.JobExecutor, tmp_path: Path
) -> None:
    j = _job(tmp_path / "j", "echo ran > ran\n", stdout=tmp_path / "no-such-dir" / "out")
    executor.submit(j)
    st = j.wait(timedelta(seconds=60))
    assert st is not None
    assert (st.state, st.exit_code) == (psij.JobState.FAILED, 126)
    assert st.message == (
        "the job's standard streams cannot be opened: "
        f"{tmp_path / 'no-such-dir' / 'out'}: No such file or directory"
    )
    assert not (tmp_path / "j" / "ran").exists(), "the job ran"


def test_cancel_kills_the_job_and_its_children(executor: psij.JobExecutor, tmp_path: Path) -> None:
    marker = f"{300 + os.getpid() % 1000}.{time.time_ns() % 10**6}"
    j = _job(tmp_path / "j", f"( sleep {marker}; echo never ) & sleep {marker}\nwait\n")
    executor.submit(j)

    def sleepers() -> list[psutil.Process]:
        return [
            p for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] == ["sleep", marker]
        ]

    wait_for(lambda: len(sleepers()) == 2, 30, "both sleepers to start")
    root = psutil.Process(int(j.native_id))
    assert root.cmdline()[:3] == ["/bin/bash", "-c", SOURCE], "one bash: no launcher script"
    executor.cancel(j)
    st = j.wait(timedelta(seconds=30))
    assert st is not None and st.state == psij.JobState.CANCELED
    wait_for(lambda: not sleepers(), 30, "the job's processes to be gone")


# ---------------------------------------------------------------------- through the engine
def test_steps_on_local_keep_their_records_exit_codes_and_streams(
    engine_factory: Callable[..., Engine], stax_env: Path
) -> None:
    """The wrapper sourced by the launcher's one bash: the exit record is written after
    ``exit`` and ``exec`` in the step's script (its subshell), a persistent ``exec``
    redirection stays the step's, the start record's ``$$`` is the native id."""
    wf = {
        "name": "launch",
        "steps": [
            {"name": "ok", "run": 'echo "out $PWD"; echo err >&2'},
            {"name": "exit3", "run": "echo bad >&2; exit 3"},
            {"name": "exec5", "run": "exec bash -c 'echo from-exec; exit 5'"},
            {"name": "redir", "run": "exec > mine.txt; echo moved; true"},
        ],
    }

    async def main() -> Any:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster="local")
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    got = {s.name: (s.state, s.exit_code) for s in ex.steps}
    assert got == {
        "ok": (StepState.COMPLETED, 0),
        "exit3": (StepState.FAILED, 3),
        "exec5": (StepState.FAILED, 5),
        "redir": (StepState.COMPLETED, 0),
    }
    assert ex.step("exit3").reason == "exit code 3: bad"
    for s in ex.steps:
        d = Path(s.directory)
        rec = read_exit_record(d)
        assert rec is not None and rec.exit_code == s.exit_code, s.name
        start = read_start_record(d)
        assert start is not None and start.job_id == s.native_id, s.name
    ok = Path(ex.step("ok").directory)
    assert (ok / "stax.out").read_text() == f"out {ok}\n"
    assert (ok / "stax.err").read_text() == "err\n"
    assert (Path(ex.step("exec5").directory) / "stax.out").read_text() == "from-exec\n"
    redir = Path(ex.step("redir").directory)
    assert (redir / "mine.txt").read_text() == "moved\n"
    assert (redir / "stax.out").read_text() == ""
