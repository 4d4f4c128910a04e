"""Function tasks' pure rules (core/functask.py): which result files are unpickled, the probe's
answer and verdict, error records; and the runner itself, run by real interpreters from the
task's step script (and the plain Python step's): this one (a call, an exception, an upstream
result) and another Python version (refused before any unpickling, with the fix)."""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.functask import (
    RUNNER_DIGEST,
    RUNNER_SOURCE,
    TASK_MARK,
    Probe,
    ResultRefused,
    TaskError,
    call_header,
    error_file,
    expand_runner,
    parse_probe,
    probe_problem,
    read_result_file,
    render_task_step,
    result_file,
    result_problem,
    runner_ref,
    task_source,
)
from jupyter_stax.core.pystep import render_python_step

from ..pythons import other_minor

ME = os.getuid()
REG = stat.S_IFREG


@pytest.mark.parametrize(
    ("mode", "owner", "problem"),
    [
        (REG | 0o600, ME, None),
        (REG | 0o644, ME, None),
        (REG | 0o444, ME, None),
        (REG | 0o664, ME, "writable by group (mode 0664)"),
        (REG | 0o646, ME, "writable by others (mode 0646)"),
        (REG | 0o666, ME, "writable by group (mode 0666)"),
        (REG | 0o600, ME + 1, f"owned by uid {ME + 1}, not by you (uid {ME})"),
        (stat.S_IFDIR | 0o700, ME, "not a regular file"),
        (stat.S_IFIFO | 0o600, ME, "not a regular file"),
    ],
)
def test_result_problem(mode: int, owner: int, problem: str | None) -> None:
    got = result_problem(mode, owner, ME)
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_read_result_file_checks_the_file(tmp_path: Path) -> None:
    ex = tmp_path / "exec"
    (ex / "step").mkdir(parents=True)
    good = ex / "step" / "r.pkl"
    good.write_bytes(pickle.dumps(42))
    good.chmod(0o600)
    assert pickle.loads(read_result_file(good, ex)) == 42

    good.chmod(0o620)
    with pytest.raises(ResultRefused, match="writable by group"):
        read_result_file(good, ex)
    good.chmod(0o600)

    outside = tmp_path / "elsewhere.pkl"
    outside.write_bytes(b"x")
    with pytest.raises(ResultRefused, match="not inside the execution's directory"):
        read_result_file(outside, ex)

    link = ex / "step" / "link.pkl"
    link.symlink_to(outside)
    with pytest.raises(ResultRefused, match="symbolic link"):
        read_result_file(link, ex)

    escape = ex / "step" / "up"
    escape.symlink_to(tmp_path)  # a directory link out of the execution
    with pytest.raises(ResultRefused, match="not inside"):
        read_result_file(escape / "elsewhere.pkl", ex)

    with pytest.raises(ResultRefused, match=rf"owned by uid {ME}, not by you \(uid {ME + 7}\)"):
        read_result_file(good, ex, uid=ME + 7)
    with pytest.raises(FileNotFoundError):
        read_result_file(ex / "step" / "absent.pkl", ex)


@pytest.mark.parametrize(
    ("text", "probe"),
    [
        (
            'noise\nSTAX-PROBE {"python": [3, 11, 7], "executable": "/x/python3", '
            '"cloudpickle": "2.1.0"}\n',
            Probe((3, 11, 7), "/x/python3", "2.1.0"),
        ),
        (
            'STAX-PROBE {"python": [3, 9, 18], "executable": "", "cloudpickle": null}',
            Probe((3, 9, 18), "python3", None),
        ),
        ("STAX-PROBE {not json", None),
        ('STAX-PROBE {"python": [3]}', None),
        ("", None),
    ],
)
def test_parse_probe(text: str, probe: Probe | None) -> None:
    assert parse_probe(text) == probe


