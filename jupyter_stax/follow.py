"""Following an execution through a :class:`~jupyter_stax.service.StaxService`: until it is
final, and a step's log as it grows. The one follower of the kernel API (``Execution.wait``),
the monitor widget and ``jupyter stax wait/run --wait/logs --follow``; it works the same on the
local store and through a Jupyter server, because it only polls ``get`` and ``read_log``.

A client-side layer: it imports the core and the service protocol, never a surface (kernel,
server, cli).

Threading contract: :func:`watch`, :func:`wait_final` and :meth:`LogTail.follow` run on the
calling thread and pause with :meth:`threading.Event.wait`, so setting their ``stop`` event from
any other thread ends them at once (no interval is slept out). :meth:`LogTail.look` may be
called from several threads; looks are taken one at a time and each byte is returned once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from .core.errors import NotFound, StaxError
from .core.models import Execution, StepRun
from .service import StaxService, step_of

__all__ = [
    "FollowTimeout",
    "LogPiece",
    "LogTail",
    "Pacer",
    "Poll",
    "signature",
    "wait_final",
    "watch",
]


@dataclass(frozen=True)
class Poll:
    """How often to look: ``first`` seconds after a look that saw something new, then
    ``factor`` times longer after each look that saw nothing new, up to ``most``."""

    first: float = 0.25
    most: float = 2.0
    factor: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.most or self.factor < 1:
            raise ValueError(f"need 0 < first <= most and factor >= 1, not {self}")

    @classmethod
    def up_to(cls, most: float) -> Poll:
        """Quick looks at first (0.1 s, or ``most`` if shorter), never pausing over ``most``."""
        return cls(min(0.1, most), most)

    @classmethod
    def every(cls, seconds: float) -> Poll:
        """The same pause every time."""
        return cls(seconds, seconds, 1.0)


class FollowTimeout(TimeoutError):
    """The deadline passed before the execution was final; ``execution`` is the last look."""

    def __init__(self, execution: Execution, timeout: float) -> None:
        done, total = execution.progress
        super().__init__(
            f"execution {execution.id} is still {execution.state.value} after {timeout:g} s "
            f"({done}/{total} steps done)"
        )
        self.execution = execution
        self.timeout = timeout


class Pacer:
    """The pauses between looks: growing while nothing changes (:class:`Poll`), never past the
    deadline (``timeout`` seconds from now), cut short by ``stop`` from any thread."""

    def __init__(
        self, poll: Poll, stop: threading.Event | None = None, timeout: float | None = None
    ) -> None:
        self.poll = poll
        self.stop = stop if stop is not None else threading.Event()
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self._next = poll.first

    @property
    def stopped(self) -> bool:
        return self.stop.is_set()

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def pause(self, changed: bool) -> bool:
        """Wait before the next look (short after a change); False when stopped."""
        p = self.poll
        self._next = p.first if changed else min(p.most, self._next * p.factor)
        wait = self._next
        if self.deadline is not None:
            wait = max(0.0, min(wait, self.deadline - time.monotonic()))
        return not self.stop.wait(wait)


def signature(ex: Execution) -> tuple[object, ...]:
    """What a person following the execution would see change (states, attempts, jobs,
    reasons, warnings)."""
    return (
        ex.state,
        ex.cancel_requested,
        tuple(ex.warnings),
        tuple((s.state, s.attempt, s.native_id, s.exit_code, s.reason) for s in ex.steps),
    )


def watch(
    service: StaxService,
    execution_id: str,
    *,
    poll: Poll | None = None,
    stop: threading.Event | None = None,
    timeout: float | None = None,
    changes_only: bool = False,
) -> Iterator[Execution]:
    """Every look at the execution (``changes_only``: those whose :func:`signature` differs
    from the previous one yielded), until and with the first final one. Ends early when
    ``stop`` is set; :class:`FollowTimeout` once ``timeout`` seconds passed and the last look
    was not final. The service's errors pass through."""
    pacer = Pacer(poll or Poll(), stop, timeout)
    shown: tuple[object, ...] | None = None
    last: tuple[object, ...] | None = None
    while True:
        ex = service.get(execution_id)
        sig = signature(ex)
        if not changes_only or sig != shown:
            shown = sig
            yield ex
        if ex.state.final or pacer.stopped:
            return
        if pacer.expired:
            raise FollowTimeout(ex, timeout or 0.0)
        changed, last = sig != last, sig
        if not pacer.pause(changed):
            return


