"""The one way tests wait: on a condition, with a deadline; never a bare sleep.

``wait_for`` (synchronous) and ``wait_for_async`` (for tests that run on an event loop, where a
blocking sleep would stall the engine or the server under test) call ``predicate`` until it
returns a truthy value and return that value. After ``timeout`` seconds they raise an
``AssertionError`` that names what was awaited and the last value the predicate returned, so a
failure says where a run got stuck instead of only that it took too long. A predicate whose
"not yet" should say more than ``None`` or ``False`` returns ``NotYet(what it saw)``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: how much of the last value seen goes into the message
SHOWN = 600


class NotYet:
    """A falsy answer of a predicate that carries what it saw (shown when the wait times out)."""

    def __init__(self, seen: object) -> None:
        self.seen = seen

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return repr(self.seen)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + " ..."


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(
        f"timed out after {timeout:g} s waiting for {what}; last seen: {_shown(last)}"
    )


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """``predicate()``'s first truthy value, looked at every ``interval`` s for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Like :func:`wait_for` on a running event loop: the loop goes on between two looks.
    ``predicate`` may be a plain function or return an awaitable (``lambda: api(...)``)."""
    deadline = time.monotonic() + timeout
    while True:
        got: Any = predicate()
        value: T = await got if inspect.isawaitable(got) else got
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        await asyncio.sleep(interval)


def gate(path: object, timeout: float = 120) -> str:
    """Bash for a step that waits until the test creates ``path`` (at most ``timeout`` s, so a
    failed test leaves no job behind): a job that must not get ahead of the test waits on it
    instead of sleeping and hoping the test is faster. No quotes: usable inside a YAML or
    shell string (``path`` must not contain spaces)."""
    assert " " not in str(path) and "'" not in str(path), path
    return f"for _g in $(seq {int(timeout * 20)}); do [ -e {path} ] && break; sleep 0.05; done"
