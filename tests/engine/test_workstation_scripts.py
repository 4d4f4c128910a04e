"""The shell side of a remote workstation (``scheduler: local`` over SSH): the parsers, table
driven, and the start/status/cancel scripts run by a real ``/bin/sh`` on this machine (the SSH
tests run the same scripts on the test login node)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jupyter_stax.core import jobscript as js
from jupyter_stax.engine.schedulers import workstation as ws

from ..proc import alive, wait_for


@pytest.mark.parametrize(("out", "pid"), [
    ("PID 123\n", 123),
    ("motd line\nPID 42\n", 42),
    ("PID x\n", None),
    ("", None),
    ("PIDS 12\n", None),
])
def test_parse_launch(out: str, pid: int | None) -> None:
    assert ws.parse_launch(out) == pid


@pytest.mark.parametrize(("out", "expect"), [
    ("12 1 0\nSTAX-STATUS-DONE\n", {12: ws.ProcessStatus(True, None)}),
    ("12 0 0\nSTAX-STATUS-DONE\n", {12: ws.ProcessStatus(False, None)}),
    ("12 0 1 1 0 1700000000.5\nSTAX-STATUS-DONE\n",
     {12: ws.ProcessStatus(False, js.ExitRecord(1, 0, 1700000000.5))}),
    ("12 1 1 2 3 5\n13 0 0\nSTAX-STATUS-DONE\n",
     {12: ws.ProcessStatus(True, js.ExitRecord(2, 3, 5.0)), 13: ws.ProcessStatus(False, None)}),
    ("12 0 1 1 skipped 5\nSTAX-STATUS-DONE\n",
     {12: ws.ProcessStatus(False, js.ExitRecord(1, None, 5.0))}),
    ("12 0 1 garbage\nSTAX-STATUS-DONE\n", {12: ws.ProcessStatus(False, None)}),
    ("a chatty bashrc\n12 2 0\nx 1 0\nSTAX-STATUS-DONE\n", {}),
])
def test_parse_status(out: str, expect: dict[int, ws.ProcessStatus]) -> None:
    assert ws.parse_status(out) == expect


def test_parse_status_cut_off_is_an_error() -> None:
    with pytest.raises(ws.StatusCutOff):
        ws.parse_status("12 1 0\n")


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, text=True,
                          timeout=60)


def launch(d: Path, body: str | None, attempt: int = 1) -> int:
    job = d / js.JOB_SCRIPT
    if body is not None:
        job.write_text(f"#!/bin/bash\n{body}\n")
    r = sh(ws.launch_script(step_dir=str(d), job_script=str(job), stdout=str(d / "out"),
                            stderr=str(d / "err"), attempt=attempt,
                            index_dir=str(d.parent / "index")))
    assert r.returncode == 0, r.stderr
    pid = ws.parse_launch(r.stdout)
    assert pid is not None
    return pid


def status(jobs: list[tuple[int, str | None]], index: Path) -> dict[int, ws.ProcessStatus]:
    r = sh(ws.status_script(jobs, str(index)))
    assert r.returncode == 0, r.stderr
    return ws.parse_status(r.stdout)


def test_scripts_start_watch_and_cancel_a_detached_process(tmp_path: Path) -> None:
    d = tmp_path / "it's a dir"
    d.mkdir()
    index = tmp_path / "index"
    pid = launch(d, "echo $$ > mypid; while [ ! -e go ]; do sleep 0.1; done; echo done\n"
                    "printf '1 0 1.5\\n' > stax.exit")
    assert (d / ws.PID_FILE).read_text() == f"1 {pid}\n"
    assert Path(index, str(pid)).resolve() == d.resolve()
    wait_for(lambda: (d / "mypid").exists(), 10, "the step to start")
    assert (d / "mypid").read_text().strip() == str(pid)  # the wrapper's pid IS the native id
    # starting the same attempt again is the same process (a lost answer, retried)
    assert launch(d, None) == pid
    assert status([(pid, str(d))], index) == {pid: ws.ProcessStatus(True, None)}
    assert status([(pid, None)], index) == {pid: ws.ProcessStatus(True, None)}  # by the index
    (d / "go").write_text("")
    wait_for(lambda: status([(pid, None)], index)[pid].exit is not None, 20, "the exit record")
    assert status([(pid, None)], index)[pid].exit == js.ExitRecord(1, 0, 1.5)
    wait_for(lambda: not alive(pid), 10, "the process to end")
    assert (d / "out").read_text() == "done\n"
    # forgetting removes the index entry
    r = sh(ws.status_script([], str(index), forget=[pid]))
    assert r.returncode == 0 and not Path(index, str(pid)).is_symlink()
    assert status([(pid, None)], index) == {pid: ws.ProcessStatus(False, None)}

    # a second attempt in the same directory (the engine keeps attempt 1's records aside),
    # canceled with its children
    (d / "stax.exit").rename(d / "stax.exit.1")
    pid2 = launch(d, "sleep 300 & wait", attempt=2)
    assert pid2 != pid
    wait_for(lambda: status([(pid2, str(d))], index)[pid2].alive, 10, "attempt 2 alive")
    r = sh(ws.cancel_script(pid2, grace=2))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not alive(pid2), 10, "the canceled process to end")
    assert status([(pid2, str(d))], index)[pid2] == ws.ProcessStatus(False, None)
    out = subprocess.run(["pgrep", "-s", str(pid2)], capture_output=True, text=True).stdout
    assert out.split() == []  # nothing of its session is left


def test_a_recycled_pid_in_another_directory_is_not_ours(tmp_path: Path) -> None:
    d = tmp_path / "step"
    other = tmp_path / "other"
    d.mkdir()
    other.mkdir()
    pid = launch(other, "sleep 300")
    try:
        # the process lives, but its working directory is not this step's: not our job
        assert status([(pid, str(d))], tmp_path / "index") == {pid: ws.ProcessStatus(False, None)}
        assert status([(pid, str(other))], tmp_path / "index")[pid].alive
    finally:
        sh(ws.cancel_script(pid, grace=1))
