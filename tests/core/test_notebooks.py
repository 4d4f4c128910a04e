"""Notebooks as steps, the pure parts (issue 16): the `parameters` cell reader, the notebook
field's rules, where the notebook lands and its executed copy's name, the runner script."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from pydantic import ValidationError

from jupyter_stax.core.dag import check
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.jobscript import container_plan, render_job_script, render_step_script
from jupyter_stax.core.models import Step, Workflow
from jupyter_stax.core.nbparams import parameters_of, parse_parameters
from jupyter_stax.core.notebooks import (
    executed_name,
    executed_path_in_step,
    notebook_dest,
    render_notebook_step,
)

PARAMS_CASES: list[tuple[str, list[tuple[str, Any, str, str | None, bool]]]] = [
    ("year = 2024  # the season", [("year", 2024, "int", "the season", True)]),
    ("rate = 0.5\nflag = True\nname = 'a b'", [
        ("rate", 0.5, "float", None, True),
        ("flag", True, "bool", None, True),
        ("name", "a b", "str", None, True),
    ]),
    ("x: float = 1  # typed", [("x", 1, "float", "typed", True)]),
    ("n = None", [("n", None, "None", None, True)]),
    ("n = -3", [("n", -3, "int", None, True)]),
    ("xs = [1, 2]\nf = len('ab')", [("xs", None, "other", None, False),
                                    ("f", None, "other", None, False)]),
    ("a = 1\na = 'two'", [("a", "two", "str", None, True)]),  # the last one wins
    (
        "import os\na, b = 1, 2\nobj.x = 3\nif True:\n    y = 1\nz = 5",
        [("z", 5, "int", None, True)],
    ),
    ("msg = '''multi\nline'''  # about", [("msg", "multi\nline", "str", "about", True)]),
    ("# only a comment", []),
    ("", []),
]


@pytest.mark.parametrize(("source", "expected"), PARAMS_CASES)
def test_parameters_cell(source: str, expected: list[Any]) -> None:
    found, problems = parse_parameters(source)
    assert problems == []
    assert [(p.name, p.value, p.type, p.help, p.settable) for p in found] == expected


def test_parameters_cell_that_does_not_parse() -> None:
    found, problems = parse_parameters("year = = 1")
    assert found == [] and "not valid Python (line 1)" in problems[0]


def _nb(*cells: dict[str, Any]) -> str:
    return json.dumps({"cells": list(cells), "metadata": {"kernelspec": {"name": "python3"}},
                       "nbformat": 4, "nbformat_minor": 5})


def _cell(kind: str, source: str | list[str], tags: list[str] | None = None) -> dict[str, Any]:
    return {"cell_type": kind, "source": source, "metadata": {"tags": tags} if tags else {}}


def test_parameters_of_a_notebook() -> None:
    nb = _nb(
        _cell("markdown", "n = 0", ["parameters"]),  # a markdown cell is never the one
        _cell("code", "print(1)"),
        _cell("code", ["a = 1\n", "b = 'x'"], ["other", "parameters"]),
        _cell("code", "c = 2", ["parameters"]),  # the first tagged code cell only
    )
    got = parameters_of(nb, "a.ipynb")
    assert got.tagged and got.cell == 3 and got.kernel == "python3" and got.path == "a.ipynb"
    assert [p.name for p in got.parameters] == ["a", "b"]
    untagged = parameters_of(_nb(_cell("code", "a = 1")))
    assert not untagged.tagged and untagged.parameters == [] and untagged.cell is None
    for bad in ('{"cells": 3}', "[]", "{}"):
        with pytest.raises(ValueError, match="not a Jupyter notebook"):
            parameters_of(bad)


@pytest.mark.parametrize(
    ("spec", "dest", "executed"),
    [
        ("analysis.ipynb", "analysis.ipynb", "analysis.ab12cd34.ipynb"),
        ("nb/a b.ipynb", "nb/a b.ipynb", "nb/a b.ab12cd34.ipynb"),
        ("/data/x/run.v2.ipynb", "run.v2.ipynb", "run.v2.ab12cd34.ipynb"),
        ("../shared/t.ipynb", "t.ipynb", "t.ab12cd34.ipynb"),
    ],
)
def test_where_the_notebook_lands(spec: str, dest: str, executed: str) -> None:
    assert notebook_dest(spec) == dest
    assert executed_path_in_step(spec, "ab12cd34") == executed
    assert executed_name(spec, "ab12cd34") == executed.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"notebook": "a.py"}, "not an .ipynb file"),
        ({"notebook": "nb/*.ipynb"}, "is a pattern"),
        ({"notebook": " "}, "must be the path"),
        ({"notebook": "a\n.ipynb"}, "newline"),
        ({"notebook": "a.ipynb", "run": "echo"}, "drop 'run'"),
        ({"notebook": "a.ipynb", "language": "python", "run": "x"}, "drop 'run', 'language'"),
        ({"notebook": "a.ipynb", "sweep": {"n": [1, 2]}}, "not supported yet"),
        ({"notebook": "a.ipynb", "launcher": "srun"}, "one process"),
        ({}, "or 'notebook' (an .ipynb file)"),
    ],
)
def test_notebook_field_rules(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Step.model_validate({"name": "s", **fields})


def test_the_notebook_is_an_input_once() -> None:
    s = Step(name="s", notebook="nb/a.ipynb", inputs=["data.csv", {"from": "p", "path": "x"}])
    assert s.inputs[:2] == ["nb/a.ipynb", "data.csv"] and s.after == ["p"]
    again = Step.model_validate(s.model_dump(mode="json", by_alias=True))
    assert again.inputs == s.inputs


def test_parameter_names_a_notebook_cannot_take() -> None:
    wf = Workflow(name="w", params={"ok": 1}, steps=[Step(name="s", notebook="a.ipynb")])
    check(wf, {"year": 2024})
    with pytest.raises(InvalidWorkflow) as e:
        check(wf, {"class": 1, "None": 2})
    assert [d.split(": ", 1)[1] for d in e.value.details] == [
        "parameter 'class' is a Python keyword: a notebook cannot receive it (rename it)",
        "parameter 'None' is a Python keyword: a notebook cannot receive it (rename it)",
    ]


def test_runner_script_quotes_the_name_and_reads_params_as_json(tmp_path: Any) -> None:
    from pathlib import Path

    from jupyter_stax.core.models import Cluster

    spec = "nb/it's $(x) \"q\".ipynb"
    text = render_step_script(Step(name="s", notebook=spec, params={"a": "$(id)"}))
    assert text == render_notebook_step(spec)
    assert f"NOTEBOOK = {notebook_dest(spec)!r}" in text
    assert text.splitlines()[1].endswith("<<'STAX_NOTEBOOK_EOF'")
    # bash reads it as one command fed a heredoc: the Python program parses
    program = text.split("<<'STAX_NOTEBOOK_EOF'\n", 1)[1].rsplit("STAX_NOTEBOOK_EOF\n", 1)[0]
    compile(program, "runner", "exec")
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    step = Step(name="s", notebook="a.ipynb")
    job = render_job_script(
        execution_id="e1", step=step, attempt=1, cluster=Cluster(name="local"),
        params={"a": "$(id)", "n": 3}, step_dir=Path(tmp_path), execution_dir=Path(tmp_path),
    )
    assert """export STAX_PARAMS_JSON='{"a": "$(id)", "n": 3}'""" in job
    from jupyter_stax.core.containers import NONE
    from jupyter_stax.core.images import ResolvedImage

    img = ResolvedImage(
        name="i", family="i", requested="i", reference="/i.sif", runtime="none"
    )
    plan = container_plan(
        NONE, img, step=step, cluster=Cluster(name="local"), params={"a": 1},
        step_dir=Path(tmp_path), work_dir=Path(tmp_path),
    )
    assert "STAX_PARAMS_JSON" in plan.env