def wait_final(
    service: StaxService,
    execution_id: str,
    *,
    timeout: float | None = None,
    poll: Poll | None = None,
    stop: threading.Event | None = None,
    on_look: Callable[[Execution], None] | None = None,
) -> Execution:
    """The execution once it is final (the last look when ``stop`` ended the wait early);
    ``on_look`` sees every look. :class:`FollowTimeout` after ``timeout`` seconds."""
    ex: Execution | None = None
    for ex in watch(service, execution_id, poll=poll, stop=stop, timeout=timeout):
        if on_look is not None:
            on_look(ex)
    assert ex is not None  # watch yields at least once or raises
    return ex


# ---------------------------------------------------------------------- logs
@dataclass(frozen=True)
class LogPiece:
    """Bytes ``[start, end)`` of one attempt's log file, as text (from the local store, bytes
    that are not UTF-8 come as surrogate escapes: ``data.encode("utf-8", "surrogateescape")``
    are the file's bytes)."""

    attempt: int
    data: str
    start: int
    end: int
    new_attempt: bool = False
    """The first piece of an attempt after pieces of an earlier one (it may hold no data)."""
    skipped: bool = False
    """The head of the file before ``start`` was left out (``keep``)."""


@dataclass
class _Read:
    data: str
    start: int
    end: int
    skipped: bool
    at_end: bool  # nothing more in the file for now


#: which attempts a :class:`LogTail` reads: every one from the first, the current one (starting
#: over when a new one begins), or one attempt
Attempts = Literal["all", "current"] | int


