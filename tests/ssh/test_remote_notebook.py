"""A notebook step on the remote Slurm through the real sshd (issue 16): the notebook is staged
over SSH like any input, runs in the remote account's Python, and its executed copy comes back
beside the original.

The test account's python3 is Debian's, without papermill: the first test proves the step says
so (and how to fix it) rather than failing obscurely. The second runs the notebook for real
when ``STAX_TEST_REMOTE_NOTEBOOK_PYTHON`` names a Python of the remote account that has
papermill and ipykernel (e.g. ``python3 -m venv /tmp/v && /tmp/v/bin/pip install papermill
ipykernel`` as that account); it is skipped otherwise."""

from __future__ import annotations

import asyncio
import os
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


@pytest.mark.skipif(
    not os.environ.get("STAX_TEST_REMOTE_NOTEBOOK_PYTHON"),
    reason="STAX_TEST_REMOTE_NOTEBOOK_PYTHON names no remote Python with papermill",
)
def test_a_remote_notebook_runs_and_comes_back(
    sshd: Sshd, client: Client, tmp_path: Path, slurm: str
) -> None:
    python = os.environ["STAX_TEST_REMOTE_NOTEBOOK_PYTHON"]
    ex = _run(tmp_path, sshd, client, env={"STAX_PYTHON": python})
    s = ex.step("nb")
    assert s.state is StepState.COMPLETED, s.reason
    executed = tmp_path / "nb" / f"remote.{ex.id}.ipynb"
    assert s.files.notebook == str(executed)
    nb = nbformat.read(str(executed), as_version=4)
    assert nb.cells[-1].outputs[0]["text"] == "hello it's $(me)\n"
    assert s.directory.startswith("/home/stax-remote/")  # it ran in the remote account
