"""Submission in batches, the pure parts: the coalescing of the items one loop turn asks for
(:class:`~jupyter_stax.engine.coalesce.Batcher`), the partial answer of a batch of commands, when
a remote cluster's records are read (half-way between two status answers), and LocalTransport's
``write_steps``/``run_many``/``remove_later`` contract."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.engine.batch import batch_script, parse_batch, parse_batch_prefix
from jupyter_stax.engine.coalesce import Batcher
from jupyter_stax.engine.observing import records_due
from jupyter_stax.engine.transport import CommandResult, FileSpec, LocalTransport

from .conftest import arun


async def _thread(fn: Any, items: Any) -> Any:
    return await asyncio.to_thread(fn, items)


class Recorder:
    """``run`` of a Batcher: notes each call; an item "bad" is that item's own error, an item
    "boom" fails its whole chunk."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, items: list[str]) -> list[str | BaseException]:
        with self.lock:
            self.calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("the whole chunk failed")
        return [ValueError(f"{i} is bad") if i == "bad" else i.upper() for i in items]


@pytest.mark.parametrize(
    ("limit", "asked", "chunks"),
    [
        (100, 7, [7]),  # one turn, under the limit: one call
        (3, 7, [3, 3, 1]),  # chunks of the limit
        (1, 3, [1, 1, 1]),  # a local cluster: one call per item
    ],
)
def test_items_asked_in_one_turn_are_one_call_per_chunk(
    limit: int, asked: int, chunks: list[int]
) -> None:
    rec = Recorder()

    async def main() -> list[str]:
        b: Batcher[str, str] = Batcher(rec, lambda: limit, _thread)
        return list(await asyncio.gather(*(b(f"s{i}") for i in range(asked))))

    assert arun(main()) == [f"S{i}" for i in range(asked)]
    assert sorted(len(c) for c in rec.calls) == sorted(chunks)
    assert sorted(x for c in rec.calls for x in c) == sorted(f"s{i}" for i in range(asked))


def test_each_asker_gets_its_own_result_or_error_and_a_later_turn_is_a_new_call() -> None:
    rec = Recorder()

    async def main() -> tuple[list[object], str]:
        b: Batcher[str, str] = Batcher(rec, lambda: 10, _thread)
        got = await asyncio.gather(b("a"), b("bad"), b("c"), return_exceptions=True)
        later = await b("d")
        return list(got), later

    got, later = arun(main())
    assert got[0] == "A" and got[2] == "C"
    assert isinstance(got[1], ValueError) and str(got[1]) == "bad is bad"
    assert later == "D"
    assert rec.calls == [["a", "bad", "c"], ["d"]]


def test_a_chunk_that_fails_fails_each_of_its_askers_only() -> None:
    rec = Recorder()

    async def main() -> list[object]:
        b: Batcher[str, str] = Batcher(rec, lambda: 2, _thread)
        return list(await asyncio.gather(b("a"), b("boom"), b("c"), return_exceptions=True))

    got = arun(main())
    assert [type(x) for x in got[:2]] == [RuntimeError, RuntimeError]
    assert got[2] == "C"


def test_an_asker_canceled_before_the_flush_is_left_out() -> None:
    rec = Recorder()

    async def main() -> str:
        b: Batcher[str, str] = Batcher(rec, lambda: 10, _thread)
        gone = asyncio.ensure_future(b("gone"))
        await asyncio.sleep(0)  # it is waiting now
        gone.cancel()
        return await b("kept")

    assert arun(main()) == "KEPT"
    assert rec.calls == [["kept"]]


@pytest.mark.parametrize(
    ("last_read", "last_status", "every", "due"),
    [
        (None, None, 2.0, 0.0),  # never read: now
        (None, 5.0, 2.0, 0.0),
        (10.0, None, 2.0, 12.0),  # no status answer yet: every interval
        (10.0, 9.0, 2.0, 12.0),  # no status answer since the read: every interval
        (10.0, 10.5, 2.0, 11.5),  # half-way after the status answer that came since
        (10.0, 11.9, 2.0, 12.9),  # later than every interval: one read per status answer
        (10.0, 10.5, 1.0, 11.0),
    ],
)
def test_records_are_read_half_way_between_status_answers(
    last_read: float | None, last_status: float | None, every: float, due: float
) -> None:
    assert records_due(last_read, last_status, every) == pytest.approx(due)


def test_a_batch_cut_off_keeps_the_answers_that_came_back_whole() -> None:
    commands = [["echo", "a"], ["echo", "b"], ["echo", "c"]]
    full = "noise\n@@stax-start\n@@cmd 0\nYQo=\n@@err\n@@end\n@@cmd 1\nYgo=\n@@err\nZQo=\n@@end\n"
    got = parse_batch_prefix(full + "@@cmd 0\nYw", commands)
    assert got == [CommandResult(0, "a\n", ""), CommandResult(1, "b\n", "e\n")]
    assert parse_batch_prefix(full, commands[:2]) == got
    with pytest.raises(ValueError, match="stops before `echo`"):
        parse_batch(full, commands)
    with pytest.raises(ValueError, match="no start marker"):
        parse_batch_prefix("", commands)
    assert "@@stax-start" in batch_script(commands)


def test_local_write_steps_keeps_an_earlier_attempts_files(tmp_path: Path) -> None:
    """A move whose target exists is skipped: a write tried again never moves this attempt's
    new files over the ones kept of the earlier attempt."""
    t = LocalTransport()
    d = tmp_path / "step one"
    d.mkdir()
    (d / "stax.job.sh").write_text("attempt 1")
    moves = [(d / "stax.job.sh", d / "stax.job.sh.1"), (d / "missing", d / "missing.1")]
    for text in ("attempt 2", "attempt 2 again"):
        t.write_steps([d, tmp_path / "new dir"], moves, {d / "stax.job.sh": FileSpec(text, 0o755)})
    assert (d / "stax.job.sh.1").read_text() == "attempt 1"
    assert (d / "stax.job.sh").read_text() == "attempt 2 again"
    assert (d / "stax.job.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "new dir").is_dir() and not (d / "missing.1").exists()


def test_local_run_many_writes_then_runs_each_command(tmp_path: Path) -> None:
    t = LocalTransport()
    f = tmp_path / "it's here" / "x.sh"
    got = t.run_many(
        [["sh", str(f)], ["sh", "-c", "echo no >&2; exit 4"], ["stax-no-such-command"]],
        files={f: FileSpec("echo from the file\n")},
        links=[(tmp_path / "link", tmp_path / "it's here")],
    )
    assert got[0] == CommandResult(0, "from the file\n", "")
    assert got[1] == CommandResult(4, "", "no\n")
    assert isinstance(got[2], CommandResult) and got[2].returncode == 127
    assert (tmp_path / "link" / "x.sh").is_file()
    t.remove_later([f, tmp_path / "never there"])  # local: at once, missing ones fine
    assert not f.exists()
