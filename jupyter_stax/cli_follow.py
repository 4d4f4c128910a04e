"""What ``jupyter stax`` shows while following: progress of an execution until it ends, and step
logs as they grow. The following itself is :mod:`jupyter_stax.follow` (shared with the kernel
API and the monitor widget); this module only prints."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime, timezone
from typing import BinaryIO

from .core import text
from .core.models import Execution
from .core.states import ExecutionState, StepState
from .follow import FollowTimeout, LogTail, Poll, read_all, wait_final, watch
from .service import StaxService

#: looks at an execution or a log: every 0.25 s after a change, slowing to once a second
POLL = Poll(0.25, 1.0)


# ---------------------------------------------------------------------- output helpers
def now() -> datetime:
    return datetime.now(timezone.utc)


def dim(msg: str) -> None:
    """A note on stderr, dimmed on a terminal."""
    tty = sys.stderr.isatty()
    print(f"\x1b[2m{msg}\x1b[0m" if tty else msg, file=sys.stderr)


def width() -> int | None:
    """Terminal width for cutting long reasons; None (no cutting) when stdout is not a terminal,
    unless $COLUMNS says otherwise."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def as_bytes(data: str) -> bytes:
    """A log chunk's text as the file's bytes (the local store gives undecodable bytes as
    surrogate escapes)."""
    return data.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------- executions
def follow(svc: StaxService, eid: str) -> int:
    """Show progress until the execution is final; then the status table. 0 if completed."""
    tty = sys.stderr.isatty()
    seen: dict[str, tuple[StepState, int]] = {}
    shown = ""
    try:
        for ex in watch(svc, eid, poll=POLL):
            t = now()
            if tty and (line := text.progress_line(ex, t)) != shown:
                print(f"\r{line}\x1b[K", end="", file=sys.stderr, flush=True)
                shown = line
            elif not tty:
                for s in ex.steps:
                    key = (s.state, s.attempt)
                    if seen.get(s.name, (StepState.PENDING, 0)) != key:
                        print(text.step_change_line(s, t), file=sys.stderr, flush=True)
                    seen[s.name] = key
    except KeyboardInterrupt:
        if tty:
            print("\r\x1b[K", end="", file=sys.stderr)
        print(
            f"stopped following; execution {eid} goes on. Re-attach: jupyter stax wait {eid}",
            file=sys.stderr,
        )
        return 130
    if tty:
        print(file=sys.stderr)
    print(text.status_text(ex, now(), width()))
    return 0 if ex.state is ExecutionState.COMPLETED else 1


def until_final(svc: StaxService, eid: str, timeout: float) -> Execution:
    """The execution once final, or as it is after ``timeout`` seconds."""
    try:
        return wait_final(svc, eid, timeout=max(0.0, timeout), poll=POLL)
    except FollowTimeout as e:
        return e.execution


# ---------------------------------------------------------------------- logs
def drain(
    svc: StaxService, eid: str, step: str, stream: str, attempt: int | None, out: BinaryIO
) -> None:
    """Write what the log holds now (``attempt`` None: the current one)."""
    for data in read_all(svc, eid, step, stream, attempt):
        out.write(as_bytes(data))
        out.flush()


def tail(
    svc: StaxService, eid: str, name: str, stream: str, only: int | None, out: BinaryIO
) -> int:
    """Print the output as it grows until the step is final: every attempt from the first, a
    ``--- attempt N ---`` line on stderr between two (``only``: that attempt alone)."""
    logs = LogTail(svc, eid, name, stream, attempts="all" if only is None else only)
    wrote = False
    try:
        for piece in logs.follow(poll=POLL):
            if piece.new_attempt and wrote:
                print(f"--- attempt {piece.attempt} ---", file=sys.stderr, flush=True)
            if piece.data:
                out.write(as_bytes(piece.data))
                out.flush()
                wrote = True
    except KeyboardInterrupt:
        return 130
    return 0
