"""Python steps: placeholders in code become typed ``stax_param()`` calls, placeholders inside
string literals are refused, and the rendered bash runs the body with a real python3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_stax.core.dag import check
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.models import Workflow
from jupyter_stax.core.params import PLACEHOLDER_RE, ParamError
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


def python_body(script: str) -> str:
    """The Python source that a rendered step feeds ``python3`` (between the heredoc lines)."""
    lines = script.splitlines(keepends=True)
    return "".join(lines[3:-1])


#: f-strings on every Python: a placeholder anywhere between an f-string's quotes (its
#: replacement fields included, where Python >= 3.12 tokenizes code) is refused, with the line
#: it is on (an int); next to one it is code (the names found, in first-use order).
F_STRING_CASES: list[tuple[str, list[str] | int]] = [
    ('x = f"{ {{n}} }"', 1),
    ("x = f'{ {{n}} }'", 1),
    ('x = f"{ {{n}} !r}"', 1),
    ('x = f"{ {{n}} = }"', 1),
    ('x = f"{x:{{n}}}"', 1),
    ('x = f"{x:>{ {{n}} }}"', 1),
    ('x = rf"{ {{n}} }"', 1),
    ('x = F"a{ {{n}} + 1}b"', 1),
    ('x = f"{{{{n}}}}"', 1),
    ("x = f\"{f'{ {{n}} }'}\"", 1),
    ('x = f"""{\n{{n}}\n}"""', 2),
    ('x = f"{y}" f"{ {{n}} }"', 1),
    ('x = f"{y}"\nprint(f"{ {{n}} }")', 2),
    ('print(f"{x}", {{n}})', ["n"]),
    ('x = f"{y}" + str({{n}}) + f"{z}"', ["n"]),
    ("x = f\"{f'{y}'}\"\nz = {{n}}", ["n"]),
    ('x = {{a}}\ny = f"""\n{x}\n"""\nz = {{b}}', ["a", "b"]),
    ('x = f"{y!r:>10}" if {{n}} else f"{{}}"', ["n"]),
]


@pytest.mark.parametrize(("source", "expected"), F_STRING_CASES)
def test_f_strings_behave_alike_on_every_python(source: str, expected: list[str] | int) -> None:
    if isinstance(expected, int):
        with pytest.raises(ParamError, match=rf"line {expected}: placeholder \{{\{{n\}}\}} inside"):
            python_placeholders(source)
    else:
        assert python_placeholders(source) == expected
        body = python_body(render_python_step(source))
        assert not PLACEHOLDER_RE.search(body)  # every placeholder became a stax_param() call
        compile(body, "<python step>", "exec")  # and the result is Python on this version


def test_f_string_fields_read_values_as_data() -> None:
    out = run_rendered(
        "n = {{n}}\nprint(f\"{n + 1}|{stax_params['s']!r}|{stax_param('s')}\")",
        {"n": 41, "s": "{{n}} $(id)"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "42|'{{n}} $(id)'|{{n}} $(id)\n"


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


def test_run_from_its_file_the_body_is_read_in_one_go(tmp_path: Path) -> None:
    """A job runs the step from its file: Python then reads the body from the file in one
    read (``-c``), not the heredoc a byte at a time; what the body sees (``sys.argv``, typed
    parameters, the line numbers of a traceback) is what the heredoc gives."""
    source = (
        "import sys\nprint(sys.argv, {{n}}, sys.orig_argv[1])\n"
        "x = '''\nSTAX_PYTHON_EOF\n'''\n"  # the delimiter in the body: another delimiter
        "raise KeyError(len(x))\n"
    )
    script = render_python_step(source)
    (tmp_path / "stax.step.sh").write_text(script)
    env = {"PATH": "/usr/bin:/bin", PARAMS_JSON_ENV: json.dumps({"n": 7}),
           "STAX_PYTHON": sys.executable}

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env,
                              timeout=30)

    from_file = run(["bash", "-c", '. ./stax.step.sh a "b c"'])
    heredoc = run(["bash", "-c", script, "x", "a", "b c"])
    assert from_file.stdout == "['-', 'a', 'b c'] 7 -c\n"  # started with -c: read in one go
    assert heredoc.stdout == "['-', 'a', 'b c'] 7 -\n"
    assert from_file.returncode == heredoc.returncode == 1
    where = 'File "<stdin>", line 11, in <module>\nKeyError: 17\n'
    assert from_file.stderr.endswith(where) and heredoc.stderr.endswith(where)
