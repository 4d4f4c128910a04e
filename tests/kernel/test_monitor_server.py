"""The same monitor through a real Jupyter server (``RestService``): the server's engine drives
the run, the monitor only speaks REST (state, log offsets, cancel, retry)."""

from __future__ import annotations

import random

import pytest

from jupyter_stax.client import RestService
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.kernel.monitor import Monitor

from ..proc import kill, pgrep
from ..server.real_server import RealServer
from ..waiting import wait_for


@pytest.fixture
def rest(real_server: RealServer) -> RestService:
    return RestService(real_server.url, real_server.token)


def test_monitor_through_the_rest_api(rest: RestService) -> None:
    flaky = "if [ -e ../flag ]; then echo fine; else touch ../flag; echo boom >&2; exit 5; fi"
    marker = f"sleep {random.randint(500000, 599999)}"
    wf = {
        "name": "rest",
        "steps": [
            {"name": "talk", "run": "for i in 1 2 3; do echo line $i; sleep 0.3; done"},
            {"name": "flaky", "after": ["talk"], "run": flaky},
        ],
    }
    ex = rest.submit(wf, cluster="local")
    m = Monitor(rest, ex.id[:6], interval=0.2)  # a prefix of the id is enough
    try:
        assert m.execution_id == ex.id
        m.wait(60)
        assert m.execution.state is ExecutionState.FAILED
        assert m.log_text == "line 1\nline 2\nline 3\n"
        assert m.progress.bar_style == "danger" and not m.retry_button.disabled
        m.retry_button.click()
        assert m.action is not None
        m.action.result(timeout=60)
        final = m.wait(60)
        assert final.state is ExecutionState.COMPLETED and final.step("flaky").attempt == 2
        assert 'data-step="flaky" data-state="completed" data-attempt="2"' in m.rows["flaky"].value
        m.step_select.value = "flaky"
        m.refresh()
        assert m.log_text == "fine\n"
    finally:
        m.close()

    ex = rest.submit({"name": "slow", "steps": [{"name": "nap", "run": marker}]}, cluster="local")
    m = Monitor(rest, ex.id, interval=0.2)
    try:
        wait_for(lambda: m.execution.step("nap").state is StepState.RUNNING, 30, "running")
        m.cancel_button.click()
        assert m.action is not None
        m.action.result(timeout=60)
        final = m.wait(60)
        assert final.state is ExecutionState.CANCELED
        wait_for(lambda: not pgrep(marker), 10, "the sleep process to be killed")
    finally:
        m.close()
        kill(pgrep(marker))
