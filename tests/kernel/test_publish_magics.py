"""``%stax publish``, ``%stax workflows`` and ``%stax rerun`` (and ``stax.rerun``) in an IPython
shell on the test's store, on the local cluster: bad input is one line, nothing runs."""

from __future__ import annotations

import pytest

import jupyter_stax as stax
from jupyter_stax.kernel.api import Execution
from jupyter_stax.service import LocalService

from .test_magics import Shell
from .test_magics import shell as shell  # the IPython shell fixture

pytestmark = pytest.mark.timeout(120)


def test_publish_trigger_and_rerun_from_magics(shell: Shell, svc: LocalService) -> None:
    shell.ok('%%stax_task hello\nfor i in $(seq {{n}}); do echo "hi {{who}} $i"; done\n')
    out = shell.ok(
        "%stax publish --name greet --param n=2 --param who=you --describe n='how many'"
    )
    assert out.splitlines() == [
        "published greet version 1 (1 steps)",
        "  n (integer, default 2): how many",
        "  who (string, default 'you')",
    ]
    assert "greet version 1 is published already" in shell.fails(
        "%stax publish --name greet --version 1"
    )
    assert shell.ok("%stax workflows").strip() == "greet (version 1): n, who"
    line = shell.fails("%stax workflows trigger greet --input n=x --input nope=1")
    assert "unknown input 'nope'" in line and "input 'n' must be an integer, not string 'x'" in line
    assert shell.count() == 0  # nothing ran

    shell.ok("run = %stax workflows trigger greet --input n=3 --input who='a b'")
    run: Execution = shell.ip.user_ns["run"]
    assert run.wait(60).logs("hello") == "hi a b 1\nhi a b 2\nhi a b 3\n"
    assert run.model.origin is not None and run.model.origin.workflow == "greet"

    out = shell.ok("again = %stax rerun --param n=1")  # the last execution by default
    again: Execution = shell.ip.user_ns["again"]
    assert out.splitlines()[0] == f"submitted {again.id}, a re-run of {run.id}"
    assert again.wait(60).logs("hello") == "hi a b 1\n"
    third = stax.rerun(run, params={"who": "c"}, service=svc)
    assert third.wait(60).logs("hello") == "hi c 1\nhi c 2\nhi c 3\n"
    assert [w.name for w in stax.workflows(service=svc)] == ["greet"]
    shell.ip.user_ns.pop("again", None)
