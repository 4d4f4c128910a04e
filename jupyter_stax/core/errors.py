"""Errors a user can meet, each saying what was wrong and what to do.

Every surface (REST handlers, magics, the CLI) maps these to its own form through ONE table
(HTTP status here as a class attribute, exit codes in the CLI), so a new error class is handled
everywhere by declaring it once.

Errors cross process boundaries by NAME (``ErrorBody.error`` of the REST API, the answer of a
detached submission's child process). Every subclass of :class:`StaxError` defined in
``jupyter_stax.core`` (the vocabulary every side imports: these classes, and e.g.
``core.images.ImageMismatch``) registers itself under its class name when it is defined
(``__init_subclass__``); :func:`error_class` is the way back from a name to the class. There is
no hand-kept list. A class defined elsewhere (the engine's ``LostOwnership``, a client's own)
is not registered, so the same name means the same class in every process: it comes back as
the class its HTTP status stands for (409: :class:`Conflict`, ...). A class outside core that
should cross by its own name says so: ``class X(StaxError, wire=True)``.
"""

from __future__ import annotations

from typing import Any

_REGISTRY: dict[str, type[StaxError]] = {}
_CORE = __name__.rpartition(".")[0] + "."


class StaxError(Exception):
    """Base class. ``http_status`` is what the REST API answers with."""

    http_status = 500

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def __init_subclass__(cls, *, wire: bool | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if wire is None:
            wire = cls.__module__.startswith(_CORE)
        if not wire:
            return
        known = _REGISTRY.get(cls.__name__)
        if known is not None and (known.__module__, known.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise TypeError(
                f"two StaxError classes are named {cls.__name__!r} ({known.__module__} and "
                f"{cls.__module__}); errors cross boundaries by name, so names must be unique"
            )
        _REGISTRY[cls.__name__] = cls  # a module reloaded replaces its own class

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {d}" for d in self.details)


#: the class an HTTP status stands for when an answer names no class this side knows
_BY_STATUS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    503: "ServiceUnavailable",
}


def error_class(name: str, status: int | None = None) -> type[StaxError]:
    """The StaxError class registered under ``name`` (``ErrorBody.error``); for a name this
    process does not know, the class ``status`` stands for, else :class:`StaxError`."""
    cls = _REGISTRY.get(name)
    if cls is None and status is not None:
        cls = _REGISTRY.get(_BY_STATUS.get(status, ""))
    return cls or StaxError


def registered() -> dict[str, type[StaxError]]:
    """Every StaxError class known in this process, by name (tests, documentation)."""
    return dict(_REGISTRY)


class InvalidWorkflow(StaxError):
    """The workflow document, its parameters or its options are wrong; nothing was submitted."""

    http_status = 400


class InvalidClusterConfig(StaxError):
    """The clusters file (or traitlets cluster settings) is wrong."""

    http_status = 400


class UnknownCluster(StaxError):
    http_status = 404


class NotFound(StaxError):
    """An execution, step or file that does not exist."""

    http_status = 404


class Conflict(StaxError):
    """The request does not fit the current state (cancel of a finished execution, ...)."""

    http_status = 409


class SchedulerUnavailable(StaxError):
    """The scheduler did not answer; the request can be tried again later."""

    http_status = 503


class BadRequest(StaxError):
    """A query parameter, path or body the API cannot use."""

    http_status = 400


class Forbidden(StaxError):
    """The request is understood but refused (e.g. a log file that links out of its step)."""

    http_status = 403


class ServiceUnavailable(StaxError):
    """jupyter_stax is not running in this server (starting, or could not start)."""

    http_status = 503