class LogTail:
    """One step's output stream as it grows, across attempts, every byte once and in order.

    ``attempts``: ``"all"`` reads attempt 1 to its end, then 2, and so on, following the last
    one until the step is final; ``"current"`` reads the attempt current at each look and
    starts over (``new_attempt``) when a later one begins; an int reads that attempt only,
    until it is final or a later one began. ``keep``: a fresh start of an attempt reads only
    the last ``keep`` bytes (``skipped``). ``limit``: bytes per ``read_log`` call (None: the
    service's default); ``reads``: calls per look at most (None: until caught up).

    Why no byte is lost or read twice across a retry: the engine renames ``stax.out`` to
    ``stax.out.N`` before it commits attempt N+1, and attempt N+1 writes ``stax.out`` only
    after that commit. So a read of the current attempt is kept only when the look at the
    execution taken AFTER the read still shows that attempt; otherwise it is dropped and the
    same offset is read again from the renamed file, which is complete and no longer changes.
    The last read of a step happens after a look that saw it final.
    """

    def __init__(
        self,
        service: StaxService,
        execution_id: str,
        step: str,
        stream: str = "stdout",
        *,
        attempts: Attempts = "all",
        keep: int | None = None,
        limit: int | None = None,
        reads: int | None = None,
    ) -> None:
        self.service = service
        self.execution_id = execution_id
        self.step_name = step
        self.stream = stream
        self.attempts = attempts
        self.keep = keep
        self.limit = limit
        self.reads = reads
        #: the last look at the execution
        self.execution: Execution | None = None
        #: everything the step will ever write (of the attempts asked for) was returned
        self.done = False
        self._lock = threading.Lock()
        self._attempt = 0  # the attempt being read; 0: none yet
        self._offset = 0
        self._fresh = True
        self._pending_new = False
        self._seen = 0  # the step's attempt at the last look
        self._carry: list[LogPiece] = []  # read by a look that then failed: for the next one

    @property
    def step(self) -> StepRun | None:
        """The step as last seen."""
        return None if self.execution is None else step_of(self.execution, self.step_name)

    def _look_at(self) -> StepRun:
        self.execution = self.service.get(self.execution_id)
        s = step_of(self.execution, self.step_name)
        self.execution_id = self.execution.id  # a prefix resolved
        self._seen = s.attempt
        return s

    def _read(self, attempt: int) -> _Read:
        offset, skipped = self._offset, False
        start, parts, n = offset, [], 0
        while True:
            chunk = self.service.read_log(
                self.execution_id, self.step_name, self.stream, offset, attempt, self.limit
            )
            n += 1
            keep = self.keep
            if self._fresh and keep is not None and not skipped and chunk.size - offset > keep:
                offset = start = chunk.size - keep  # the tail only
                skipped = True
                continue
            parts.append(chunk.data)
            moved = chunk.next_offset > offset
            offset = max(offset, chunk.next_offset)
            at_end = chunk.eof or not moved or offset >= chunk.size
            if at_end or (self.reads is not None and n >= self.reads):
                return _Read("".join(parts), start, offset, skipped, at_end)

    def _accept(self, attempt: int, got: _Read, out: list[LogPiece]) -> None:
        if got.data or self._pending_new or got.skipped:
            out.append(
                LogPiece(attempt, got.data, got.start, got.end, self._pending_new, got.skipped)
            )
        self._offset, self._fresh, self._pending_new = got.end, False, False

    def _begin(self, attempt: int) -> None:
        self._pending_new = self._attempt != 0
        self._attempt, self._offset, self._fresh = attempt, 0, True

    def look(self) -> list[LogPiece]:
        """One look: what was written since the last one (one ``get``, more only around a
        retry, and the log reads). The service's errors pass through; nothing is lost then:
        what this look had read before the error comes with the next look."""
        with self._lock:
            out, self._carry = self._carry, []
            try:
                return self._look(out)
            except BaseException:
                self._carry = out
                raise

    def _look(self, out: list[LogPiece]) -> list[LogPiece]:
        """The body of :meth:`look` (under its lock); appends to ``out`` and returns it."""
        s = self._look_at() if self._attempt == 0 or self.done else self.step
        assert s is not None
        if self.done:
            return out
        while True:
            if self._attempt == 0:  # nothing read yet: where to start
                first = self._first_attempt(s.attempt)
                if first == 0:
                    self.done = s.state.final
                    return out
                self._begin(first)
            k = self._attempt
            archived = k < self._seen  # its file is complete and no longer changes
            if archived and self.attempts == "current":
                self._begin(self._seen)  # start over with the attempt that runs now
                continue
            try:
                got = self._read(k)
            except NotFound:
                s = self._look_at()
                if self._seen < k:  # the engine took the attempt back (never submitted)
                    return out
                raise
            if not archived:
                s = self._look_at()  # after the read: is what we read still attempt k?
                if self._seen > k:
                    continue  # no: read the same offset again from the renamed file
                if self._seen < k:
                    return out
            self._accept(k, got, out)
            if not got.at_end:
                return out  # ``reads`` calls made: more at the next look
            if archived:
                nxt = self._next_attempt(k, s.attempt)
                if nxt is None:
                    self.done = True
                    return out
                self._begin(nxt)
                continue
            if s.state.final:
                # bytes may have come between the read and the look that saw the end
                got = self._read(k)
                self._accept(k, got, out)
                self.done = got.at_end
            return out

    def _first_attempt(self, current: int) -> int:
        if self.attempts == "all":
            return 1 if current else 0
        if self.attempts == "current":
            return current
        return self.attempts if current >= self.attempts else 0

    def _next_attempt(self, k: int, current: int) -> int | None:
        """After attempt ``k`` was read to its end and attempt ``current`` began: the next
        attempt to read (None: done)."""
        if self.attempts == "all":
            return k + 1
        if self.attempts == "current":
            return current
        return None

    def follow(
        self,
        *,
        poll: Poll | None = None,
        stop: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Iterator[LogPiece]:
        """Every piece until :attr:`done` (or ``stop`` is set); FollowTimeout after
        ``timeout`` seconds. Once the step was seen, a look that fails for a while (HTTP 503:
        a remote cluster's connection dropped, a server restarting) is tried again later:
        nothing is lost (the offset moves only with what was delivered)."""
        pacer = Pacer(poll or Poll(), stop, timeout)
        last: tuple[object, ...] | None = None
        while True:
            try:
                pieces = self.look()
            except StaxError as e:
                if e.http_status != 503 or self.execution is None:
                    raise
                pieces = []
            yield from pieces
            if self.done or pacer.stopped:
                return
            assert self.execution is not None
            if pacer.expired:
                raise FollowTimeout(self.execution, timeout or 0.0)
            sig = signature(self.execution)
            changed, last = bool(pieces) or sig != last, sig
            if not pacer.pause(changed):
                return


def read_all(
    service: StaxService,
    execution_id: str,
    step: str,
    stream: str = "stdout",
    attempt: int | None = None,
    offset: int = 0,
) -> Iterator[str]:
    """The chunks of a step's output from ``offset`` to the end as it is now (``attempt``
    None: the current one); no waiting."""
    while True:
        chunk = service.read_log(execution_id, step, stream, offset, attempt)
        if chunk.data:
            yield chunk.data
        if chunk.eof or chunk.next_offset <= offset or chunk.next_offset >= chunk.size:
            return
        offset = chunk.next_offset
