"""A remote cluster's detail (``GET clusters/{name}``, ``jupyter stax clusters NAME``, the
sidebar): its scheduler's live numbers, asked through the cluster's transport in ONE command
(:func:`jupyter_stax.engine.batch.batched_summary`), and its SSH connection's state.

A login node that does not answer, or refuses us, is not an error of the request: the detail
comes back with no summary, a ``note`` saying why, and the connection's state (reconnecting
since when, or the host key / authentication problem to fix)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.api import ClusterDetail, ConnectionState
from ..core.errors import StaxError
from ..core.models import Cluster

if TYPE_CHECKING:
    from ..engine.transport import Transport


def connection_state(transport: Transport) -> ConnectionState | None:
    """The transport's connection state (None: a transport with no connection)."""
    state = getattr(transport, "connection_state", None)
    return state() if callable(state) else None


def remote_detail(
    detail: ClusterDetail, c: Cluster, transport: Transport, timeout: float
) -> ClusterDetail:
    """``detail`` with the live numbers (or a note) and the connection state. Blocking."""
    from ..engine import schedulers
    from ..engine.batch import batched_summary

    known = schedulers.get(c.scheduler)
    failed: StaxError | None = None
    if known is not None and known.summary is not None:
        try:
            detail.summary = batched_summary(known.summary, c, transport, timeout)
        except StaxError as e:
            failed = e
    else:
        detail.note = f"no live numbers for remote {c.scheduler} clusters yet"
    detail.connection = conn = connection_state(transport)
    if failed is not None:
        if conn is not None and conn.state in ("reconnecting", "refused"):
            # the connection's error says it all (and what to do): not twice
            detail.note = f"no live numbers while the connection is {conn.state}"
        else:
            detail.note = f"no live numbers from {c.host}: {failed}"
    return detail
