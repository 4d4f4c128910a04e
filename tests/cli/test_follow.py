"""The one follower (:mod:`jupyter_stax.follow`) on a real LocalService (background engine,
PSI/J's local executor): until final, deadlines, a stop from another thread, and a step's log
across automatic retries, every byte once, whenever the follower starts."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.follow import (
    FollowTimeout,
    LogTail,
    Pacer,
    Poll,
    signature,
    wait_final,
    watch,
)
from jupyter_stax.service import LocalService

from ..proc import kill, pgrep, wait_for

#: three attempts (two automatic retries), each writing its lines over a second
FLAKY = {
    "name": "flaky",
    "steps": [
        {
            "name": "tick",
            "retries": 2,
            "run": 'for i in 1 2 3; do echo "try$STAX_ATTEMPT.$i"; echo "e$STAX_ATTEMPT" >&2; '
            'sleep 0.3; done; [ "$STAX_ATTEMPT" = 3 ]',
        }
    ],
}
ALL = "".join(f"try{a}.{i}\n" for a in (1, 2, 3) for i in (1, 2, 3))


@pytest.fixture
def svc(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalService]:
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    service = LocalService()
    yield service
    service.close()
    kill(pgrep(f"jupyter_stax.engine.daemon --store {service.store_path}"))


def test_poll_pauses_grow_while_nothing_changes_and_reset_on_a_change() -> None:
    stop = threading.Event()
    stop.set()  # pause() returns at once; the pauses it would take are what we look at
    pacer = Pacer(Poll(0.5, 2.0, 2.0), stop)
    seen = []
    for changed in (False, False, False, True, False):
        assert pacer.pause(changed) is False  # stopped
        seen.append(pacer._next)
    assert seen == [1.0, 2.0, 2.0, 0.5, 1.0]
    assert Poll.every(3) == Poll(3, 3, 1.0) and Poll.up_to(0.05) == Poll(0.05, 0.05)
    with pytest.raises(ValueError):
        Poll(2, 1)


def test_wait_final_deadline_and_stop_from_another_thread(svc: LocalService) -> None:
    marker = f"sleep {random.randint(700000, 799999)}"
    ex = svc.submit({"name": "nap", "steps": [{"name": "a", "run": marker}]}, "local")
    try:
        with pytest.raises(FollowTimeout) as e:
            wait_final(svc, ex.id, timeout=0.3, poll=Poll.every(0.1))
        assert e.value.execution.id == ex.id and not e.value.execution.state.final
        assert f"execution {ex.id} is still" in str(e.value) and "(0/1 steps done)" in str(e.value)

        # a wait that would pause 10 minutes between looks ends as soon as `stop` is set
        stop, looked = threading.Event(), threading.Event()
        result: list[ExecutionState] = []
        t = threading.Thread(
            target=lambda: result.append(
                wait_final(
                    svc, ex.id, poll=Poll.every(600), stop=stop, on_look=lambda _x: looked.set()
                ).state
            )
        )
        t.start()
        assert looked.wait(30)
        stop.set()
        t.join(30)
        assert not t.is_alive() and result and not result[0].final
    finally:
        svc.cancel(ex.id)
        kill(pgrep(marker))


def test_watch_yields_changes_until_final(svc: LocalService) -> None:
    ex = svc.submit(FLAKY, "local")
    looks = list(watch(svc, ex.id, poll=Poll(0.05, 0.2), changes_only=True))
    assert looks[-1].state is ExecutionState.COMPLETED and looks[-1].step("tick").attempt == 3
    assert all(not x.state.final for x in looks[:-1])
    assert all(signature(x) != signature(y) for x, y in pairwise(looks))  # changes only
    attempts = [x.step("tick").attempt for x in looks]
    assert attempts == sorted(attempts)  # never backwards


@pytest.mark.parametrize("start", ["at once", "after the first retry", "after the end"])
def test_log_tail_across_retries_every_byte_once(svc: LocalService, start: str) -> None:
    ex = svc.submit(FLAKY, "local")
    if start == "after the first retry":
        wait_for(lambda: svc.get(ex.id).step("tick").attempt >= 2, 60, "attempt 2")
    elif start == "after the end":
        wait_final(svc, ex.id, timeout=60, poll=Poll(0.05, 0.5))
    tail = LogTail(svc, ex.id, "tick", "stdout", attempts="all")
    pieces = list(tail.follow(poll=Poll(0.05, 0.3), timeout=90))
    assert "".join(p.data for p in pieces) == ALL
    assert [p.attempt for p in pieces if p.new_attempt] == [2, 3]
    for a in (1, 2, 3):  # each attempt's pieces are contiguous byte ranges from 0
        mine = [p for p in pieces if p.attempt == a and p.data]
        assert mine[0].start == 0 and all(x.end == y.start for x, y in pairwise(mine))
    assert tail.done and tail.execution is not None
    assert tail.execution.state is ExecutionState.COMPLETED

    # the current attempt only (the monitor), and one attempt (--attempt N --follow)
    current = LogTail(svc, ex.id, "tick", "stderr", attempts="current")
    assert "".join(p.data for p in current.follow(timeout=30)) == "e3\ne3\ne3\n"
    one = LogTail(svc, ex.id, "tick", "stdout", attempts=2)
    assert "".join(p.data for p in one.follow(timeout=30)) == "try2.1\ntry2.2\ntry2.3\n"


def test_log_tail_keeps_only_the_tail_and_reads_in_bounded_looks(svc: LocalService) -> None:
    ex = svc.submit({"name": "big", "steps": [{"name": "a", "run": "seq 1 50000"}]}, "local")
    wait_final(svc, ex.id, timeout=60, poll=Poll(0.05, 0.5))
    size = Path(svc.get(ex.id).step("a").stdout).stat().st_size
    tail = LogTail(svc, ex.id, "a", keep=1000, limit=100, reads=3)
    first = tail.look()
    assert len(first) == 1 and first[0].skipped and first[0].start == size - 1000
    assert first[0].end - first[0].start == 200  # the skip read, then 2 reads of 100 bytes
    assert not tail.done
    rest = list(tail.follow(poll=Poll.every(0.01), timeout=30))
    text = first[0].data + "".join(p.data for p in rest)
    assert text.endswith("49999\n50000\n") and len(text.encode()) == 1000
    assert tail.done and tail.step is not None and tail.step.state is StepState.COMPLETED


def test_log_tail_goes_on_after_reads_that_failed_for_a_while(svc: LocalService) -> None:
    """A read that fails with a 503 (a remote cluster's connection dropped) mid-follow: the
    follower tries again and every byte still comes once; other errors still stop it."""
    from jupyter_stax.core.errors import SchedulerUnavailable

    class Dropping:
        def __init__(self) -> None:
            self.reads = 0
            self.failed = 0

        def read_log(self, *args: object, **kw: object) -> object:
            self.reads += 1
            if self.reads % 3 == 2:  # every third read: the cluster does not answer
                self.failed += 1
                raise SchedulerUnavailable("ssh connection lost; retrying")
            return svc.read_log(*args, **kw)  # type: ignore[arg-type]

        def __getattr__(self, name: str) -> object:
            return getattr(svc, name)

    ex = svc.submit(FLAKY, "local")
    flaky = Dropping()
    tail = LogTail(flaky, ex.id, "tick", "stdout", attempts="all")  # type: ignore[arg-type]
    pieces = list(tail.follow(poll=Poll(0.05, 0.3), timeout=90))
    assert "".join(p.data for p in pieces) == ALL
    assert flaky.failed >= 2 and tail.done
