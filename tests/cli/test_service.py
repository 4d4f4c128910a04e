"""LocalService from Python: the same operations as the CLI, also from a thread whose event loop
runs (a kernel's), with paging, log chunks and errors as the REST API has them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.core.errors import BadRequest, Conflict, InvalidWorkflow, NotFound
from jupyter_stax.core.models import Execution
from jupyter_stax.service import LocalService, StaxService, read_bytes_chunk

from ..proc import kill
from ..waiting import NotYet, wait_for
from .test_cli import Stax


def flaky(release: Path) -> dict[str, object]:
    """Step a fails at once on its first attempt; its second attempt fails only once the test
    has created `release`, so the test sees the retried execution still running (no race)."""
    gate = f"while [ ! -e '{release}' ]; do sleep 0.05; done"
    return {
        "name": "flaky",
        "steps": [
            {
                "name": "a",
                "run": f"printf 'h\\303\\251llo\\n'; [ \"$STAX_ATTEMPT\" = 1 ] || {gate}; exit 1",
            },
            {"name": "b", "after": ["a"], "run": "echo b"},
        ],
    }


@pytest.fixture
def svc(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalService]:
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    notes: list[str] = []
    s = LocalService(notify=notes.append)
    yield s
    s.close()
    kill(Stax(stax_env, stax_env / "state" / "stax.sqlite").daemon_pids())


def wait(svc: StaxService, eid: str, timeout: float = 60) -> Execution:
    return wait_for(
        lambda: ((ex := svc.get(eid)).state.final and ex) or NotYet(ex.state),
        timeout,
        f"execution {eid} to end",
        interval=0.2,
    )


def test_the_operations_from_inside_a_running_event_loop(svc: LocalService, tmp_path: Path) -> None:
    release = tmp_path / "release"

    async def main() -> None:  # everything synchronous, as a notebook cell would call it
        ex = svc.submit(flaky(release))
        assert ex.owner is None and svc.describe().startswith("store ")
        ex = wait(svc, ex.id)
        assert [s.state.value for s in ex.steps] == ["failed", "skipped"]
        chunk = svc.read_log(ex.id[:5], "a")
        assert (chunk.data, chunk.offset, chunk.next_offset, chunk.eof) == ("héllo\n", 0, 7, True)
        ex = svc.retry(ex.id)
        assert [s.state.value for s in ex.steps] == ["pending", "pending"]
        with pytest.raises(Conflict):
            svc.retry(ex.id)  # still running: attempt 2 waits for the release file
        release.touch()
        ex = wait(svc, ex.id)
        assert ex.steps[0].attempt == 2
        assert svc.read_log(ex.id, "a", attempt=1).data == "héllo\n"
        with pytest.raises(NotFound, match="no attempt 3"):
            svc.read_log(ex.id, "a", attempt=3)
        with pytest.raises(Conflict, match="already failed"):
            svc.cancel(ex.id)

    asyncio.run(main())


def test_paging_errors_and_chunks(svc: LocalService, tmp_path: Path) -> None:
    one = [{"name": "a", "run": "true"}]
    ids = [svc.submit({"name": f"w{i}", "steps": one}).id for i in range(5)]
    for eid in ids:
        wait(svc, eid)
    seen, cursor = [], None
    while True:
        page, cursor = svc.list(limit=2, cursor=cursor)
        seen += [x.id for x in page]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert svc.list(state="failed") == ([], None)
    with pytest.raises(BadRequest, match="cursor"):
        svc.list(cursor="nonsense")
    with pytest.raises(InvalidWorkflow, match="unknown step"):
        svc.submit({"name": "x", "steps": [{"name": "a", "run": "true"}]}, steps=["zz"])
    with pytest.raises(NotFound, match="steps: a"):
        svc.read_log(ids[0], "nope")
    with pytest.raises(BadRequest, match="stream"):
        svc.read_log(ids[0], "a", stream="stdin")
    # a character is never cut in two, unless the file is final and ends there
    f = tmp_path / "out"
    f.write_bytes("aé".encode() + b"\xc3")
    c = read_bytes_chunk(f, 0, 2, final=False)
    assert (c.data, c.next_offset, c.size, c.eof) == ("a", 1, 4, False)
    c = read_bytes_chunk(f, 1, 10, final=False)
    assert (c.data, c.next_offset) == ("é", 3)
    c = read_bytes_chunk(f, 3, 10, final=True)
    assert c.data.encode("utf-8", "surrogateescape") == b"\xc3" and c.eof
    c = read_bytes_chunk(tmp_path / "missing", 0, 10, final=True)
    assert (c.data, c.next_offset, c.size, c.eof) == ("", 0, 0, True)
