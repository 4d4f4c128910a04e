"""A notebook step on the remote Slurm through the real sshd (issue 16): the notebook is staged
over SSH like any input, runs in the remote account's Python, and its executed copy comes back
beside the original.

The test account's python3 is Debian's, without papermill: the first test proves the step says
so (and how to fix it) rather than failing obscurely. The second runs the notebook for real in
a Python of the remote account that has papermill and ipykernel:
``STAX_TEST_REMOTE_NOTEBOOK_PYTHON`` when it names one, else a venv of Debian's python3 that
:func:`notebook_venv` makes once (and re-uses while it fits) from the papermill and ipykernel
this test process has installed: their files are hard-linked (or copied), not downloaded
(seconds, where ``pip install`` took over a minute here). It is skipped when neither can be
had (another Python minor version than Debian's, whose compiled modules would not load
there)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import SubmitOptions
from jupyter_stax.core.states import StepState
from jupyter_stax.engine.engine import Engine

from ..engine.test_notebook_steps import make_notebook
from .sshd import Client, Sshd
from .test_remote_slurm import cluster

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]

#: the remote account's Python (Debian's)
REMOTE_PYTHON = "/usr/bin/python3"


def _closure(*names: str) -> list[Any]:
    """The installed distributions ``names`` need (themselves included), markers evaluated."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen: dict[str, Any] = {}
    todo = list(names)
    while todo:
        req = Requirement(todo.pop())
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen[key] = md.distribution(req.name)
        todo += seen[key].requires or []  # an extra's requirements: their marker says no
    return [seen[k] for k in sorted(seen)]


def notebook_venv(base: Path) -> str | None:
    """A Python for the remote account with papermill and ipykernel (None: cannot be made):
    a venv of Debian's python3 below ``base`` (readable by the account), with the files of
    the distributions this process has installed (hard links where they are readable);
    re-used while its stamp (the distributions and versions) is the same."""
    if not Path(REMOTE_PYTHON).exists():
        return None
    there = subprocess.run([REMOTE_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True).stdout.strip()
    if there != str(sys.version_info[:2]):  # compiled modules (pyzmq ...) load in 3.X only
        return None
    dists = _closure("papermill", "ipykernel")
    stamp = "\n".join(f"{d.metadata['Name']}=={d.version}" for d in dists) + "\n"
    venv = base / f"nbvenv-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if (venv / "stax-stamp").exists() and (venv / "stax-stamp").read_text() == stamp:
        return str(python)
    shutil.rmtree(venv, ignore_errors=True)
    tmp = venv.with_name(venv.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([REMOTE_PYTHON, "-m", "venv", "--without-pip", str(tmp)], check=True)
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(tmp / "bin" / "python"), "-c", code],
                               capture_output=True, text=True, check=True).stdout.strip())
    for d in dists:
        for f in d.files or []:
            src = Path(d.locate_file(f))
            if ".." in f.parts or not src.is_file():
                continue  # scripts outside site-packages: not needed
            dst = site / f
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.stat().st_mode & 0o004:  # readable by the account already: a hard link
                try:
                    os.link(src, dst)
                    continue
                except OSError:  # another file system
                    pass
            shutil.copy2(src, dst)
            dst.chmod(dst.stat().st_mode | 0o444)
    (tmp / "stax-stamp").write_text(stamp)
    try:
        tmp.rename(venv)
    except OSError:  # another test process made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return str(python)


@pytest.fixture(scope="module")
def remote_notebook_python(sshd: Sshd) -> str:
    named = os.environ.get("STAX_TEST_REMOTE_NOTEBOOK_PYTHON")
    if named:
        return named
    python = notebook_venv(Path(sshd.base))
    if python is None:
        pytest.skip(f"no remote Python with papermill: {REMOTE_PYTHON} is another version "
                    "than this one, and STAX_TEST_REMOTE_NOTEBOOK_PYTHON names none")
    return python


def _run(tmp_path: Path, sshd: Sshd, client: Client, **kw: Any) -> Any:
    far = cluster(sshd, client, **kw)
    make_notebook(
        tmp_path / "nb" / "remote.ipynb",
        [("code", "who = 'nobody'", ["parameters"]), ("code", "print('hello', who)", [])],
    )
    wf = {"name": "rnb", "steps": [
        {"name": "nb", "notebook": "nb/remote.ipynb", "params": {"who": "it's $(me)"}}
    ]}

    async def body() -> Any:
        reg = ClusterRegistry([far], work_dir=tmp_path / "runs")
        async with Engine(store=tmp_path / "state" / "stax.sqlite", clusters=reg) as e:
            ex = await e.submit(wf, "far", options=SubmitOptions(base_dir=str(tmp_path)))
            return await e.wait(ex.id, 300)

    return asyncio.run(body())


def test_a_remote_python_without_papermill_says_how_to_fix_it(
    sshd: Sshd, client: Client, tmp_path: Path, slurm: str
) -> None:
    ex = _run(tmp_path, sshd, client)
    s = ex.step("nb")
    assert s.state is StepState.FAILED
    assert "papermill is not installed in /usr/bin/python3" in s.reason
    assert "python3 -m pip install papermill ipykernel there" in s.reason
    assert s.files.inputs[0].path == "nb/remote.ipynb"  # staged over SSH
    assert s.files.notebook is None and "not in the step directory" in s.files.warning


def test_a_remote_notebook_runs_and_comes_back(
    sshd: Sshd, client: Client, tmp_path: Path, slurm: str, remote_notebook_python: str
) -> None:
    ex = _run(tmp_path, sshd, client, env={"STAX_PYTHON": remote_notebook_python})
    s = ex.step("nb")
    assert s.state is StepState.COMPLETED, s.reason
    executed = tmp_path / "nb" / f"remote.{ex.id}.ipynb"
    assert s.files.notebook == str(executed)
    nb = nbformat.read(str(executed), as_version=4)
    assert nb.cells[-1].outputs[0]["text"] == "hello it's $(me)\n"
    assert s.directory.startswith("/home/stax-remote/")  # it ran in the remote account
