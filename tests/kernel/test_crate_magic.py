"""``%stax export-crate`` and ``run.export_crate()`` in a real IPython shell on the real
background engine: the crate of the run the notebook submitted, and a one-line refusal while
an execution runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_stax.kernel.api import Execution

from ..crates import check_crate, ids
from .test_magics import Shell
from .test_magics import shell as shell  # the IPython shell fixture

pytestmark = pytest.mark.timeout(240)


def test_export_crate_magic_and_method(shell: Shell, tmp_path: Path) -> None:
    shell.ok("%%stax_task greet\necho hello {{who}}\n")
    shell.ok("run = %stax_submit --cluster local --param who='a \"b\"' --wait")
    run: Execution = shell.ip.user_ns["run"]
    assert run.state == "completed"
    out = shell.ok(f"%stax export-crate --to {tmp_path / 'magic.zip'}")
    assert out == f"wrote the Workflow Run RO-Crate of {run.id} to {tmp_path / 'magic.zip'}\n"
    g = check_crate(tmp_path / "magic.zip")
    assert [g[i]["value"] for i in ids(g[f"#{run.id}-greet-1"]["object"])] == ['a "b"']
    d = run.export_crate(dir=tmp_path / "method")
    assert d == tmp_path / "method"
    assert (d / "steps/greet/attempt-1/stax.out").read_text() == 'hello a "b"\n'
    check_crate(d)


def test_export_crate_of_a_running_execution_is_one_line(shell: Shell, tmp_path: Path) -> None:
    shell.ok("%%stax_task slow\nsleep 60\n")
    shell.ok("run = %stax_submit --cluster local")
    run: Execution = shell.ip.user_ns["run"]
    line = shell.fails(f"%stax export-crate {run.id} --to {tmp_path / 'x.zip'}")
    assert line.startswith("UsageError: %stax export-crate: execution") and "still" in line
    assert not (tmp_path / "x.zip").exists()
    run.cancel()
    run.wait(60, check=False)
