"""Progress of a transfer in words (stage-in, fetch): the sizes, the line, the bar, and the
meter that tells at most once a second (and once at the end)."""

from __future__ import annotations

import pytest

from jupyter_stax.core.progress import Meter, bar, human_bytes, transfer_line


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
     (12.3 * 1024 * 1024, "12.3 MiB"), (1.5 * 1024**3, "1.50 GiB"), (3 * 1024**5, "3072.0 TiB")],
)
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("done", "total", "seconds", "text"),
    [
        (0, 100, 0.0, "staging inputs: 0 B of 100 B (0%)"),
        (50 << 20, 100 << 20, 2.0, "staging inputs: 50.0 MiB of 100.0 MiB (50%), 25.0 MiB/s"),
        (5, None, 1.0, "staging inputs: 5 B, 5 B/s"),
        (120, 100, 1.0, "staging inputs: 120 B of 100 B (100%), 120 B/s"),  # a file that grew
        (0, 0, 1.0, "staging inputs: 0 B"),
    ],
)
def test_transfer_line(done: int, total: int | None, seconds: float, text: str) -> None:
    assert transfer_line("staging inputs", done, total, seconds) == text


@pytest.mark.parametrize(
    ("done", "total", "text"),
    [(0, 8, "[........]"), (4, 8, "[####....]"), (9, 8, "[########]"), (3, None, "[........]")],
)
def test_bar(done: int, total: int | None, text: str) -> None:
    assert bar(done, total, width=8) == text


def test_the_meter_tells_at_most_every_second_and_once_at_the_end() -> None:
    now = [0.0]
    told: list[tuple[str, int, int | None]] = []
    m = Meter("fetching", 4 << 20, lambda *a: told.append(a), every=1.0, clock=lambda: now[0])
    for t in (0.2, 0.5, 1.1, 1.5, 2.2, 2.3):
        now[0] = t
        m(1 << 19)
    assert [d for _, d, _ in told] == [3 << 19, 5 << 19]  # at 1.1 s and 2.2 s only
    m.finish()
    assert told[-1] == ("fetching: 3.00 MiB of 4.00 MiB (75%), 1.30 MiB/s", 6 << 19, 4 << 20)
