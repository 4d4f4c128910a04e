"""Errors a user can meet, each saying what was wrong and what to do.

Every surface (REST handlers, magics, the CLI) maps these to its own form through ONE table
(HTTP status here as a class attribute, exit codes in the CLI), so a new error class is handled
everywhere by declaring it once.
"""

from __future__ import annotations


class StaxError(Exception):
    """Base class. ``http_status`` is what the REST API answers with."""

    http_status = 500

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {d}" for d in self.details)


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
