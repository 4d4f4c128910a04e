"""The live monitor widget on a real LocalService (background engine, PSI/J's local executor):
widget values, Cancel and Retry through the buttons' click handlers, log tailing, errors, and
that polling never blocks an event loop."""

from __future__ import annotations

import asyncio
import copy
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.errors import SchedulerUnavailable
from jupyter_stax.core.models import Execution
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.kernel.monitor import LOG_KEEP, Monitor
from jupyter_stax.service import LocalService

from ..proc import kill, pgrep
from ..waiting import NotYet, gate, wait_for

DIAMOND = {
    "name": "diamond",
    "description": "a <b>small</b> diamond",
    "steps": [
        {"name": "talk", "run": "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"},
        {"name": "b.x", "after": ["talk"], "run": "echo b; echo warn >&2"},
        {"name": "c-y", "after": ["talk"], "run": "echo c"},
        {"name": "d", "after": ["b.x", "c-y"], "run": "echo d"},
    ],
}


def refresh_until_final(m: Monitor, timeout: float = 60) -> Execution:
    return wait_for(
        lambda: ((ex := m.refresh()).state.final and ex) or NotYet(ex.state.value),
        timeout,
        f"execution {m.execution_id} to end",
        interval=0.2,
    )


def row(m: Monitor, step: str) -> str:
    """The HTML of a step's row (its data-* attributes carry the values)."""
    value: str = m.rows[step].value
    return value


def test_refresh_follows_a_run_to_completion(svc: LocalService, tmp_path: Path) -> None:
    # talk stops after its first line until the test has seen that line in the pane: the run
    # cannot be over (or past line 5) before the monitor looked, however slow the machine
    go = tmp_path / "go"
    wf = copy.deepcopy(DIAMOND)
    wf["steps"][0]["run"] = (
        f"echo line 1; {gate(go)}; for i in 2 3 4 5; do sleep 0.3; echo line $i; done"
    )
    ex = svc.submit(wf, cluster="local")
    m = Monitor(svc, ex.id, start=False)
    try:
        assert not m.polling
        assert m.progress.max == 4 and m.progress.bar_style == "info"
        assert not m.cancel_button.disabled and m.retry_button.disabled
        assert "s0 --> s1" in m.mermaid
        seen_partial = wait_for(
            lambda: (
                (m.refresh() and m.log_text.startswith("line 1\n") and "line 5" not in m.log_text)
                or NotYet(m.log_text)
            ),
            60,
            "the log pane to show talk's first line while it runs",
        )
        go.touch()
        refresh_until_final(m)
        assert seen_partial, "the log pane did not show the step's output while it ran"
        done = m.execution
        assert done.state is ExecutionState.COMPLETED
        assert (m.progress.value, m.progress.max) == (4, 4)
        assert m.progress.bar_style == "success"
        assert m.progress.description == "4/4 steps done"
        for s in done.steps:
            line = row(m, s.name)
            assert f'data-step="{s.name}" data-state="completed" data-attempt="1"' in line
            assert s.native_id and f'data-job="{s.native_id}" data-exit="0"' in line
            assert f"<code>{s.native_id}</code>" in line and ">completed</span>" in line
        assert m.cancel_button.disabled and m.retry_button.disabled
        assert m.log_text == "".join(f"line {i}\n" for i in range(1, 6))
        assert m.dag.value.count("<rect") == 4 and 'data-state="completed"' in m.dag.value
        assert "  class s3 completed" in m.mermaid
        assert ex.id in m.header.value and "&lt;b&gt;" not in m.header.value
        assert "<b>diamond</b>" in m.header.value

        # another step and stream: the pane starts over with that log
        m.step_select.value = "b.x"
        m.stream_select.value = "stderr"
        m.refresh()
        assert m.log_text == "warn\n"
        assert 'data-step="b.x" data-stream="stderr"' in m.log_view.value

        bundle = m._repr_mimebundle_()
        assert bundle["text/plain"].startswith(f"execution  {ex.id}\n")
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert repr(m) == f"<Monitor of execution {ex.id}: completed, 4/4 steps done>"
    finally:
        m.close()


