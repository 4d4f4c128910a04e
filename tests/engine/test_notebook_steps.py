"""Notebooks as steps (issue 16) on real schedulers (PSI/J's local executor and the project's
Slurm), run by papermill with a real ipykernel: parameters injected after the cell tagged
`parameters` (hostile values stay data), the executed copy back beside the original, a failing
cell's number and error line as the step's reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_stax.core.models import StepState, SubmitOptions
from jupyter_stax.engine.engine import Engine

from .conftest import arun

#: values a notebook must receive exactly as given, never as code
HOSTILE = {
    "quote": 'a "b" \'c\' """d""" \\" \\',
    "code": "__import__('os').system('touch pwned'); x = '",
    "shell": "$(touch pwned) `touch pwned` ; touch pwned",
    "lines": "one\ntwo\r\n\tthree\x7f",
    "braces": "{{year}} {year} %(year)s",
    "unicode": "Käse → 🧀",
}


def make_notebook(path: Path, cells: list[tuple[str, str, list[str]]]) -> None:
    """cells: (kind, source, tags)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python"
    }
    for kind, source, tags in cells:
        cell = (
            nbformat.v4.new_code_cell(source)
            if kind == "code"
            else nbformat.v4.new_markdown_cell(source)
        )
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def _outputs(path: Path) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o["text"])
            elif o.get("output_type") == "error":
                out.append(f"ERROR {o['ename']}: {o['evalue']}")
    return out


@pytest.mark.slow  # THE end-to-end test of notebook steps: two kernels started by papermill
def test_notebook_steps_run_with_parameters_and_come_back(
    cluster: str, engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    base = tmp_path / "notebook side"
    names = ", ".join(["year", "rate", "flag", "label", *HOSTILE])
    make_notebook(
        base / "nb" / "analysis.ipynb",
        [
            ("markdown", "# Analysis", []),
            ("code", "year = 2023  # the season\nrate = 0.5\nflag = False\nlabel = 'x'\n"
             + "".join(f"{k} = ''\n" for k in HOSTILE), ["parameters"]),
            ("code", "import json, os\n"
             f"print('VALUES=' + json.dumps({{k: globals()[k] for k in '{names}'.split(', ')}}))\n"
             "print('CWD=' + os.getcwd())\n"
             "print('DATA=' + open('data.txt').read())", []),
        ],
    )
    (base / "nb" / "data.txt").write_text("beside the notebook")
    make_notebook(
        base / "broken.ipynb",
        [
            ("code", "n = 1", ["parameters"]),
            ("markdown", "dividing", []),
            ("code", "print('before')\n1 / (n - n)", []),
            ("code", "print('never')", []),
        ],
    )
    params: dict[str, Any] = {"year": 2024, "rate": 0.25, "flag": True, **HOSTILE}
    wf = {
        "name": "nbs",
        "steps": [
            {
                "name": "analysis",
                "notebook": "nb/analysis.ipynb",
                "inputs": ["nb/data.txt"],
                "params": params,
            },
            {"name": "broken", "notebook": "broken.ipynb", "params": {"n": 7}},
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, cluster=cluster, options=SubmitOptions(base_dir=str(base)))
            return await eng.wait(ex.id, timeout=240)

    ex: Any = arun(main())
    analysis, broken = ex.step("analysis"), ex.step("broken")
    assert analysis.state is StepState.COMPLETED, (analysis.reason, analysis.files)

    # the executed copy is beside the original, named after the execution
    executed = base / "nb" / f"analysis.{ex.id}.ipynb"
    assert analysis.files.notebook == str(executed)
    out = "".join(_outputs(executed))
    values = json.loads(out.split("VALUES=", 1)[1].splitlines()[0])
    assert values == {**params, "label": "x"}  # typed, and every hostile value exactly
    assert f"CWD={Path(analysis.directory) / 'nb'}" in out  # runs where the notebook landed
    assert "DATA=beside the notebook" in out
    nb = nbformat.read(str(executed), as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and nb.cells.index(injected[0]) == 2  # right after `parameters`
    assert not list(tmp_path.rglob("pwned")) and not (Path.cwd() / "pwned").exists()
    # the original is untouched
    assert "injected-parameters" not in (base / "nb" / "analysis.ipynb").read_text()

    # a failing cell fails the step: cell number (of the original) and error line as reason
    assert broken.state is StepState.FAILED
    assert broken.reason == (
        "exit code 1: jupyter_stax: notebook cell 3 (In [3]) failed: "
        "ZeroDivisionError: division by zero"
    )
    failed_copy = base / f"broken.{ex.id}.ipynb"
    assert broken.files.notebook == str(failed_copy)
    got = _outputs(failed_copy)
    assert "before\n" in got and "ERROR ZeroDivisionError: division by zero" in got
    assert "never\n" not in got


def test_the_executed_copy_goes_to_the_outputs_dir_when_the_original_directory_is_gone(
    tmp_path: Path,
) -> None:
    from datetime import datetime, timezone

    from jupyter_stax.core.models import Execution, StepRun, Workflow
    from jupyter_stax.engine.notebooks import destination

    step_def = {"name": "nb", "notebook": "gone/a.ipynb"}
    wf = Workflow.model_validate({"name": "w", "steps": [step_def]})
    s = StepRun(name="nb", cluster="local", directory="/d", script="s", stdout="o", stderr="e")
    ex = Execution(
        id="e1", workflow=wf, cluster="local", created_at=datetime.now(timezone.utc),
        work_dir="/w", steps=[s],
        options=SubmitOptions(base_dir=str(tmp_path), outputs_dir=str(tmp_path / "outs")),
    )
    assert destination(ex, wf.steps[0], s) == (
        tmp_path / "outs" / "e1" / "nb",
        f"the notebook's directory {tmp_path / 'gone'} is gone or not writable: its executed copy "
        f"is in {tmp_path / 'outs' / 'e1' / 'nb'}",
    )
    (tmp_path / "gone").mkdir()
    assert destination(ex, wf.steps[0], s) == (tmp_path / "gone", None)