@pytest.mark.parametrize(
    ("probe", "kernel", "words"),
    [
        (Probe((3, 11, 2), "/usr/bin/python3", "3.0"), (3, 11), None),
        (
            Probe((3, 9, 18), "/opt/py/bin/python3", "3.0"),
            (3, 11),
            ["cluster 'c' (/opt/py/bin/python3) is 3.9, this kernel runs 3.11", "STAX_PYTHON"],
        ),
        (
            Probe((3, 11, 2), "/usr/bin/python3", None),
            (3, 11),
            ["has no cloudpickle", "/usr/bin/python3 -m pip install cloudpickle"],
        ),
    ],
)
def test_probe_problem(probe: Probe, kernel: tuple[int, int], words: list[str] | None) -> None:
    got = probe_problem(probe, "cluster 'c'", kernel)
    if words is None:
        assert got is None
    else:
        assert got is not None and all(w in got for w in words), got


@pytest.mark.parametrize(
    ("data", "summary", "kind"),
    [
        (
            json.dumps(
                {"kind": "exception", "type": "builtins.ValueError", "message": "bad",
                 "traceback": "Traceback..."}
            ).encode(),
            "ValueError: bad",
            "exception",
        ),
        (
            json.dumps(
                {"kind": "python", "type": "", "message": "this job's python is 3.9",
                 "traceback": ""}
            ).encode(),
            "this job's python is 3.9",
            "python",
        ),
        (b"{half", None, "garbled"),
    ],
)
def test_error_records(data: bytes, summary: str | None, kind: str) -> None:
    err = TaskError.parse(data)
    assert err.kind == kind
    if summary is not None:
        assert err.summary() == summary


def test_a_call_too_big_is_refused_with_the_way_out() -> None:
    with pytest.raises(ValueError, match="pass big data as the result of a task"):
        task_source(b"x" * (17 << 20))


def test_file_names() -> None:
    assert result_file("train") == "stax.result.train.pkl"
    assert result_file("train", 3) == "3/stax.result.train.pkl"
    assert error_file("x.y", 0) == "0/stax.error.x.y.json"


# ---------------------------------------------------------------------- the runner, for real
def _call_file(d: Path, func: Any, calls: list[Any], ids: dict[int, Any] | None = None,
               count: int | None = None) -> None:
    """The step's Python body with this call in it (as ``stax.body.py``)."""
    buf = io.BytesIO()

    class P(cloudpickle.CloudPickler):  # type: ignore[misc]
        def persistent_id(self, obj: Any) -> Any:
            return (ids or {}).get(id(obj))

    P(buf).dump((func, calls))
    (d / "stax.body.py").write_text(task_source(call_header(d.name, count) + buf.getvalue()))


