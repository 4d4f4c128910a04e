"""The fast start of function tasks (core/taskworker.py): its request format, exit codes,
worker identities and the runner/call split (tables), the step script falling back to a plain
Python step where it cannot carry the source; and a real warm worker in a private directory:
the first task starts it and runs in its own Python, the next ones bash hands to the worker
(no Python started for them: the task is a child the worker forked; stdout, the exit code,
an exception, a signal forwarded to the task and a killed job as a plain run has them), one of
another interpreter environment is declined and runs in its own Python, and the worker exits
once idle, removing every file it made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_stax.core.functask import TASK_MARK, _worker_source, render_task_step
from jupyter_stax.core.pystep import python_placeholders
from jupyter_stax.core.taskworker import (
    CALL_MARK,
    MAGIC,
    WORKER_PART,
    Request,
    exit_code,
    identity,
    plain_call,
    set_environ,
    split_body,
    worker_name,
)

from ..proc import alive
from ..waiting import wait_for


def req(*fields: bytes) -> bytes:
    return b"".join(f + b"\0" for f in fields)


@pytest.mark.parametrize(
    ("data", "cwd", "script", "fd", "umask", "env"),
    [
        (req(MAGIC, b"/s", b"./stax.step.sh", b"63", b"10", b"11", b"0022\n", b"A=1",
             b"B=x=y\nz"),
         b"/s", b"/s/./stax.step.sh", (63, 10, 11), 0o022, {b"A": b"1", b"B": b"x=y\nz"}),
        (req(MAGIC, b"/s d", b"/abs/x.sh", b"10", b"1", b"2", b"0077\n"), b"/s d",
         b"/abs/x.sh", (10, 1, 2), 0o077, {}),
        (req(MAGIC, b"/s", b"x", b"3", b"4", b"5", b"0002\n", b"E=", b"noequals", b"=v"),
         b"/s", b"/s/x", (3, 4, 5), 0o002, {b"E": b""}),
    ],
)
def test_request_fields(data: bytes, cwd: bytes, script: bytes, fd: tuple[int, int, int],
                        umask: int, env: dict[bytes, bytes]) -> None:
    r = Request(data)
    assert (r.cwd, r.script, (r.pipe_fd, r.out_fd, r.err_fd), r.umask, r.env) == (
        cwd, script, fd, umask, env)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        req(b"STAX-TASK 1", b"/s", b"x", b"3", b"1", b"2", b"0022\n"),  # another protocol
        req(MAGIC, b"/s", b"x", b"3", b"1", b"2", b"0022\n")[:-1],  # cut off
        req(MAGIC, b"rel", b"x", b"3", b"1", b"2", b"0022\n"),  # a relative directory
        req(MAGIC, b"/s", b"x", b"-1", b"1", b"2", b"0022\n"),
        req(MAGIC, b"/s", b"x", b"3", b"1", b"2", b"9\n"),  # not octal
        req(MAGIC, b"/s", b"x", b"3", b"1", b"2", b"1777\n"),
    ],
)
def test_garbled_requests(data: bytes) -> None:
    with pytest.raises(ValueError):
        Request(data)


@pytest.mark.parametrize(
    ("code", "status"), [(None, 0), (0, 0), (3, 3), (258, 2), ("bad input", 1), (1.5, 1)]
)
def test_exit_code_as_the_interpreter_makes_it(code: object, status: int) -> None:
    assert exit_code(code) == status


BASE = {"PATH": "/bin", "PYTHONPATH": "/a", "HOME": "/h", "STAX_PYTHON": "/usr/bin/python3"}


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"PATH": "/usr/bin"}, True),  # read at run time: the child gets the job's
        ({"STAX_STEP": "x"}, True),
        ({"PYTHONPATH": "/b"}, False),  # shape the interpreter's start: another worker
        ({"PYTHONHASHSEED": "0"}, False),
        ({"LD_LIBRARY_PATH": "/opt/lib"}, False),
        ({"STAX_PYTHON": "/opt/py/bin/python3"}, False),  # another Python
    ],
)
def test_worker_identity(change: dict[str, str], same: bool) -> None:
    assert (identity(BASE) == identity({**BASE, **change})) is same
    # a Python found on PATH: PATH names the interpreter too
    rel = {**BASE, "STAX_PYTHON": "python3"}
    assert identity(rel) != identity({**rel, "PATH": "/usr/bin"})
    assert identity({"PATH": "/bin"}) == identity({"PATH": "/bin", "STAX_PYTHON": ""})
    assert identity({"PYTHON_A": "1", "PYTHON3": "2", "PYTHON": "3", "LD_X": "4"})[:4] == [
        "LD_X=4", "PYTHON=3", "PYTHON3=2", "PYTHON_A=1"]  # by name, as bash's ${!PYTHON@}
    names = {worker_name("d", identity(e)) for e in (BASE, {**BASE, "PYTHONPATH": "/b"})}
    assert len(names) == 2 and all(n.startswith("d-") for n in names)


@pytest.mark.parametrize(
    ("body", "head", "call"),
    [
        ("r = 1\n" + CALL_MARK + "f(r)\n", "r = 1\n", "\n" + CALL_MARK + "f(r)\n"),
        ("a\nb\n" + CALL_MARK + "c\n", "a\nb\n", "\n\n" + CALL_MARK + "c\n"),
        ("f(1)\n", "", "f(1)\n"),  # no mark: all of it each time
    ],
)
def test_split_body_keeps_line_numbers(body: str, head: str, call: str) -> None:
    assert split_body(body) == (head, call)
    assert call.splitlines()[-1] == body.splitlines()[-1]
    assert len(call.splitlines()) == len(body.splitlines())  # the same line numbers


@pytest.mark.parametrize(
    ("call", "text"),
    [
        ('\n\n_stax_task_main("""\nQUJD\nRA==\n""")\n', "QUJD\nRA=="),
        ('_stax_task_main("""\nQUJD\n""")\n', "QUJD"),
        ('_stax_task_main("""\n\n""")\n', None),  # nothing to call with
        ('_stax_task_main("""\nQUJD\n""", dict(n=1))\n', None),  # an exported task's
        ('_stax_task_main("""\nQU"JD\n""")\n', None),  # not base64: compiled
        ('_stax_task_main("""\nQUJD\n""")\nprint(1)\n', None),  # more than the call
        ('x = 1\n_stax_task_main("""\nQUJD\n""")\n', None),
        ('_stax_task_main("""\nQUJ\u00e9\n""")\n', None),
        ("", None),
    ],
)
def test_plain_call(call: str, text: str | None) -> None:
    assert plain_call(call) == text


