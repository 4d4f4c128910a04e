"""Progress of a transfer (stage-in, fetch) in words: ``staging inputs: 120.0 MiB of 1.00 GiB
(12%), 45.2 MiB/s``. :class:`Meter` adds up the bytes a transport reports piece by piece and
tells its ``report`` at most every ``every`` seconds (and once at the end), so a caller can
commit the line on the step (the sidebar and the monitor show a step's reason) or redraw a bar
on a terminal without doing it for every piece. Pure (the clock is a parameter).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """``0 B``, ``999 B``, ``1.00 KiB``, ``12.3 MiB``, ``1.50 GiB``."""
    v, i = float(n), 0
    while v >= 1024 and i < len(_UNITS) - 1:
        v /= 1024
        i += 1
    if i == 0:
        return f"{int(v)} B"
    return f"{v:.2f} {_UNITS[i]}" if v < 10 else f"{v:.1f} {_UNITS[i]}"


def transfer_line(verb: str, done: int, total: int | None, seconds: float) -> str:
    """What a transfer did so far: bytes (of the total, with a percentage) and the rate."""
    text = f"{verb}: {human_bytes(done)}"
    if total:
        text += f" of {human_bytes(total)} ({min(100, done * 100 // total)}%)"
    if seconds > 0 and done:
        text += f", {human_bytes(done / seconds)}/s"
    return text


def bar(done: int, total: int | None, width: int = 24) -> str:
    """``[#######.................]`` (no total: an empty frame)."""
    if not total:
        return "[" + "." * width + "]"
    full = min(width, done * width // total)
    return "[" + "#" * full + "." * (width - full) + "]"


class Meter:
    """Callable with the bytes of each piece (a transport's ``progress``); thread-safe."""

    def __init__(
        self, verb: str, total: int | None, report: Callable[[str, int, int | None], None], *,
        every: float = 1.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verb, self.total, self.report = verb, total, report
        self.every, self.clock = every, clock
        self.done = 0
        self.start = clock()
        self._last = self.start
        self._lock = threading.Lock()

    def line(self) -> str:
        return transfer_line(self.verb, self.done, self.total, self.clock() - self.start)

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = self.clock()
            if now - self._last < self.every:
                return
            self._last = now
        self.report(self.line(), self.done, self.total)

    def finish(self) -> None:
        """Tell the final numbers (once, whatever the time since the last report)."""
        self.report(self.line(), self.done, self.total)