def test_background_polling_stops_by_itself_when_final(svc: LocalService) -> None:
    ex = svc.submit(DIAMOND, cluster="local")
    m = Monitor(svc, ex.id, interval=0.1)
    try:
        assert m.polling and m._thread is not None  # no event loop here: a daemon thread
        wait_for(lambda: m.execution.state.final, 60, "the monitor to see the end")
        wait_for(lambda: not m.polling, 5, "polling to stop")
        assert m.progress.value == 4 and m.progress.bar_style == "success"
        assert m.log_text.endswith("line 5\n")  # the last read came after the end
    finally:
        m.close()


class Held:
    """The service with ``cancel`` held until the test releases it: what the monitor shows
    while an action is under way can be looked at before the action ends."""

    def __init__(self, inner: LocalService) -> None:
        self.inner = inner
        self.release = threading.Event()

    def cancel(self, execution_id: str) -> Execution:
        assert self.release.wait(60), "the test never released the cancel"
        return self.inner.cancel(execution_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_cancel_button_kills_the_running_step(svc: LocalService) -> None:
    marker = f"sleep {random.randint(300000, 399999)}"
    ex = svc.submit(
        {
            "name": "slow",
            "steps": [
                {"name": "nap", "run": marker},
                {"name": "after", "run": "true", "after": ["nap"]},
            ],
        },
        cluster="local",
    )
    held = Held(svc)
    m = Monitor(held, ex.id, interval=0.2)  # type: ignore[arg-type]
    try:
        wait_for(lambda: m.execution.step("nap").state is StepState.RUNNING, 30, "the step to run")
        wait_for(lambda: pgrep(marker), 10, "the sleep process")
        assert not m.cancel_button.disabled
        m.cancel_button.click()
        assert m.cancel_button.disabled  # at once, while the service works
        assert "canceling" in m.message.value
        assert m.action is not None
        held.release.set()
        m.action.result(timeout=90)
        assert m.execution.state is ExecutionState.CANCELED
        assert m.progress.bar_style == "warning"
        assert 'data-kind="ok"' in m.message.value and "execution canceled" in m.message.value
        assert 'data-state="canceled"' in row(m, "nap")
        assert m.cancel_button.disabled and not m.retry_button.disabled
        wait_for(lambda: not pgrep(marker), 10, "the sleep process to be killed")
        assert svc.get(ex.id).state is ExecutionState.CANCELED
        wait_for(lambda: not m.polling, 10, "polling to stop")
    finally:
        held.release.set()
        m.close()
        kill(pgrep(marker))


def test_retry_failed_button_runs_the_failed_steps_again(svc: LocalService) -> None:
    flaky = "if [ -e ../flag ]; then echo fine; else touch ../flag; echo boom >&2; exit 4; fi"
    wf = {
        "name": "flaky",
        "steps": [{"name": "f", "run": flaky}, {"name": "g", "after": ["f"], "run": "echo g"}],
    }
    ex = svc.submit(wf, cluster="local")
    m = Monitor(svc, ex.id, start=False)
    try:
        m.stream_select.value = "stderr"
        refresh_until_final(m)
        assert m.execution.state is ExecutionState.FAILED
        assert m.progress.bar_style == "danger" and m.progress.value == 2
        assert 'data-state="failed"' in row(m, "f") and 'data-exit="4"' in row(m, "f")
        assert 'data-state="skipped"' in row(m, "g")
        assert "upstream step" in row(m, "g")
        assert m.log_text == "boom\n"
        assert m.cancel_button.disabled and not m.retry_button.disabled

        m.retry_button.click()
        assert m.retry_button.disabled
        assert m.action is not None
        m.action.result(timeout=90)
        assert "retrying 2 step(s): f, g" in m.message.value
        assert m.polling  # the retry follows the new attempts
        final = m.wait(60)
        assert final.state is ExecutionState.COMPLETED
        assert m.progress.bar_style == "success" and m.retry_button.disabled
        f = final.step("f")
        assert f.attempt == 2 and f.history[0].exit_code == 4
        assert 'data-attempt="2"' in row(m, "f")
        assert m.log_text == ""  # stderr of attempt 2
        m.stream_select.value = "stdout"
        m.refresh()
        assert m.log_text == "fine\n"
    finally:
        m.close()


class Flaky:
    """A service that fails when told to (the StaxService protocol by delegation)."""

    def __init__(self, inner: LocalService) -> None:
        self.inner = inner
        self.down = False
        self.delay = 0.0
        self.threads: set[str] = set()

    def get(self, execution_id: str) -> Execution:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.down:
            raise SchedulerUnavailable("the server does not answer", details=["try later"])
        return self.inner.get(execution_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_service_errors_show_in_the_message_line(svc: LocalService) -> None:
    ex = svc.submit({"name": "quick", "steps": [{"name": "a", "run": "echo hi"}]}, cluster="local")
    flaky = Flaky(svc)
    m = Monitor(flaky, ex.id, start=False)  # type: ignore[arg-type]
    try:
        refresh_until_final(m)
        flaky.down = True
        with pytest.raises(SchedulerUnavailable):
            m.refresh()
        assert m.message.value.count("\n") == 0
        assert "cannot read the execution: the server does not answer; try later" in (
            m.message.value
        )
        assert 'data-kind="error"' in m.message.value
        assert m.execution.state is ExecutionState.COMPLETED  # what was shown stays
        flaky.down = False
        m.refresh()
        assert m.message.value == ""  # cleared once the service answers again

        # a refused action: an error line, no traceback, the buttons as before
        m.cancel().result(timeout=30)
        assert f"cancel failed: execution {ex.id} is already completed" in m.message.value, (
            m.message.value
        )
        assert m.cancel_button.disabled
    finally:
        m.close()


def test_log_pane_shows_undecodable_bytes_and_drops_terminal_colours(svc: LocalService) -> None:
    run = r"printf 'caf\xc3\xa9 \xff\xfe ok\n\033[1;31mred\033[0m\n'"
    ex = svc.submit({"name": "bytes", "steps": [{"name": "a", "run": run}]}, cluster="local")
    m = Monitor(svc, ex.id, start=False)
    try:
        m.wait(60)
        assert m.log_text == "café \ufffd\ufffd ok\nred\n"
        m.log_view.value.encode("utf-8")  # sendable to the frontend as it is
    finally:
        m.close()


def test_unknown_execution_is_an_error_at_creation(svc: LocalService) -> None:
    from jupyter_stax.core.errors import NotFound

    with pytest.raises(NotFound):
        Monitor(svc, "nope")


def test_log_pane_keeps_the_tail_of_a_big_log(svc: LocalService) -> None:
    ex = svc.submit(
        {"name": "big", "steps": [{"name": "a", "run": "seq 1 200000"}]}, cluster="local"
    )
    m = Monitor(svc, ex.id, start=False)
    try:
        refresh_until_final(m)
        size = Path(svc.get(ex.id).step("a").stdout).stat().st_size
        assert size > 5 * LOG_KEEP
        m.wait(30)
        logged = m.log_text
        assert len(logged) <= LOG_KEEP
        assert logged.endswith("199999\n200000\n")
        first = logged.split("\n", 1)[0]
        assert first.isdigit() and int(first) > 1  # whole lines from the tail
        numbers = [int(n) for n in logged.split()]
        assert numbers == list(range(numbers[0], 200001))
        assert "earlier output cut" in m.log_view.value
    finally:
        m.close()


def test_polling_never_blocks_the_event_loop(svc: LocalService) -> None:
    """In a kernel the poll is an asyncio task; a slow service must not stall the loop, and
    widgets are updated on the loop's thread."""
    ex = svc.submit(
        {"name": "naps", "steps": [{"name": "a", "run": "sleep 2; echo done"}]}, cluster="local"
    )
    slow = Flaky(svc)

    async def main() -> tuple[float, set[str], bool, Monitor]:
        m = Monitor(slow, ex.id, interval=0.05)  # type: ignore[arg-type]
        updated_on: set[str] = set()
        m.header.observe(lambda _c: updated_on.add(threading.current_thread().name), "value")
        is_task = isinstance(m._task, asyncio.Task)
        slow.delay = 1.0  # every get() now takes a second
        worst, last = 0.0, time.monotonic()
        while m.polling:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst, last = max(worst, now - last), now
        return worst, updated_on, is_task, m

    worst, updated_on, is_task, m = asyncio.run(asyncio.wait_for(main(), 90))
    try:
        assert is_task
        assert m.execution.state is ExecutionState.COMPLETED and m.log_text == "done\n"
        assert worst < 0.5, f"the event loop stalled for {worst:.2f} s"
        assert updated_on == {threading.main_thread().name}
        assert any(t.startswith("stax-monitor") for t in slow.threads)
    finally:
        m.close()


def test_close_stops_polling_and_closes_the_widgets(svc: LocalService) -> None:
    marker = f"sleep {random.randint(400000, 499999)}"
    ex = svc.submit({"name": "long", "steps": [{"name": "a", "run": marker}]}, cluster="local")
    m = Monitor(svc, ex.id, interval=0.1)
    try:
        assert m.polling
        parts = [m.progress, m.cancel_button, m.log_view, m.rows["a"]]
        m.close()
        wait_for(lambda: not m.polling, 5, "polling to stop")
        assert m.comm is None and all(w.comm is None for w in parts)
        m.close()  # twice is fine
    finally:
        svc.cancel(ex.id)
        kill(pgrep(marker))


def test_kernel_package_imports_no_widgets_until_asked() -> None:
    code = (
        "import sys, jupyter_stax.kernel, jupyter_stax.kernel.display, jupyter_stax.core.dagview\n"
        "print(','.join(m for m in ('ipywidgets', 'IPython', 'psij') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_buttons_follow_the_execution_state_like_the_sidebar(svc: LocalService) -> None:
    """Cancel only while the execution runs (orange only then: a disabled button has no
    colour, as in the sidebar's detail tab); Retry once it is final with a retryable step."""

    def buttons(m: Monitor) -> tuple[bool, str, bool]:
        return m.cancel_button.disabled, m.cancel_button.button_style, m.retry_button.disabled

    marker = f"sleep {random.randint(600000, 699999)}"
    running = svc.submit({"name": "nap", "steps": [{"name": "a", "run": marker}]}, "local")
    ok = svc.submit({"name": "ok", "steps": [{"name": "a", "run": "echo ok"}]}, "local")
    bad = svc.submit({"name": "bad", "steps": [{"name": "a", "run": "exit 3"}]}, "local")
    monitors = {ex.id: Monitor(svc, ex.id, start=False) for ex in (running, ok, bad)}
    try:
        m = monitors[running.id]
        wait_for(lambda: m.refresh().step("a").state is StepState.RUNNING, 30, "the step to run")
        assert buttons(m) == (False, "warning", True)  # running: Cancel enabled, orange

        m = monitors[ok.id]
        assert refresh_until_final(m).state is ExecutionState.COMPLETED
        assert buttons(m) == (True, "", True)  # completed: nothing to cancel or retry

        m = monitors[bad.id]
        assert refresh_until_final(m).state is ExecutionState.FAILED
        assert buttons(m) == (True, "", False)  # failed: Retry enabled

        svc.cancel(running.id)
        m = monitors[running.id]
        assert refresh_until_final(m).state is ExecutionState.CANCELED
        assert buttons(m) == (True, "", False)  # canceled steps can run again
    finally:
        for m in monitors.values():
            m.close()
        kill(pgrep(marker))
