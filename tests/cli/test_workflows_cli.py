"""``jupyter stax publish`` and ``jupyter stax workflows trigger`` (the store-direct CLI): a
trigger whose inputs do not fit exits 2 like every other input error of the CLI (an invalid
workflow or parameter, an unknown cluster), listing every problem; nothing is submitted. A
workflow that does not exist is a NotFound, exit 1, like ``status nope``."""

from __future__ import annotations

import pytest

from jupyter_stax.cli import main

from .test_cli import Stax
from .test_cli import cli as cli  # the store-direct `jupyter stax` fixture

DOC = """\
name: sums
params: {n: 2}
inputs:
  label: {type: string, description: a label}
steps:
  - name: add
    run: echo "{{label}} $(( {{n}} + 1 ))"
"""


def test_trigger_with_bad_inputs_exits_2_and_lists_every_problem(
    cli: Stax, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.write("sums.yaml", DOC)
    assert main(["publish", str(cli.cwd / "sums.yaml"), "--version", "1"]) == 0
    assert capsys.readouterr().out.startswith("published sums version 1 (1 steps)")
    # the real command's exit status
    r = cli("workflows", "trigger", "sums", "--input", "n=x", "--input", "extra=1")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.splitlines() == [
        "error: cannot trigger sums (version 1): 3 problems with its inputs",
        "  - unknown input 'extra'; the inputs of sums: n, label",
        "  - input 'n' must be an integer, not string 'x'",
        "  - missing required input label (string, required): a label",
    ]
    # the same mapping, in process: an unknown cluster is an input error too; no name: usage;
    # a workflow that does not exist: NotFound, 1
    for argv, code, said in [
        (["--input", "label=a", "--cluster", "nope"], 2, "nope"),
        ([], 2, "which workflow?"),
    ]:
        name = ["sums"] if argv else []
        assert main(["workflows", "trigger", *name, *argv]) == code, argv
        assert said in capsys.readouterr().err
    assert main(["workflows", "trigger", "nope", "--input", "n=1"]) == 1
    assert "no published workflow 'nope'" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert capsys.readouterr().out.strip() == "no executions"  # nothing was submitted