def _run(python: str, step_dir: Path, index: int | None = None, plain: bool = False
         ) -> subprocess.CompletedProcess[str]:
    """The step script as a job runs it (sourced from its file, in the instance's directory):
    the task's own (:func:`render_task_step`, ``-S``, no worker here) or, ``plain``, the plain
    Python step's (what an exported task with parameters gets)."""
    here = step_dir / str(index) if index is not None else step_dir
    here.mkdir(exist_ok=True)
    env = {**os.environ, "STAX_STEP_DIR": str(here), "STAX_STEP": step_dir.name}
    env.pop("STAX_TASK_WORKER", None)
    if index is not None:
        env["STAX_SWEEP_INDEX"] = str(index)
    body = (step_dir / "stax.body.py").read_text()
    script = step_dir / "stax.step.sh"
    script.write_text(render_python_step(body) if plain else render_task_step(body))
    return subprocess.run(
        ["bash", "-c", f". {script}"], env={**env, "STAX_PYTHON": python}, cwd=here,
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("plain", [False, True], ids=["task-step", "plain-python-step"])
def test_runner_calls_and_reads_upstream_results(tmp_path: Path, plain: bool) -> None:
    up = tmp_path / "up"
    up.mkdir()
    _call_file(up, lambda a, b=1: [a * b, {"k": a}], [((3,), {"b": 2})])
    r = _run(sys.executable, up, plain=plain)
    assert r.returncode == 0, r.stderr
    res = up / result_file("up")
    assert pickle.loads(res.read_bytes()) == [6, {"k": 3}]
    assert stat.S_IMODE(res.stat().st_mode) == 0o600

    # a map step: element 1 of 2, an argument is the upstream's result (a persistent id)
    down = tmp_path / "down"
    down.mkdir()
    marker = object()
    _call_file(
        down, lambda xs, n: xs[0] + n, [((marker, 1), {}), ((marker, 10), {})],
        ids={id(marker): ("step", "up", None)}, count=2,
    )
    r = _run(sys.executable, down, index=1, plain=plain)
    assert r.returncode == 0, r.stderr
    assert pickle.loads((down / result_file("down", 1)).read_bytes()) == 16

    # an upstream result others may write is not loaded
    res.chmod(0o620)
    r = _run(sys.executable, down, index=0, plain=plain)
    assert r.returncode == 3
    err = TaskError.parse((down / error_file("down", 0)).read_bytes())
    assert err.kind == "upstream" and "that only you can write: not loaded" in err.message


def test_runner_exception_is_recorded(tmp_path: Path) -> None:
    d = tmp_path / "boom"
    d.mkdir()

    def boom(x: int) -> None:
        raise KeyError(f"no {x}")

    _call_file(d, boom, [((5,), {})])
    r = _run(sys.executable, d)
    assert r.returncode == 1
    err = TaskError.parse((d / error_file("boom")).read_bytes())
    assert (err.kind, err.type) == ("exception", "builtins.KeyError")
    assert err.summary() == "KeyError: 'no 5'"
    assert "in boom" in err.traceback and err.traceback.rstrip().endswith("KeyError: 'no 5'")
    assert not (d / result_file("boom")).exists()


def test_runner_refuses_another_python_before_unpickling(tmp_path: Path) -> None:
    other = other_minor()
    if other is None:
        pytest.skip("no Python of another minor version on this machine")
    d = tmp_path / "t"
    d.mkdir()
    _call_file(d, lambda: 1, [((), {})])
    r = _run(other, d)
    assert r.returncode == 3
    err = TaskError.parse((d / error_file("t")).read_bytes())
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert err.kind == "python" and f"the kernel that made the task runs {here}" in err.message
    assert "STAX_PYTHON" in err.message and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("source", "expanded"),
    [
        (runner_ref() + "f()\n", RUNNER_SOURCE + "f()\n"),
        (runner_ref().partition("\nif ")[0], RUNNER_SOURCE),  # the digest line only
        (runner_ref().partition("if ")[0] + "f()\n", RUNNER_SOURCE + "f()\n"),  # no guard
        (RUNNER_SOURCE + "f()\n", RUNNER_SOURCE + "f()\n"),  # stored before: carries it
        (TASK_MARK + "print(1)\n", TASK_MARK + "print(1)\n"),
        ("print(1)\n", "print(1)\n"),
        (runner_ref("0" * 64) + "f()\n", None),  # another runner
        (runner_ref(RUNNER_DIGEST[:-1] + "x") + "f()\n", None),
        (runner_ref("") + "f()\n", None),
    ],
)
def test_expand_runner(source: str, expanded: str | None) -> None:
    if expanded is None:
        with pytest.raises(InvalidWorkflow) as e:
            expand_runner(source, where="step 'a'")
        assert "step 'a' names the function-task runner" in e.value.message
        assert "Call the function again" in e.value.message
    else:
        assert expand_runner(source) == expanded


def test_task_source_names_the_runner() -> None:
    call = call_header("a", None) + b"x"
    ref = task_source(call, ref=True)
    full = task_source(call)
    assert ref.startswith(runner_ref()) and full.startswith(RUNNER_SOURCE)
    assert expand_runner(ref) == full
    # an exported task (parameters) is a standalone unit: it carries the runner
    assert task_source(call, ["n"], ref=True).startswith(RUNNER_SOURCE)
    # run as it is (an older engine that does not put the runner in): a sentence, not a
    # NameError
    p = subprocess.run([sys.executable, "-c", ref], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "NameError" not in p.stderr
    assert "the engine that wrote its job script is an older jupyter_stax" in p.stderr
