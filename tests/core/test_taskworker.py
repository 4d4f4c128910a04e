"""The fast start of function tasks (core/taskworker.py): its request encoding, exit codes and
worker keys (tables), the step script falling back to a plain Python step where it cannot
carry the source; and a real warm worker in a private directory: the first task starts it and
runs in its own Python, the next runs in a child the worker forked (stdout, the exit code and
an exception as a plain run has them), and the worker exits once idle, removing its socket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_stax.core.functask import TASK_MARK, _worker_source, render_task_step
from jupyter_stax.core.pystep import python_placeholders
from jupyter_stax.core.taskworker import (
    WORKER_PART,
    exit_code,
    netstrings,
    parse_netstrings,
    worker_key,
)

from ..waiting import wait_for


@pytest.mark.parametrize("fields", [[], [b""], [b"a", b"", b"1:2:\0x"], [b"x" * 70000]])
def test_netstrings_round_trip(fields: list[bytes]) -> None:
    assert parse_netstrings(netstrings(fields)) == fields


@pytest.mark.parametrize("data", [b"5:abc", b"x:abc", b"3abc"])
def test_garbled_netstrings(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_netstrings(data)


@pytest.mark.parametrize(
    ("code", "status"), [(None, 0), (0, 0), (3, 3), (258, 2), ("bad input", 1), (1.5, 1)]
)
def test_exit_code_as_the_interpreter_makes_it(code: object, status: int) -> None:
    assert exit_code(code) == status


BASE = {"PATH": "/bin", "PYTHONPATH": "/a", "HOME": "/h"}


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"PATH": "/usr/bin"}, True),  # read at run time: the child gets the job's
        ({"STAX_STEP": "x"}, True),
        ({"PYTHONPATH": "/b"}, False),  # shape the interpreter's start: another worker
        ({"PYTHONHASHSEED": "0"}, False),
        ({"LD_LIBRARY_PATH": "/opt/lib"}, False),
    ],
)
def test_worker_key(change: dict[str, str], same: bool) -> None:
    assert (worker_key("d", BASE) == worker_key("d", {**BASE, **change})) is same
    assert worker_key("d", BASE) != worker_key("e", BASE)  # another source, another worker


def test_step_script_and_its_fallbacks() -> None:
    text, _ = _worker_source()
    assert "'''" not in text and text.count(WORKER_PART) == 1
    script = render_task_step(TASK_MARK + "print(1)\n")
    assert '-S -c' in script.splitlines()[2] and '"${BASH_SOURCE[0]}"' in script
    # a placeholder (an exported task's parameter) needs the plain Python step's rendering
    plain = render_task_step(TASK_MARK + "f(dict(n={{n}}))\n")
    assert "stax_param('n')" in plain and " -S " not in plain
    assert " -S " not in render_task_step(TASK_MARK + "x = '''a'''\n")
    # nothing to place: not tokenized (a body that does not tokenize is fine here)
    assert python_placeholders("def f(:\n  '") == []


def test_a_real_warm_worker(tmp_path: Path) -> None:
    tmp = tmp_path / "t"  # a private worker directory: this test's own worker
    tmp.mkdir()
    step = tmp_path / "step"
    step.mkdir()
    body = TASK_MARK + (
        "import os, sys\n"
        "print('out', os.environ['STAX_STEP'], open(f'/proc/{os.getppid()}/cmdline', 'rb')"
        ".read().count(b'stax-taskworker-'), flush=True)\n"
        "if os.environ.get('FAIL'):\n"
        "    raise KeyError('boom')\n"
        "sys.exit(int(os.environ.get('CODE', '0')))\n"
    )
    (step / "stax.step.sh").write_text(render_task_step(body))
    env = {
        **os.environ, "TMPDIR": str(tmp), "STAX_TASK_WORKER": "1",
        "STAX_TASK_WORKER_IDLE": "3", "STAX_PYTHON": sys.executable, "STAX_STEP": "s1",
    }

    def run(**kw: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", ". ./stax.step.sh"], cwd=step, env={**env, **kw},
                              capture_output=True, text=True, timeout=60)

    first = run(CODE="4")
    assert (first.returncode, first.stdout) == (4, "out s1 0\n")  # its own Python
    wdir = tmp / f"stax-taskworker-{os.getuid()}"
    sock = wait_for(lambda: next(iter(wdir.glob("*.sock")), None), 30, "the worker's socket")
    assert oct(wdir.stat().st_mode & 0o777) == "0o700"
    second = run(CODE="5", STAX_STEP="s2")
    assert (second.returncode, second.stdout) == (5, "out s2 1\n")  # forked by the worker
    assert run(STAX_TASK_WORKER="0").stdout == "out s1 0\n"  # opted out: its own Python
    failed = run(FAIL="1")
    assert failed.returncode == 1 and "KeyError: 'boom'" in failed.stderr
    assert "Traceback (most recent call last)" in failed.stderr
    wait_for(lambda: not sock.exists(), 30, "the idle worker to exit (3 s idle)")