@pytest.mark.parametrize(
    ("before", "job"),
    [
        ({b"A": b"1", b"B": b"2"}, {b"A": b"1", b"B": b"2"}),
        ({b"A": b"1", b"GONE": b"x"}, {b"A": b"2", b"NEW": b""}),
        ({b"A": b"1"}, {}),
        ({}, {b"A": b"x=y\nz"}),
    ],
)
def test_set_environ_by_difference(before: dict[bytes, bytes], job: dict[bytes, bytes]) -> None:
    env = dict(before)
    set_environ(env, job)  # type: ignore[arg-type]
    assert env == job


def test_step_script_and_its_fallbacks() -> None:
    text, digest = _worker_source()
    assert "'''" not in text and text.count(WORKER_PART) == 1
    script = render_task_step(TASK_MARK + "print(1)\n")
    lines = script.splitlines()
    exec_line = next(x for x in lines if x.startswith("exec "))
    assert " -S -c " in exec_line and '"${BASH_SOURCE[0]}"' in exec_line
    assert lines.index(exec_line) < lines.index(TASK_MARK.strip())  # bash stops before
    assert f"/{digest}" in script and script.endswith(text)  # the worker's source travels
    # a placeholder (an exported task's parameter) needs the plain Python step's rendering
    plain = render_task_step(TASK_MARK + "f(dict(n={{n}}))\n")
    assert "stax_param('n')" in plain and " -S " not in plain
    assert " -S " not in render_task_step(TASK_MARK + "x = 1\n" + CALL_MARK)  # its own mark
    assert " -S " in render_task_step(TASK_MARK + "x = '''a'''\n")  # quotes are fine now
    # nothing to place: not tokenized (a body that does not tokenize is fine here)
    assert python_placeholders("def f(:\n  '") == []


