"""The CLI's progress bar for transfers (``jupyter stax fetch``): one line redrawn in place on
a terminal (``[########........] fetching outputs of sim: 12.0 MiB of 36.0 MiB (33%), 8.1
MiB/s``), one line per report elsewhere (``--progress`` into a file or a pipe). Written to
stderr: stdout stays the command's answer (``--json`` too)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from .core.progress import bar


class TerminalBar:
    """A transfer's ``progress(line, done, total)`` drawn on ``stream``; :meth:`close` ends it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._drawn = False
        self._lock = threading.Lock()

    def __call__(self, line: str, done: int, total: int | None) -> None:
        with self._lock:
            if self.tty:
                self.stream.write(f"\r\x1b[K{bar(done, total)} {line}")
                self._drawn = True
            else:
                self.stream.write(f"{line}\n")
            self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False
