"""Fetching a step's outputs on request (``jupyter stax fetch``, ``%stax fetch``,
``run.fetch(...)``, ``POST executions/{id}/fetch``): ONE operation for every surface.

Which files: the step's ``outputs`` (every step that has some), or a ``pattern`` given (checked
like an output pattern: it never leaves the step directory). Where: ``to`` when given (a named
step: ``TO/<path>``; every step: ``TO/<step>/<path>``); otherwise ``<outputs dir>/<id>/<step>/``
for a remote cluster, and in place (nothing copied: the answer says where they are) for a
cluster that shares this file system. The files move through the cluster's transport (the SSH
one for a remote cluster: streamed, never whole in memory) and are written by
:func:`jupyter_stax.engine.landing.land`: never outside the destination, never through a link,
never over a different local file unless ``overwrite``. What was fetched (size, sha256, local
path) is recorded on the step (``status --json``, the REST API).

Blocking (file and network I/O): the server calls it on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import BadRequest
from ..core.models import Cluster, Execution
from ..core.staging import FetchedStep, FetchRequest, FetchResult

if TYPE_CHECKING:
    from ..core.clusters import ClusterRegistry
    from ..engine.staging import Report
    from ..engine.store import Store
    from ..engine.transport import Transport


def fetch(
    store: Store,
    registry: ClusterRegistry,
    ex: Execution,
    request: FetchRequest,
    transport_for: Callable[[Cluster, Path], Transport] | None = None,
    progress: Report | None = None,
) -> FetchResult:
    """Fetch (see the module docstring); BadRequest when nothing can be named."""
    from ..engine import staging
    from ..engine.planning import state_dir
    from ..engine.transports import transport_for as default_transport

    make = transport_for or default_transport
    if request.step is not None:
        from . import step_of

        chosen = [step_of(ex, request.step)]
        if request.pattern is None and not ex.workflow.step(request.step).outputs:
            raise BadRequest(
                f"step {request.step!r} declares no outputs; name a pattern, e.g. "
                f"`jupyter stax fetch {ex.id} {request.step} '*.csv'`"
            )
    else:
        chosen = [
            s for s in ex.steps if request.pattern is not None or ex.workflow.step(s.name).outputs
        ]
        if not chosen:
            raise BadRequest(
                f"no step of execution {ex.id} declares outputs; name a step and a pattern"
            )
    result = FetchResult(execution_id=ex.id)
    transports: dict[str, Transport] = {}
    try:
        for s in chosen:
            c = registry.get(s.cluster)
            tr = transports.get(c.name)
            if tr is None:
                tr = transports[c.name] = make(c, state_dir(store, c))
            dest = None
            if request.to is not None:
                to = Path(request.to).expanduser().absolute()
                dest = to if request.step is not None else to / s.name
            if not s.attempt:
                result.steps.append(FetchedStep(
                    step=s.name, cluster=c.name, warning="not started: no files yet"
                ))
                continue
            files = staging.collect(
                ex,
                ex.workflow.step(s.name),
                s,
                c,
                tr,
                patterns=None if request.pattern is None else [request.pattern],
                dest=dest,
                overwrite=request.overwrite,
                copy=True if dest is not None else None,
                on_request=True,
                progress=progress,
            )
            s.files = files
            store.set_step_files(ex.id, s)
            result.steps.append(FetchedStep(
                step=s.name, cluster=c.name, fetch=files.fetch, directory=files.fetched_to,
                files=files.outputs, warning=files.warning,
            ))
    finally:
        for tr in transports.values():
            tr.close()
    return result