def test_a_real_warm_worker(tmp_path: Path) -> None:
    tmp = tmp_path / "t"  # a private worker directory: this test's own worker
    tmp.mkdir()
    step = tmp_path / "step"
    step.mkdir()
    body = TASK_MARK + (
        "import os, sys, time\n"
        "print('out', os.environ['STAX_STEP'], open(f'/proc/{os.getppid()}/cmdline', 'rb')"
        ".read().count(b'stax-taskworker-'), flush=True)\n"
        "if os.environ.get('FAIL'):\n"
        "    raise KeyError('boom')\n"
        "if os.environ.get('HANG'):\n"
        "    open(os.environ['HANG'] + '.tmp', 'w').write(str(os.getpid()))\n"
        "    os.replace(os.environ['HANG'] + '.tmp', os.environ['HANG'])\n"
        "    time.sleep(120)\n"
        "sys.exit(int(os.environ.get('CODE', '0')))\n"
    )
    (step / "stax.step.sh").write_text(render_task_step(body))
    env = {
        **os.environ, "TMPDIR": str(tmp), "STAX_TASK_WORKER": "1",
        "STAX_TASK_WORKER_IDLE": "3", "STAX_PYTHON": sys.executable, "STAX_STEP": "s1",
    }
    argv = ["bash", "-c", ". ./stax.step.sh"]

    def run(**kw: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=step, env={**env, **kw}, capture_output=True,
                              text=True, timeout=60)

    first = run(CODE="4")
    assert (first.returncode, first.stdout) == (4, "out s1 0\n")  # its own Python
    wdir = tmp / f"stax-taskworker-{os.getuid()}"
    pid_file = wait_for(lambda: next(iter(wdir.glob("*.pid")), None), 30, "the worker's pid")
    assert oct(wdir.stat().st_mode & 0o777) == "0o700"
    second = run(CODE="5", STAX_STEP="s2")
    assert (second.returncode, second.stdout) == (5, "out s2 1\n")  # forked by the worker
    assert run(STAX_TASK_WORKER="0").stdout == "out s1 0\n"  # opted out: its own Python
    # umask 002 (user-private groups): the request and the script group-writable, still served
    (step / "stax.step.sh").chmod(0o664)
    umask = subprocess.run(["bash", "-c", "umask 002; . ./stax.step.sh"], cwd=step,
                           env={**env, "STAX_STEP": "s3"}, capture_output=True, text=True,
                           timeout=60)
    assert (umask.returncode, umask.stdout) == (0, "out s3 1\n")
    # another interpreter environment: a worker of its own (its first task runs in its own
    # Python and starts it), the first worker serves on
    other = os.pathsep.join(sys.path)
    assert run(PYTHONPATH=other).stdout == "out s1 0\n"
    wait_for(lambda: len(list(wdir.glob("*.pid"))) == 2, 30, "the second worker")
    assert run(PYTHONPATH=other).stdout == "out s1 1\n"
    assert run().stdout == "out s1 1\n"
    failed = run(FAIL="1")
    assert failed.returncode == 1 and "KeyError: 'boom'" in failed.stderr
    assert "Traceback (most recent call last)" in failed.stderr

    def hang(mark: Path) -> tuple[subprocess.Popen[str], int]:
        p = subprocess.Popen(argv, cwd=step, env={**env, "HANG": str(mark)},
                             stdout=subprocess.PIPE, text=True)
        return p, int(wait_for(lambda: mark.exists() and mark.read_text(), 30, "the task"))

    def gone(pid: int) -> bool:  # ended or a zombie (reading /proc of an ending one can fail)
        return not alive(pid)

    # a signal to the job ends the task the same way (forwarded to its process group)
    job, task = hang(tmp_path / "h1")
    job.send_signal(signal.SIGTERM)
    assert job.wait(30) == -signal.SIGTERM
    wait_for(lambda: gone(task), 30, "the task the signal was forwarded to to end")
    # the job killed outright: the worker kills the task
    job, task = hang(tmp_path / "h2")
    job.kill()
    job.wait(30)
    wait_for(lambda: gone(task), 30, "the task of the killed job to end")

    workers = [int(p.read_text()) for p in wdir.glob("*.pid")]
    # the request of a job killed before it sent it: removed with the worker's own files
    (wdir / (pid_file.stem + ".4194305.req")).write_bytes(b"")  # above any pid_max
    wait_for(lambda: all(gone(w) for w in workers), 30, "the idle workers to exit (3 s idle)")
    assert sorted(p.name for p in wdir.iterdir()) == []  # nothing left behind


