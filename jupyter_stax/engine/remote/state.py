"""A remote cluster's connection state as the surfaces show it (``GET clusters/{name}``, the
sidebar, ``jupyter stax clusters NAME``): connected, idle (opened on first use), reconnecting
since when and why, or refused for a reason the user must fix (host key, authentication)."""

from __future__ import annotations

from datetime import datetime, timezone

from ...core.api import ConnectionState
from . import errors as e
from .base import SSHConnection

#: error class -> the ``problem`` word of :class:`~jupyter_stax.core.api.ConnectionState`
PROBLEMS: dict[type[e.SSHError], str] = {
    e.SSHHostKeyUnknown: "host-key-unknown",
    e.SSHHostKeyChanged: "host-key-changed",
    e.SSHAuthRefused: "auth-refused",
    e.SSHUnknownHost: "unknown-host",
    e.SSHConnectionRefused: "connection-refused",
    e.SSHTimeout: "timeout",
    e.SSHConnectionLost: "connection-lost",
    e.SSHRemoteError: "remote-error",
    e.SSHConfigError: "config",
}


def problem_of(err: e.SSHError | None) -> str | None:
    if err is None:
        return None
    for cls in type(err).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return None


def describe(
    conn: SSHConnection, failing_since: float | None, last: e.SSHError | None,
    last_message: str | None = None,
) -> ConnectionState:
    """The state of ``conn``: ``failing_since``/``last`` are what the transport saw of its last
    calls (None: its last call went through)."""
    target = conn.target
    since = failing_since or conn.stats.down_since
    base = {"destination": target.destination, "client": target.ssh}
    if since is None:
        return ConnectionState(state="connected" if conn.connected else "idle", **base)
    error = (last.message if last is not None else None) or last_message or \
        conn.stats.last_error or "no answer"
    refused = last is not None and not last.transient
    return ConnectionState(
        state="refused" if refused else "reconnecting",
        since=datetime.fromtimestamp(since, timezone.utc),
        error=error,
        problem=problem_of(last),
        **base,
    )
