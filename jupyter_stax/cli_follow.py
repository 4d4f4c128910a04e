"""Following for ``jupyter stax``: progress of an execution until it ends, and step logs as they
grow. Everything goes through a :class:`~jupyter_stax.service.StaxService`, so it works the same
on the local store and through a Jupyter server (polling ``get`` and the log offsets)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime, timezone
from typing import BinaryIO

from .core import text
from .core.models import Execution
from .core.states import ExecutionState, StepState
from .service import StaxService, step_of

#: seconds between two looks at an execution or a log
POLL = 0.25


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
        while True:
            ex = svc.get(eid)
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
            if ex.state.final:
                break
            time.sleep(POLL)
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


def wait_final(svc: StaxService, ex: Execution, deadline: float) -> Execution:
    """Poll until ``ex`` is final or ``time.monotonic()`` passes ``deadline``."""
    while not ex.state.final and time.monotonic() < deadline:
        time.sleep(POLL)
        ex = svc.get(ex.id)
    return ex


# ---------------------------------------------------------------------- logs
def drain(
    svc: StaxService,
    eid: str,
    step: str,
    stream: str,
    attempt: int | None,
    offset: int,
    out: BinaryIO,
) -> int:
    """Write what the log holds from ``offset`` on; the offset after it."""
    while True:
        chunk = svc.read_log(eid, step, stream, offset, attempt)
        if chunk.data:
            out.write(as_bytes(chunk.data))
            out.flush()
        if chunk.next_offset <= offset or chunk.next_offset >= chunk.size:
            return max(offset, chunk.next_offset)
        offset = chunk.next_offset


def tail(
    svc: StaxService, eid: str, name: str, stream: str, only: int | None, out: BinaryIO
) -> int:
    """Print the output as it grows until the step is final (across automatic retries, unless
    ``only`` names one attempt).

    Each read names its attempt (once there is one), so a retry that renames the file to
    ``stax.out.N`` never mixes two attempts: when a new attempt shows up, the previous one's file
    is read to its end first."""
    attempt, offset = 0, 0
    try:
        while True:
            s = step_of(svc.get(eid), name)
            final = s.state.final or (only is not None and s.attempt > only)
            current = s.attempt if only is None else only
            if attempt and current != attempt:
                offset = drain(svc, eid, name, stream, attempt, offset, out)
                if offset:
                    print(f"--- attempt {current} ---", file=sys.stderr, flush=True)
                offset = 0
            attempt = current
            which = attempt if 1 <= attempt <= s.attempt else None
            offset = drain(svc, eid, name, stream, which, offset, out)
            if final:  # read after seeing the final state: nothing more will come
                return 0
            time.sleep(POLL)
    except KeyboardInterrupt:
        return 130
