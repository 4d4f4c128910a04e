"""The local service and the REST service give the same answer to the same request.

Both serve ONE store: a real ``jupyter server`` (``tests/server/real_server.py``) drives it and
answers over REST (:class:`RestService`); :class:`LocalService` reads the same store directly.
Each request is asked of both; the answers (a value, or the error's class and message) must be
equal, and they must be the answer we expect (so two equally wrong services do not pass). Both
sides run the ONE operations layer (``jupyter_stax.operations``): log chunks (the strict reader:
a ``stax.out`` that links out of its step directory is refused by both), paging with cursors,
cluster detail, step lookup and the retry precondition.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.client import RestService
from jupyter_stax.core.api import ExecutionSummary
from jupyter_stax.core.errors import StaxError
from jupyter_stax.core.models import Execution
from jupyter_stax.service import LocalService, StaxService

from ..proc import kill, wait_for
from ..server.real_server import RealServer
from .test_cli import Stax

FLAKY = {
    "name": "flaky",
    "steps": [
        {"name": "a", "run": "printf 'h\\303\\251llo\\n'; echo oops >&2; exit 1"},
        {"name": "b", "after": ["a"], "run": "echo b"},
    ],
}
ONE = [{"name": "a", "run": "true"}]


@dataclass
class Both:
    local: LocalService
    rest: RestService
    server: RealServer

    def ask(self, request: Callable[[StaxService], Any]) -> Any:
        """The answer of both services to ``request``; fails unless they are equal."""
        a, b = answer(self.local, request), answer(self.rest, request)
        assert a == b, f"local: {a!r}\nREST:  {b!r}"
        return a


def answer(svc: StaxService, request: Callable[[StaxService], Any]) -> Any:
    """What ``request`` gives: a comparable value, or ``(error class name, message)``."""
    try:
        got = request(svc)
    except StaxError as e:
        return type(e).__name__, e.message
    return comparable(got)


def comparable(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(comparable(v) for v in value)
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


@pytest.fixture
def both(
    stax_env: Path, real_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Both]:
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    local = LocalService(real_server.store)
    yield Both(local, RestService(real_server.url, real_server.token), real_server)
    local.close()
    kill(Stax(stax_env, real_server.store).daemon_pids())


def listed(svc: StaxService, **kw: Any) -> tuple[list[ExecutionSummary], str | None]:
    """``svc.list(**kw)`` as summaries (the local store lists whole executions, the REST API
    their summaries: the same lines either way)."""
    items, cursor = svc.list(**kw)
    return [ExecutionSummary.of(x) if isinstance(x, Execution) else x for x in items], cursor


def final(svc: StaxService, eid: str) -> Execution:
    return wait_for(lambda: (ex := svc.get(eid)).state.final and ex, 60, f"{eid} to be final")


def test_logs_offsets_attempts_and_a_symlinked_stax_out(both: Both) -> None:
    ex = final(both.rest, both.rest.submit(FLAKY).id)
    eid = ex.id
    assert [s.state.value for s in ex.steps] == ["failed", "skipped"]
    # a character is never cut in two; offsets count bytes
    whole = both.ask(lambda s: s.read_log(eid[:6], "a"))
    assert (whole["data"], whole["next_offset"], whole["size"], whole["eof"]) == (
        "héllo\n",
        7,
        7,
        True,
    )
    assert both.ask(lambda s: s.read_log(eid, "a", limit=2))["data"] == "h"
    cut = both.ask(lambda s: s.read_log(eid, "a", offset=1, limit=2))
    assert (cut["data"], cut["next_offset"], cut["eof"]) == ("é", 3, False)
    end = both.ask(lambda s: s.read_log(eid, "a", offset=3))
    assert (end["data"], end["offset"], end["next_offset"], end["eof"]) == ("llo\n", 3, 7, True)
    assert both.ask(lambda s: s.read_log(eid, "a", offset=99))["eof"] is True
    assert both.ask(lambda s: s.read_log(eid, "a", stream="stderr"))["data"] == "oops\n"
    assert both.ask(lambda s: s.read_log(eid, "b")) == {
        "data": "",
        "offset": 0,
        "next_offset": 0,
        "size": 0,
        "eof": True,
    }  # a skipped step has no file: an empty, final chunk
    # what is refused, refused alike
    assert both.ask(lambda s: s.read_log(eid, "a", offset=-1)) == (
        "BadRequest",
        "offset must be at least 0, not -1",
    )
    assert both.ask(lambda s: s.read_log(eid, "a", stream="stdin"))[0] == "BadRequest"
    assert both.ask(lambda s: s.read_log(eid, "a", attempt=2)) == (
        "NotFound",
        "step 'a' has no attempt 2 (attempt 1)",
    )
    assert both.ask(lambda s: s.read_log(eid, "nope")) == (
        "NotFound",
        f"execution {eid} has no step 'nope'; its steps: a, b",
    )
    assert both.ask(lambda s: s.read_log("0000nope", "a"))[0] == "NotFound"
    # a stax.out that links out of its step directory: the strict reader, on both sides
    out = Path(ex.step("a").directory) / "stax.out"
    out.unlink()
    out.symlink_to("/etc/passwd")
    assert both.ask(lambda s: s.read_log(eid, "a")) == (
        "Forbidden",
        "stax.out of step 'a' is a link to a file outside the step directory; jupyter_stax "
        "serves only the step's own files",
    )
    out.unlink()
    os.mkfifo(out)  # a FIFO would block a reader that opened it
    assert both.ask(lambda s: s.read_log(eid, "a")) == (
        "Forbidden",
        "stax.out of step 'a' is not a regular file; refused",
    )


def test_retry_precondition_and_earlier_attempts(both: Both) -> None:
    done = final(both.rest, both.rest.submit({"name": "ok", "steps": ONE}).id)
    assert both.ask(lambda s: s.retry(done.id)) == (
        "Conflict",
        f"execution {done.id} completed; there is nothing to retry",
    )
    assert both.ask(lambda s: s.cancel(done.id)) == (
        "Conflict",
        f"execution {done.id} is already completed; nothing to cancel",
    )
    slow = both.rest.submit({"name": "slow", "steps": [{"name": "a", "run": "sleep 600"}]})
    try:
        wait_for(lambda: both.rest.get(slow.id).state.value == "running", 30, "running")
        assert both.ask(lambda s: s.retry(slow.id)) == (
            "Conflict",
            f"execution {slow.id} is still running; wait for it or cancel it first",
        )
    finally:
        both.rest.cancel(slow.id)
    final(both.rest, slow.id)
    # retried through each service in turn: attempt 1 is then read as stax.out.1 by both
    flaky = final(both.rest, both.rest.submit(FLAKY).id)
    for svc in (both.local, both.rest):
        again = svc.retry(flaky.id)
        assert [s.state.value for s in again.steps] == ["pending", "pending"]
        flaky = final(both.rest, flaky.id)
    assert flaky.step("a").attempt == 3
    for attempt in (1, 2, 3, None):
        chunk = both.ask(lambda s, n=attempt: s.read_log(flaky.id, "a", attempt=n))
        assert (chunk["data"], chunk["eof"]) == ("héllo\n", True)


def test_list_paging_with_cursors(both: Both) -> None:
    ids = [both.rest.submit({"name": f"w{i}", "steps": ONE}).id for i in range(5)]
    for eid in ids:
        final(both.rest, eid)

    def pages(svc: StaxService) -> list[tuple[list[str], str | None]]:
        out, cursor = [], None
        while True:
            page, cursor = svc.list(limit=2, cursor=cursor)
            out.append(([x.id for x in page], cursor))
            if cursor is None:
                return out

    local, rest = pages(both.local), pages(both.rest)
    assert local == rest  # the same pages and the same cursors
    assert [i for page, _ in local for i in page] == ids[::-1]
    assert [len(page) for page, _ in local] == [2, 2, 1]
    ids_of = lambda items: [x["id"] for x in items]  # noqa: E731
    first = both.ask(lambda s: listed(s, limit=2))
    second = both.ask(lambda s: listed(s, limit=2, cursor=first[1]))
    assert ids_of(second[0]) == ids[::-1][2:4]
    assert both.ask(lambda s: listed(s, state="completed", limit=500))[1] is None
    assert both.ask(lambda s: listed(s, state="failed")) == ([], None)
    assert both.ask(lambda s: listed(s, state="bogus"))[0] == "BadRequest"
    assert both.ask(lambda s: listed(s, cursor="nonsense")) == (
        "BadRequest",
        "cursor 'nonsense' is not valid; pass the next_cursor of a previous page",
    )
    assert both.ask(lambda s: listed(s, limit=0)) == (
        "BadRequest",
        "limit must be at least 1, not 0",
    )


def test_cluster_detail_and_images(both: Both, stax_env: Path) -> None:
    def detail(svc: StaxService) -> Any:
        d = svc.cluster("local")
        assert d.summary is not None and d.summary.scheduler == "local"
        live = {"time", "load_average"}  # read at the moment of the request
        return d.model_dump(mode="json", exclude={"summary": live})

    d = both.ask(detail)
    assert d["name"] == "local" and d["work_dir"] == str(stax_env / "runs")
    assert d["summary"]["running_steps"] == 0 and d["summary"]["cpus"] == os.cpu_count()
    assert [c["name"] for c in both.ask(lambda s: s.clusters())] == ["local", "slurm"]
    assert both.ask(lambda s: s.cluster("nope"))[0] == "UnknownCluster"
    assert both.ask(lambda s: s.images())["images"] == []
    assert both.ask(lambda s: s.images("nope"))[0] == "UnknownCluster"