def test_runner_named_by_digest_through_the_warm_worker(tmp_path: Path) -> None:
    """A task's stored step names the runner by digest (small); its script carries the runner
    (rendered as the engine does), and the warm worker runs it from its prepared runner and
    the call's text: the result file, the job's own environment (a variable the worker's
    environment has and the job's has not stays unset), a wrong digest refused."""
    import cloudpickle

    from jupyter_stax.core.errors import InvalidWorkflow
    from jupyter_stax.core.functask import (
        RUNNER_SOURCE,
        call_header,
        read_result_file,
        result_file,
        runner_ref,
        task_source,
    )

    def probe(x: int) -> tuple[int, str | None, str | None, bool]:
        import os as _o

        with open(f"/proc/{_o.getppid()}/cmdline", "rb") as f:
            parent = f.read()
        return (x + 1, _o.environ.get("STAX_T_GONE"), _o.environ.get("STAX_T_NEW"),
                b"stax-taskworker-" in parent)

    tmp = tmp_path / "t"
    tmp.mkdir()
    step = tmp_path / "step"
    step.mkdir()
    source = task_source(call_header("step", None) + cloudpickle.dumps((probe, [((1,), {})])),
                         ref=True)
    assert source.startswith(runner_ref()) and RUNNER_SOURCE not in source
    assert len(source) < len(RUNNER_SOURCE)  # the call only
    script = render_task_step(source)
    assert RUNNER_SOURCE + CALL_MARK in script  # the script carries it
    (step / "stax.step.sh").write_text(script)
    env = {
        **os.environ, "TMPDIR": str(tmp), "STAX_TASK_WORKER": "1", "STAX_TASK_WORKER_IDLE": "3",
        "STAX_PYTHON": sys.executable, "STAX_STEP": "step", "STAX_STEP_DIR": str(step),
    }

    def run(env: dict[str, str]) -> tuple[object, ...]:
        p = subprocess.run(["bash", "-c", ". ./stax.step.sh"], cwd=step, env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        data = read_result_file(step / result_file("step"), tmp_path)
        return tuple(cloudpickle.loads(data))

    assert run({**env, "STAX_T_GONE": "1"}) == (2, "1", None, False)  # starts the worker
    wdir = tmp / f"stax-taskworker-{os.getuid()}"
    pid_file = wait_for(lambda: next(iter(wdir.glob("*.pid")), None), 30, "the worker's pid")
    assert run({**env, "STAX_T_NEW": "n"}) == (2, None, "n", True)  # forked by the worker
    assert run(env) == (2, None, None, True)
    # a digest that is not this runner's: refused with the reason, nothing rendered
    for bad in (runner_ref("0" * 64), runner_ref("")):
        with pytest.raises(InvalidWorkflow, match="another version of jupyter_stax"):
            render_task_step(bad + source[len(runner_ref()):], where="step 'x'")
    worker = int(pid_file.read_text())
    wait_for(lambda: not Path(f"/proc/{worker}").exists()
             or Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z", 30,
             "the idle worker to exit")
