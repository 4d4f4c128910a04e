"""Python steps: placeholders in code become typed ``stax_param()`` calls, placeholders inside
string literals are refused, and the rendered bash runs the body with a real python3."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jupyter_stax.core.dag import check
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.models import Workflow
from jupyter_stax.core.params import ParamError
from jupyter_stax.core.pystep import PARAMS_JSON_ENV, python_placeholders, render_python_step


def run_rendered(source: str, params: dict[str, object]) -> subprocess.CompletedProcess[str]:
    script = render_python_step(source)
    env = {
        "PATH": "/usr/bin:/bin",
        PARAMS_JSON_ENV: json.dumps(params),
        "STAX_PYTHON": sys.executable,
    }
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )


def test_code_placeholders_keep_their_type() -> None:
    out = run_rendered(
        "print({{n}} * 2, type({{x}}).__name__, {{flag}} is True, stax_params['s'])",
        {"n": 21, "x": 1.5, "flag": True, "s": "a b"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "42 float True a b\n"


@pytest.mark.parametrize(
    "value",
    [
        "'); import os; os.system('touch /tmp/pwn'); ('",
        '"""',
        "$(id)",
        "\\n__import__('os')",
        "{{n}}",
    ],
)
def test_hostile_values_are_data(value: str) -> None:
    out = run_rendered("v = {{v}}\nprint(repr(v))", {"v": value})
    assert out.returncode == 0, out.stderr
    assert out.stdout == repr(value) + "\n"


@pytest.mark.parametrize(
    "source",
    ["print('{{n}}')", 'x = f"{ {{n}} }"', 'print("""\n{{n}}\n""")', "print(b'{{n}}')"],
)
def test_placeholders_inside_strings_are_refused(source: str) -> None:
    with pytest.raises(ParamError, match=r"inside a Python string literal; use stax_params\['n'\]"):
        python_placeholders(source)


def test_a_body_with_the_heredoc_delimiter_still_runs() -> None:
    out = run_rendered("x = '''\nSTAX_PYTHON_EOF\n'''\nprint(len(x.split()))", {})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "1\n"


def test_shell_syntax_is_not_expanded() -> None:
    out = run_rendered("print('$HOME `id` $(id)')", {})
    assert out.stdout == "$HOME `id` $(id)\n"


def test_workflow_check_reports_python_problems() -> None:
    wf = Workflow.model_validate(
        {"steps": [{"name": "p", "language": "python", "run": "print('{{n}}', {{m}})"}]}
    )
    with pytest.raises(InvalidWorkflow) as err:
        check(wf, {"n": 1, "m": 2})
    assert "inside a Python string literal" in str(err.value.details)
    ok = Workflow.model_validate(
        {"steps": [{"name": "p", "language": "python", "run": "print({{m}})"}]}
    )
    with pytest.raises(InvalidWorkflow, match="no value is given"):
        check(ok, {})
    check(ok, {"m": 2})
