"""Paging through executions with opaque cursors (``GET executions?cursor=``, ``StaxService.list``).

A cursor carries the ``created`` time of the last execution of a page; the next page is the
executions created before it, newest first. Clients never look inside a cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

from ..core.errors import BadRequest
from ..core.models import Execution
from ..core.states import ExecutionState


def encode_cursor(ex: Execution) -> str:
    raw = json.dumps({"before": ex.created_at.timestamp()}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> float:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        before = json.loads(raw)["before"]
        if not isinstance(before, (int, float)) or isinstance(before, bool):
            raise TypeError
        if not math.isfinite(before):
            raise ValueError
        return float(before)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise BadRequest(
            f"cursor {cursor!r} is not valid; pass the next_cursor of a previous page"
        ) from None


def state_arg(value: str | None) -> ExecutionState | None:
    """An execution state named by a client (any case), None for none; BadRequest naming the
    states there are otherwise."""
    if not value:
        return None
    try:
        return ExecutionState(value.strip().lower())
    except ValueError:
        states = ", ".join(s.value for s in ExecutionState)
        raise BadRequest(f"state must be one of {states}, not {value!r}") from None


def page_of(items: list[Execution], limit: int) -> tuple[list[Execution], str | None]:
    """``items``: up to ``limit + 1`` executions, newest first (one more tells whether there is
    a next page). The page and the cursor of the next one (None on the last page)."""
    page = items[:limit]
    more = len(items) > limit and bool(page)
    return page, encode_cursor(page[-1]) if more else None
