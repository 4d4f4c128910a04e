"""A notebook as a step from a notebook (issue 16): ``%stax_submit --notebook`` in a real IPython
shell, driving the real background engine on ``local`` with papermill and a real ipykernel;
``stax.notebook_parameters``, ``Execution.executed_notebook``; bad input is one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

import jupyter_stax as stax
from jupyter_stax.core.errors import BadRequest, NotFound
from jupyter_stax.service import LocalService

from ..engine.test_notebook_steps import make_notebook
from .test_magics import Shell

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def shell(svc: LocalService, capsys: pytest.CaptureFixture[str]) -> Iterator[Shell]:
    sh = Shell(svc, capsys)
    yield sh
    sh.ip.user_ns.pop("run", None)


@pytest.fixture
def here(tmp_path: Path) -> Iterator[Path]:
    """The kernel's working directory (relative notebooks start here)."""
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.mark.slow  # a kernel started by papermill on a loaded 2-core machine: ~20 s
def test_stax_submit_notebook_runs_it_with_parameters(shell: Shell, here: Path) -> None:
    make_notebook(
        here / "My analysis.ipynb",
        [
            ("code", "year = 2023  # the season\nname = 'x'", ["parameters"]),
            ("code", "print(f'{year + 1} {name}')", []),
        ],
    )
    found = stax.notebook_parameters("My analysis.ipynb")
    assert [(p.name, p.value, p.help) for p in found.parameters] == [
        ("year", 2023, "the season"),
        ("name", "x", None),
    ]
    shell.ip.user_ns["who"] = "O'Neil \"$(id)\""
    shell.ok("import shlex")
    shell.ok(
        "run = %stax_submit --notebook 'My analysis.ipynb' --param year=2024 "
        "--param name={shlex.quote(who)} --cluster local --time 00:05:00 --no-monitor "
        "--wait --timeout 200"
    )
    run = shell.ip.user_ns["run"]
    assert run.state == "completed" and [s.name for s in run.steps] == ["My-analysis"]
    executed = run.executed_notebook()
    assert executed == here / f"My analysis.{run.id}.ipynb"
    nb = nbformat.read(str(executed), as_version=4)
    assert nb.cells[-1].outputs[0]["text"] == "2025 O'Neil \"$(id)\"\n"
    assert run.model.workflow.steps[0].resources.time == "00:05:00"


def test_bad_notebook_submissions_are_one_line(shell: Shell, here: Path) -> None:
    make_notebook(here / "a.ipynb", [("code", "x = 1", ["parameters"])])
    (here / "a.py").write_text("x = 1\n")
    before = shell.count()
    assert "no such file" in shell.fails("%stax_submit --notebook missing.ipynb")
    assert "not an .ipynb file" in shell.fails("%stax_submit --notebook a.py")
    assert "drop STEP names" in shell.fails("%stax_submit s1 --notebook a.ipynb")
    assert "go with --notebook" in shell.fails("%stax_submit --image x")
    assert "Python keyword" in shell.fails("%stax_submit --notebook a.ipynb --param class=1")
    assert shell.count() == before
    with pytest.raises(NotFound):
        stax.notebook_parameters(here / "missing.ipynb")
    (here / "text.ipynb").write_text("not json")
    with pytest.raises(BadRequest, match="not a Jupyter notebook"):
        stax.notebook_parameters(here / "text.ipynb")
