"""What the handlers do with a request beyond calling the engine: reading query parameters and
bodies into models (bad input is always a 400 that says what was wrong), paging, and the choice
of a step's log file. No tornado here, so all of it is testable without a server."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from pydantic import ValidationError

from ..core.api import (
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    ExecutionPage,
    ExecutionSummary,
    SubmitRequest,
)
from ..core.documents import parse_yaml, to_model
from ..core.errors import Conflict, InvalidWorkflow
from ..core.models import Execution, Workflow
from ..core.states import ExecutionState
from .errors import BadRequest, invalid_body


def int_arg(
    value: str | None,
    name: str,
    *,
    default: int | None,
    low: int | None = None,
    high: int | None = None,
    clamp: bool = False,
) -> int | None:
    """An integer query parameter. Out of ``[low, high]``: 400, or ``high`` when ``clamp``."""
    if value is None or value == "":
        return default
    try:
        n = int(value.strip())
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {value!r}") from None
    if low is not None and n < low:
        raise BadRequest(f"{name} must be at least {low}, not {n}")
    if high is not None and n > high:
        if clamp:
            return high
        raise BadRequest(f"{name} must be at most {high}, not {n}")
    return n


def state_arg(value: str | None) -> ExecutionState | None:
    if not value:
        return None
    try:
        return ExecutionState(value.strip().lower())
    except ValueError:
        states = ", ".join(s.value for s in ExecutionState)
        raise BadRequest(f"state must be one of {states}, not {value!r}") from None


# ---------------------------------------------------------------------- paging
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


def page_args(args: dict[str, str | None]) -> tuple[ExecutionState | None, int, float | None]:
    state = state_arg(args.get("state"))
    limit = int_arg(
        args.get("limit"), "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX
    )
    assert limit is not None
    cursor = args.get("cursor")
    return state, limit, decode_cursor(cursor) if cursor else None


def make_page(items: list[Execution], limit: int) -> ExecutionPage:
    """``items``: up to ``limit + 1`` executions, newest first (one more tells whether there is
    a next page)."""
    page = items[:limit]
    more = len(items) > limit and bool(page)
    return ExecutionPage(
        executions=[ExecutionSummary.of(ex) for ex in page],
        next_cursor=encode_cursor(page[-1]) if more else None,
    )


# ---------------------------------------------------------------------- bodies
def json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise BadRequest("the request needs a JSON object as its body")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
    return data


def submit_request(body: bytes) -> SubmitRequest:
    """A submission: the workflow may be an object or YAML text (never a path on the server)."""
    data = json_body(body)
    wf = data.get("workflow")
    if isinstance(wf, str):
        wf = parse_yaml(wf, source="workflow")
        if not isinstance(wf, dict):
            raise InvalidWorkflow("the workflow YAML must be a mapping with 'name' and 'steps'")
    if isinstance(wf, dict) and isinstance(wf.get("steps"), list):
        paths = [
            str(st.get("name"))
            for st in wf["steps"]
            if isinstance(st, dict)
            and isinstance(st.get("software"), str)
            and not st["software"].lstrip().startswith(("{", "["))
        ]
        if paths:
            raise InvalidWorkflow(
                f"step(s) {', '.join(paths)}: give the software description itself (a JSON "
                "object), not a file name: the server does not read files named in requests"
            )
    try:
        if isinstance(wf, dict):
            data = {
                **data,
                "workflow": to_model(Workflow, wf, source="workflow", error=InvalidWorkflow),
            }
        return SubmitRequest.model_validate(data)
    except ValidationError as e:
        raise invalid_body(e, data) from None
    except (TypeError, AttributeError) as e:
        # a field validator met a JSON type it does not expect (e.g. an object as a memory
        # size): bad input, not a bug of the server
        raise BadRequest(
            "request body is not valid: a field has a value of the wrong type",
            details=[f"{type(e).__name__}: {e}"],
        ) from None


def check_retry(ex: Execution) -> None:
    if not ex.state.final:
        raise Conflict(
            f"execution {ex.id} is still {ex.state.value}; wait for it or cancel it first"
        )
    if ex.state is ExecutionState.COMPLETED:
        raise Conflict(f"execution {ex.id} completed; there is nothing to retry")


def log_args(args: dict[str, str | None]) -> tuple[str, int, int, int | None]:
    """stream, offset, limit, attempt of ``GET .../log``."""
    stream = (args.get("stream") or "stdout").strip().lower()
    offset = int_arg(args.get("offset"), "offset", default=0, low=0)
    limit = int_arg(
        args.get("limit"), "limit", default=LOG_LIMIT_DEFAULT, low=0, high=LOG_LIMIT_MAX, clamp=True
    )
    attempt = int_arg(args.get("attempt"), "attempt", default=None, low=1)
    assert offset is not None and limit is not None
    return stream, offset, limit, attempt
