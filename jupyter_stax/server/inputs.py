"""Reading a request's query parameters and body into values and models (bad input is always a
400 that says what was wrong). What is done with them is the operations layer's job
(:mod:`jupyter_stax.operations`). No tornado here, so all of it is testable without a server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..core.api import (
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    SubmitRequest,
)
from ..core.documents import parse_yaml, to_model
from ..core.errors import BadRequest, InvalidWorkflow
from ..core.models import Workflow
from ..core.staging import FetchRequest
from ..core.states import ExecutionState
from ..operations.paging import state_arg
from .errors import invalid_body

if TYPE_CHECKING:
    from ..core.published import PublishRequest, TriggerRequest
    from ..operations.builds import BuildRequest
    from ..operations.workflows import RerunRequest


M = TypeVar("M", bound=BaseModel)


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


def page_args(args: dict[str, str | None]) -> tuple[ExecutionState | None, int, str | None]:
    """state, limit and cursor of ``GET executions`` (the cursor is checked by the operation)."""
    state = state_arg(args.get("state"))
    limit = int_arg(
        args.get("limit"), "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX
    )
    assert limit is not None
    return state, limit, args.get("cursor") or None


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
    """A submission: the workflow may be an object or YAML text (never a path on the server;
    the files it may name are the operation's rule: :mod:`jupyter_stax.operations.requests`)."""
    data = json_body(body)
    wf = data.get("workflow")
    if isinstance(wf, str):
        wf = parse_yaml(wf, source="workflow")
        if not isinstance(wf, dict):
            raise InvalidWorkflow("the workflow YAML must be a mapping with 'name' and 'steps'")
        data = {**data, "workflow": wf}
    return _validate(SubmitRequest, _with_workflow(data))


def _with_workflow(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its ``workflow`` object (when it is one) read as a :class:`Workflow`."""
    wf = data.get("workflow")
    if not isinstance(wf, dict):
        return data
    try:
        model = to_model(Workflow, wf, source="workflow", error=InvalidWorkflow)
    except ValidationError as e:
        raise invalid_body(e, data) from None
    except (TypeError, AttributeError) as e:
        raise _wrong_type(e) from None
    return {**data, "workflow": model}


def _validate(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as a ``model`` request body; every way it can be wrong is a 400."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_body(e, data) from None
    except (TypeError, AttributeError) as e:
        raise _wrong_type(e) from None


def _wrong_type(e: Exception) -> BadRequest:
    """A field validator met a JSON type it does not expect (e.g. an object as a memory size):
    bad input, not a bug of the server."""
    return BadRequest(
        "request body is not valid: a field has a value of the wrong type",
        details=[f"{type(e).__name__}: {e}"],
    )


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


def instance_args(args: dict[str, str | None]) -> tuple[str | None, str | None, int]:
    """state, cursor, limit of ``GET .../instances``."""
    from ..core.api import INSTANCE_LIMIT_DEFAULT, INSTANCE_LIMIT_MAX

    state = (args.get("state") or "").strip().lower() or None
    limit = int_arg(
        args.get("limit"),
        "limit",
        default=INSTANCE_LIMIT_DEFAULT,
        low=1,
        high=INSTANCE_LIMIT_MAX,
        clamp=True,
    )
    assert limit is not None
    return state, args.get("cursor") or None, limit


def fetch_request(body: bytes) -> FetchRequest:
    """The body of ``POST executions/{id}/fetch`` (an empty body: every step's outputs)."""
    if not body.strip():
        return FetchRequest()
    try:
        data = json.loads(body)
    except ValueError as e:
        raise BadRequest(f"the request body is not JSON: {e}") from None
    return to_model(FetchRequest, data, source="fetch request", error=BadRequest)


def build_request(body: bytes, root_dir: str, catalogs: Sequence[str] = ()) -> BuildRequest:
    """A build request (:class:`~jupyter_stax.operations.builds.BuildRequest`) whose recipe and
    catalog paths are inside the server's root directory (what its users may name), or whose
    catalog is one of the catalog files the server reads (``catalogs``: where the sidebar's
    "Build for cluster..." adds a family's new variant); Forbidden for one outside."""
    from pathlib import Path

    from ..core.errors import Forbidden
    from ..operations.builds import BuildRequest

    data = json_body(body)
    try:
        req = BuildRequest.model_validate(data)
    except ValidationError as e:
        raise invalid_body(e, data) from None
    root = Path(root_dir).expanduser().resolve()
    paths: dict[str, str] = {}
    for field in ("recipe", "catalog"):
        text = getattr(req, field)
        if text is None:
            continue
        p = (root / text).resolve()
        if field == "catalog" and any(Path(c).expanduser().resolve() == p for c in catalogs):
            paths[field] = str(p)
            continue
        if not p.is_relative_to(root):
            raise Forbidden(f"{field} {text!r} is outside the server's root directory {root}")
        paths[field] = str(p)
    return req.model_copy(update=paths)


def publish_request(body: bytes) -> PublishRequest:
    """The body of ``POST workflows``: the workflow (an object, or YAML text that may hold an
    ``inputs:`` block), name, version, default cluster, input declarations."""
    from ..core.published import PublishRequest

    return _validate(PublishRequest, _with_workflow(json_body(body)))


def trigger_request(body: bytes) -> TriggerRequest:
    """The body of ``POST workflows/{name}``: inputs, cluster, version (nothing else: the steps
    are the publisher's). An empty body: no inputs."""
    from ..core.published import TriggerRequest

    data = json_body(body) if body.strip() else {}
    try:
        return TriggerRequest.model_validate(data)
    except ValidationError as e:
        raise invalid_body(e, data) from None


def rerun_request(body: bytes) -> RerunRequest:
    """The body of ``POST reruns``."""
    from ..operations.workflows import RerunRequest

    return _validate(RerunRequest, json_body(body))
