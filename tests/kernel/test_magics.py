"""The magics in a real IPython shell (in this process), driving the real background engine on
``local`` and the real Slurm: a 3-step DAG defined by cells, submitted, waited for; every kind of
bad input is one line and submits nothing; ``%stax`` subcommands; the plain Python API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.getipython import get_ipython
from IPython.testing.globalipapp import start_ipython

from jupyter_stax.core.assignments import parse_value as parse_param_value
from jupyter_stax.kernel.api import Execution, ExecutionFailed, Workflow
from jupyter_stax.kernel.magics import StaxMagics
from jupyter_stax.service import LocalService

from ..waiting import wait_for

pytestmark = pytest.mark.timeout(240)


class Shell:
    """An IPython shell with fresh magics on the test's store; ``run`` gives (result, out,
    err) of one cell."""

    def __init__(self, svc: LocalService, capsys: pytest.CaptureFixture[str]) -> None:
        self.ip: Any = start_ipython() or get_ipython()  # one shell per test session
        self.magics = StaxMagics(self.ip, service=svc)
        self.magics.register()
        self.capsys = capsys
        self.svc = svc

    def run(self, cell: str) -> tuple[Any, str, str]:
        self.capsys.readouterr()
        result = self.ip.run_cell(cell)
        out, err = self.capsys.readouterr()
        return result, out, err

    def ok(self, cell: str) -> str:
        result, out, err = self.run(cell)
        assert result.error_in_exec is None and result.error_before_exec is None, err
        return out

    def fails(self, cell: str) -> str:
        """The one-line UsageError a bad cell gives."""
        result, out, err = self.run(cell)
        assert result.error_in_exec is not None, out
        assert type(result.error_in_exec).__name__ == "UsageError", repr(result.error_in_exec)
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        return lines[0]

    def count(self) -> int:
        return len(self.svc.list(limit=1000)[0])


@pytest.fixture
def shell(svc: LocalService, capsys: pytest.CaptureFixture[str]) -> Iterator[Shell]:
    sh = Shell(svc, capsys)
    yield sh
    sh.ip.user_ns.pop("run", None)


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def target(request: pytest.FixtureRequest) -> str:
    if request.param == "slurm":
        request.getfixturevalue("slurm")
    return str(request.param)


SUMS = [
    "%%stax_task make --time 00:05:00\nseq {{n}} > numbers.txt\n",
    "%%stax_task total --after make --ntasks 1\nawk '{s+=$1} END {print s}' ../make/numbers.txt\n",
    "%%stax_task report --python --after total\n"
    "from pathlib import Path\n"
    "total = int(Path('../total/stax.out').read_text())\n"
    "print('mean', total / {{n}}, 'of', stax_params['n'])\n",
]


def test_a_dag_of_cells_runs_to_the_end(shell: Shell, target: str) -> None:
    out = shell.ok(SUMS[0])
    assert out.splitlines()[0] == "step make defined: bash, 1 line; time=00:05:00"
    shell.ok(SUMS[1])
    out = shell.ok(SUMS[2])
    assert "step report defined after total: python, 3 lines" in out
    assert "3 step(s): make, total, report" in out

    shell.ok(f"run = %stax_submit --cluster {target} --param n=10")
    run: Execution = shell.ip.user_ns["run"]
    assert isinstance(run, Execution) and run.cluster == target
    run.wait(180)
    assert [(s.name, s.state.value, s.exit_code) for s in run.steps] == [
        ("make", "completed", 0),
        ("total", "completed", 0),
        ("report", "completed", 0),
    ]
    assert run.logs("total") == "55\n"
    assert run.logs("report") == "mean 5.5 of 10\n"
    if target == "slurm":
        assert all(s.native_id and s.native_id.isdigit() for s in run.steps)

    # %stax subcommands default to the last execution
    assert shell.ok("%stax logs total") == "55\n"
    assert shell.ok(f"%stax logs {run.id[:6]} report") == "mean 5.5 of 10\n"
    status = shell.ok("%stax status")
    assert f"execution  {run.id}" in status and "completed (3/3 steps done)" in status
    listed = shell.ok("%stax list")
    assert run.id in listed and "notebook" in listed and "3/3" in listed
    clusters = shell.ok("%stax clusters")
    assert clusters.splitlines()[0].split()[:2] == ["NAME", "SCHEDULER"]
    assert any(line.split()[:2] == ["slurm", "slurm"] for line in clusters.splitlines())


def test_bad_input_is_one_line_and_submits_nothing(shell: Shell) -> None:
    shell.ok("%%stax_task a\necho {{n}}\n")
    before = shell.count()
    cases = {
        "%%stax_task b --bogus 1\necho\n": "unrecognized arguments: --bogus",
        "%%stax_task b --ntasks many\necho\n": "argument --ntasks: invalid int value: 'many'",
        "%%stax_task b --time soon\necho\n": "step 'b' is not valid: time",
        "%%stax_task b\n\n": "step 'b' is not valid: a step needs 'run' (a bash script)",
        "%stax_submit --bogus": "unrecognized arguments: --bogus",
        "%stax_submit --param n": "--param expects KEY=VALUE, got 'n'",
        "%stax_submit --param n=1 --cluster nowhere": "unknown cluster 'nowhere'",
        "%stax_submit": "step 'a' uses {{n}} but no value is given",
        "%stax_submit zzz --param n=1": "unknown step(s) zzz; steps: a",
        "%stax frobnicate": "unknown subcommand 'frobnicate'",
        "%stax status nonexistent": "no execution",
        '%stax_submit --param n=1 --cluster "unclosed': "cannot read the options",
    }
    for cell, expected in cases.items():
        line = shell.fails(cell)
        assert expected in line, (cell, line)
        assert line.startswith("UsageError: %"), line
    # an unknown step in --after, and a cycle: found at submission, named
    shell.ok("%%stax_task b --after nothere\necho b\n")
    line = shell.fails("%stax_submit --param n=1")
    assert "step 'b' depends on unknown step 'nothere'" in line
    shell.ok("%%stax_task b --after c\necho b\n")
    shell.ok("%%stax_task c --after b\necho c\n")
    line = shell.fails("%stax_submit --param n=1")
    assert "the steps form a cycle: b -> c -> b" in line or "c -> b -> c" in line
    # steps outside the cycle still go, alone
    shell.ok("run = %stax_submit a --param n=1 --no-monitor")
    assert [s.name for s in shell.ip.user_ns["run"].steps] == ["a"]
    assert shell.count() == before + 1


def test_wait_fails_with_the_reason(shell: Shell) -> None:
    shell.ok("%%stax_task boom\necho doomed >&2; exit 3\n")
    shell.ok("%%stax_task after --after boom\necho never\n")
    line = shell.fails("run = %stax_submit --wait --timeout 60")
    assert "failed: boom failed, after skipped" in line
    assert "boom: failed" in line and "after: skipped" in line
    assert shell.ok("%stax logs boom --stderr") == "doomed\n"
    ex = shell.magics.last
    assert ex is not None and ex.state == "failed"
    # fix the step, retry the failed ones from the notebook
    out = shell.ok(f"%stax retry {ex.id}")
    assert out.startswith(f"retrying 2 step(s) of {ex.id}: boom, after")


def test_redefine_remove_reset_show_and_export(shell: Shell, tmp_path: Path) -> None:
    shell.ok("%%stax_task a --env GREETING='hello world' --param who=me\necho $GREETING {{who}}\n")
    out = shell.ok("%%stax_task a --retries 2 --mem 1G\necho again\n")
    assert out.startswith("step a redefined: bash, 1 line; memory=1G; retries=2")
    shell.ok("%%stax_task b --after a\necho b\n")
    assert "run: |\n    echo again\n" in shell.ok("%stax show")
    path = tmp_path / "nb.yaml"
    assert shell.ok(f"%stax export {path}").startswith(f"wrote {path} (2 steps)")
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.startswith("ok: 2 steps (a -> b)"), done
    assert Workflow.load(path).to_dict() == shell.magics.workflow.to_dict()
    assert shell.ok("%stax remove b") == "removed step b; 1 left\n"
    assert "no step 'b'" in shell.fails("%stax remove b")
    shell.ok("%stax reset")
    assert "has no steps yet" in shell.fails("%stax_submit")


def test_hostile_parameters_stay_data(shell: Shell, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    shell.ok("%%stax_task sh\nprintf '%s\\n' {{v}}\n")
    shell.ok("%%stax_task py --python\nprint({{v}})\n")
    hostile = f"$(touch {marker}); `touch {marker}`'\"; touch {marker}"
    shell.ip.user_ns["hostile"] = hostile
    shell.ok("import shlex")
    shell.ok("run = %stax_submit --param v={shlex.quote(hostile)} --no-monitor --wait --timeout 60")
    run = shell.ip.user_ns["run"]
    assert run.logs("sh") == hostile + "\n"
    assert run.logs("py") == hostile + "\n"
    assert not marker.exists()


def test_param_values() -> None:
    assert parse_param_value("10") == 10 and parse_param_value("1.5") == 1.5
    assert parse_param_value("true") is True and parse_param_value("x y") == "x y"
    assert parse_param_value('"10"') == "10" and parse_param_value("[1]") == "[1]"
    assert parse_param_value("$(id)") == "$(id)"


def test_plain_python_api(svc: LocalService) -> None:
    wf = Workflow("api")
    wf.step("long", "echo started; sleep 60")
    wf.step("quick", "echo {{greeting}}", params={"greeting": "hi there"})
    run = wf.submit("local", service=svc, steps=["quick"])
    assert [s.name for s in run.steps] == ["quick"]
    assert run.wait(60).logs("quick") == "hi there\n"
    long = wf.submit("local", service=svc, steps=["long"])
    wait_for(lambda: long.refresh().logs("long"), 60, "the long step's first line")
    long.cancel()
    with pytest.raises(ExecutionFailed, match="canceled"):
        long.wait(60)
    assert long.state == "canceled"
    again = Execution.attach(long.id[:5], svc)
    assert again.id == long.id and again.state == "canceled"
    assert "canceled" in repr(again) and f'data-id="{again.id}"' in again._repr_html_()


def test_software_description_step(shell: Shell, tmp_path: Path) -> None:
    desc = tmp_path / "hello.json"
    desc.write_text(
        '{"execution": {"type": "binary", "binary": "echo", "args": "hello {{who}} $STAX_STEP"},'
        ' "prolog": {"binary": "echo", "args": "prolog"}}'
    )
    out = shell.ok(f"%stax_task sw --software {desc} --param who='a b'")
    assert out.startswith("step sw defined: eFlows4HPC software hello.json")
    assert "leave the cell body empty" in shell.fails(f"%%stax_task sw --software {desc}\necho x\n")
    assert "no such file" in shell.fails(f"%stax_task sw --software {tmp_path}/nope.json")
    assert "use %%stax_task NAME (two %)" in shell.fails("%stax_task sw")
    shell.ok("run = %stax_submit --no-monitor --wait --timeout 60")
    assert shell.ip.user_ns["run"].logs("sw") == "prolog\nhello a b sw\n"


def test_sweep_cell_defines_a_sweep_and_bad_sweeps_are_one_line(shell: Shell) -> None:
    out = shell.ok(
        "%%stax_task sim --sweep n=1,2,4,8 --sweep seed=0..2499 --max-parallel 20 --pack 5\n"
        "echo {{n}} {{seed}}\n"
    )
    assert "sweep n: 4 x seed: 2,500 = 10,000 instances" in out
    step = shell.magics.workflow.step("sim", "echo {{n}} {{seed}}\n", sweep=None)  # redefine
    assert step.sweep is None
    shell.ok("%%stax_task sim --sweep 'v=$(id),`id`' --sweep zip\necho {{v}}\n")
    assert shell.magics.workflow.steps[-1].sweep == {"v": ["$(id)", "`id`"], "zip": True}
    before = shell.count()
    cases = {
        "%%stax_task b --sweep n\necho {{n}}\n": "--sweep expects NAME=VALUES",
        "%%stax_task b --sweep a=1,2 --sweep b=1 --sweep zip\necho\n": "a has 2, b has 1",
        "%%stax_task b --max-parallel 3\necho\n": "apply to a --sweep step",
        "%%stax_task b --sweep n=1 --pack lots\necho\n": "--pack takes auto or N, got 'lots'",
        "%%stax_task b --sweep n=0..99999 --sweep m=1,2\necho\n": "200,000 instances",
    }
    for cell, expected in cases.items():
        assert expected in shell.fails(cell), cell
    assert shell.count() == before


def test_python_api_sweep() -> None:
    wf = Workflow("sweepy")
    step = wf.step("sim", "echo {{n}} {{seed}}", sweep={"n": [1, 2], "seed": range(0, 50)})
    assert step.sweep == {"n": [1, 2], "seed": {"range": [0, 50, 1]}, "zip": False}
    assert step.pack == "auto" and step.max_parallel is None
    step = wf.step("sim", "echo {{n}}", sweep={"n": [1, 2]}, max_parallel=1, pack=2)
    assert (step.max_parallel, step.pack) == (1, 2)
