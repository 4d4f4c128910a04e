"""The ONE map from exceptions to HTTP answers.

* a :class:`~jupyter_stax.core.errors.StaxError` answers with its ``http_status`` and its own
  message and details (declare a new error class once, with its status, and every surface
  handles it);
* tornado's ``HTTPError`` (authentication, unknown method, ...) answers with its status, in the
  same :class:`~jupyter_stax.core.api.ErrorBody` shape;
* anything else is a bug: 500, logged with its traceback.

The error classes themselves (``BadRequest``, ``Forbidden``, ``ServiceUnavailable`` ...) live in
:mod:`jupyter_stax.core.errors`, where every client finds them by name; tornado is imported
inside the functions.
"""

from __future__ import annotations

import logging
from http.client import responses
from typing import Any

from pydantic import ValidationError

from ..core.api import ErrorBody
from ..core.errors import BadRequest, StaxError
from ..core.validation import validation_messages

log = logging.getLogger("jupyter_stax.server")


def invalid_body(err: ValidationError, data: Any, what: str = "request body") -> BadRequest:
    """A pydantic error on client input, as a 400 with one detail line per problem."""
    lines = validation_messages(err, data)
    for i, e in enumerate(err.errors()):
        if e["type"] == "extra_forbidden":  # the workflow's hint does not fit a request body
            loc = lines[i].rpartition(": unknown field")[0]
            lines[i] = f"{loc}: unknown field (check the spelling; see the API's openapi.json)"
    return BadRequest(f"{what} is not valid", details=lines)


_BARE_MESSAGES = {
    403: "forbidden: this endpoint needs an authenticated and authorized user (send the "
    "server's token as the header 'Authorization: token <TOKEN>')",
    404: "not found: no such endpoint; see GET stax/api/openapi.json for the API",
    405: "method not allowed on this endpoint; see GET stax/api/openapi.json for the API",
}


def error_answer(exc: BaseException | None, status: int) -> tuple[int, ErrorBody]:
    """The status and body of the answer to ``exc`` (``status``: what tornado chose)."""
    from tornado.web import HTTPError

    if isinstance(exc, StaxError):
        return exc.http_status, ErrorBody(
            message=exc.message, details=exc.details, error=type(exc).__name__
        )
    if isinstance(exc, HTTPError):
        message = None
        if exc.log_message:
            try:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            except (TypeError, ValueError):
                message = exc.log_message
        message = message or _BARE_MESSAGES.get(exc.status_code) or exc.reason
        return exc.status_code, ErrorBody(
            message=message or responses.get(exc.status_code, "error"), error="HTTPError"
        )
    if exc is None:
        return status, ErrorBody(
            message=_BARE_MESSAGES.get(status) or responses.get(status, "error"),
            error="HTTPError",
        )
    return 500, ErrorBody(
        message="internal error in jupyter_stax (a bug; the server log has the traceback): "
        f"{type(exc).__name__}: {exc}",
        error=type(exc).__name__,
    )


def log_error(exc: BaseException | None, where: str) -> None:
    """Log a failed request: bugs with their traceback, expected errors in one line."""
    from tornado.web import HTTPError

    if exc is None or isinstance(exc, HTTPError):
        return  # jupyter_server's request log has the status already
    if isinstance(exc, StaxError):
        level = logging.WARNING if exc.http_status >= 500 else logging.DEBUG
        log.log(level, "%s: %s: %s", where, type(exc).__name__, exc)
        return
    log.error("%s failed", where, exc_info=exc)
