"""The ONE operations layer: what every surface does with clusters, images and executions.

The REST handlers (:mod:`jupyter_stax.server.handlers`) parse HTTP, call one operation here and
map its error; the local service (:class:`jupyter_stax.service.LocalService`, which the CLI, the
kernel API and the widgets use when no server runs) calls the same operations. So a log chunk,
a page of executions, a cluster's detail, a step lookup and the retry precondition are written
once, and both services give the same answer to the same request (``tests/cli/test_parity.py``).

Layering: above :mod:`jupyter_stax.engine` and :mod:`jupyter_stax.core`, below the surfaces
(``server``, ``kernel``, ``cli``) and the services; it imports none of them.

What the operations act on (the decision): an :class:`Operations` object is built over ONE
store and ONE cluster registry, given as zero-argument callables so that each surface keeps its
own way of getting them: the server answers ``ServiceUnavailable`` while its engine is not up
(``StaxApp.require_engine().store``), the local service opens the store and reads the clusters
file only when an operation needs them. The operations that drive an execution (submit, cancel,
retry) take the :class:`~jupyter_stax.engine.engine.Engine` they act on as a PARAMETER: the
server passes the engine it hosts for its whole life, the local service a short-lived one it
starts for that one call (the background engine then drives what it left). Reads never need an
engine: every state change is in the store before anyone is told.

Every method is synchronous and may block (SQLite, file IO, ``sinfo``): the server calls the
blocking ones on a worker thread; the coroutines are the ones that drive an engine.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..core.api import (
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    ClusterDetail,
    ClusterInfo,
    LogChunk,
)
from ..core.errors import BadRequest, Conflict, NotFound, StaxError
from ..core.models import Cluster, Execution, ParamValue, StepRun, SubmitOptions, Workflow
from ..core.staging import FetchRequest, FetchResult
from ..core.states import ExecutionState
from .logs import Undecodable, log_file_name, read_chunk
from .paging import decode_cursor, page_of, state_arg
from .requests import refuse_outside_root, refuse_server_paths

if TYPE_CHECKING:
    from ..core.api import ImageList
    from ..core.clusters import ClusterRegistry
    from ..engine.engine import Engine
    from ..engine.store import Store

__all__ = ["COMMAND_TIMEOUT", "Operations", "check_retry", "step_of"]

#: seconds a scheduler command of a cluster's live summary (``sinfo``, ``squeue``) may take
COMMAND_TIMEOUT = 10.0


def step_of(ex: Execution, name: str) -> StepRun:
    """``ex.step(name)``, or NotFound naming the steps there are."""
    try:
        return ex.step(name)
    except KeyError:
        raise NotFound(
            f"execution {ex.id} has no step {name!r}; its steps: "
            + ", ".join(s.name for s in ex.steps)
        ) from None


def check_retry(ex: Execution) -> Execution:
    """The retry precondition: ``ex`` when it can be retried, else Conflict saying why (it is
    still running, or it completed and there is nothing to retry)."""
    if not ex.state.final:
        raise Conflict(
            f"execution {ex.id} is still {ex.state.value}; wait for it or cancel it first"
        )
    if ex.state is ExecutionState.COMPLETED:
        raise Conflict(f"execution {ex.id} completed; there is nothing to retry")
    return ex


def in_range(name: str, n: int, low: int, high: int | None = None) -> int:
    """``n`` when ``low <= n <= high``, else BadRequest in the words of the REST API's query
    parameters (so both services refuse a value the same way)."""
    if n < low:
        raise BadRequest(f"{name} must be at least {low}, not {n}")
    if high is not None and n > high:
        raise BadRequest(f"{name} must be at most {high}, not {n}")
    return n


def cluster_info(registry: ClusterRegistry, c: Cluster) -> ClusterInfo:
    return ClusterInfo.model_validate({**c.model_dump(), "work_dir": str(registry.work_dir(c))})


class Operations:
    """The operations over one store and one cluster registry (see the module's docstring).

    ``store`` and ``registry`` are called each time an operation needs them (they may raise,
    e.g. ``ServiceUnavailable``); ``image_catalogs`` are the catalog sources (None: the
    defaults, see :mod:`jupyter_stax.engine.catalog`)."""

    def __init__(
        self,
        store: Callable[[], Store],
        registry: Callable[[], ClusterRegistry],
        image_catalogs: Callable[[], list[str] | None] = lambda: None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._image_catalogs = image_catalogs

    # ------------------------------------------------------------------ clusters and images
    def clusters(self) -> list[ClusterInfo]:
        reg = self._registry()
        return [cluster_info(reg, c) for c in reg]

    def cluster(self, name: str) -> ClusterDetail:
        """A cluster with live numbers from its scheduler where it has them (runs ``sinfo``
        and ``squeue`` for Slurm, ``qstat``/``qhost`` for Grid Engine: blocking)."""
        from ..engine import schedulers
        from ..engine.schedulers import local
        from ..engine.transport import LocalTransport

        reg = self._registry()
        c = reg.get(name)
        detail = ClusterDetail.model_validate(cluster_info(reg, c).model_dump())
        known = schedulers.get(c.scheduler)
        if c.remote:
            detail.note = (
                f"no live numbers for remote clusters yet ({c.name} is reached over SSH at "
                f"{c.host})"
            )
        elif known is not None and known.summary is not None:
            transport = LocalTransport()  # the cluster's own, once clusters may be remote
            detail.summary = known.summary(
                c, lambda argv: schedulers.run_checked(transport, argv, COMMAND_TIMEOUT)
            )
        elif c.scheduler == "local":
            running = self._store().list_executions(state="running", limit=10**6)
            detail.summary = local.summary(c, running)
        else:
            detail.note = (
                f"no live numbers for {c.scheduler} clusters yet (Slurm, Grid Engine and local "
                "clusters have them)"
            )
        return detail

    def images(self, cluster: str | None = None) -> ImageList:
        """The StaX catalog as its sources are now; with ``cluster``, each image's fit there.
        Blocking: sources may run ``apptainer``/``skopeo inspect``."""
        from ..engine.catalog import Catalog

        c = self._registry().get(cluster) if cluster else None
        return Catalog.load(self._image_catalogs()).listing(c)

    def catalog_references(self) -> set[str]:
        """Names and references of the configured catalog's images (what a request may name)."""
        from ..engine.catalog import Catalog

        cat = Catalog.load(self._image_catalogs())
        return {x for i in cat.images for x in (i.name, i.reference, i.family)}

    # ------------------------------------------------------------------ executions
    def get(self, execution_id: str) -> Execution:
        """An execution by id or unique id prefix; NotFound otherwise."""
        store = self._store()
        return store.get(store.resolve_id(execution_id))

    def step(self, execution_id: str, name: str) -> tuple[Execution, StepRun]:
        ex = self.get(execution_id)
        return ex, step_of(ex, name)

    def page(
        self, state: str | ExecutionState | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Execution], str | None]:
        """Newest first, at most ``limit``, older than ``cursor``; the cursor of the next page,
        or None on the last one. BadRequest for an unknown state, a cursor that is not one, or
        a ``limit`` below 1 (the REST API also caps it at ``PAGE_LIMIT_MAX`` per request; local
        callers such as ``%stax list --limit 1000`` may ask for more at once)."""
        in_range("limit", limit, 1)
        st = state if isinstance(state, ExecutionState) else state_arg(state)
        before = decode_cursor(cursor) if cursor else None
        items = self._store().list_executions(
            state=st.value if st else None, limit=limit + 1, before=before
        )
        return page_of(items, limit)

    def read_log(
        self,
        execution_id: str,
        step: str,
        stream: str = "stdout",
        offset: int = 0,
        attempt: int | None = None,
        limit: int | None = None,
        *,
        errors: Undecodable = "replace",
    ) -> LogChunk:
        """A chunk of a step's output from byte ``offset`` (``attempt`` None: the current one;
        ``limit`` None: ``LOG_LIMIT_DEFAULT``, at most ``LOG_LIMIT_MAX``). A missing file is an
        empty chunk; ``eof`` once the step is final and all was read. Only the step's own
        regular files are read (see :mod:`.logs`): Forbidden otherwise. Blocking (file IO)."""
        in_range("offset", offset, 0)
        if limit is not None:
            in_range("limit", limit, 0)
        ex, s = self.step(execution_id, step)
        name = log_file_name(stream, attempt, s.attempt, s.name)
        self._refuse_remote_log(ex, s, name)
        final = s.state.final or attempt not in (None, s.attempt)
        want = LOG_LIMIT_DEFAULT if limit is None else min(limit, LOG_LIMIT_MAX)
        return read_chunk(
            s.directory,
            name,
            offset=offset,
            limit=want,
            final=final,
            label=f"{name} of step {s.name!r}",
            errors=errors,
        )

    def _refuse_remote_log(self, ex: Execution, s: StepRun, name: str) -> None:
        """A step of a remote cluster keeps its log on the cluster; reading it here would read a
        path of THIS machine (empty, or somebody else's file). Until logs go through the
        cluster's transport (the next slice of remote clusters), say where the log is."""
        cluster = s.cluster or ex.cluster
        try:
            c = self._registry().get(cluster)
        except StaxError:
            return  # a cluster no longer configured: its steps ran where the store says
        if c.remote:
            raise Conflict(
                f"{name} of step {s.name!r} is on remote cluster {c.name!r} ({c.host}); reading "
                f"remote logs from here is not supported yet: `ssh {c.host} cat "
                f"{shlex.quote(s.directory + '/' + name)}`"
            )

    def fetch(self, execution_id: str, request: FetchRequest) -> FetchResult:
        """A step's outputs, fetched on request (see :mod:`.fetching`). Blocking."""
        from .fetching import fetch

        return fetch(self._store(), self._registry(), self.get(execution_id), request)

    def retryable(self, execution_id: str) -> Execution:
        """The execution when it can be retried (:func:`check_retry`), else Conflict."""
        return check_retry(self.get(execution_id))

    # ------------------------------------------------------------------ driving (an engine)
    async def submit(
        self,
        engine: Engine,
        workflow: Workflow,
        cluster: str,
        params: Mapping[str, ParamValue] | None = None,
        options: SubmitOptions | None = None,
        steps: list[str] | None = None,
        *,
        over_network: bool = False,
        root: str | None = None,
    ) -> Execution:
        """Validate, store and start ``workflow`` on ``engine`` (detached: until every step is
        queued). ``over_network``: the workflow came in a request (REST), so it may name no
        file on this machine (:func:`.requests.refuse_server_paths`, the one rule), and the files it
        moves lie inside ``root`` (the server's root directory: :func:`.requests.
        refuse_outside_root`)."""
        if over_network:
            refuse_server_paths(workflow, self.catalog_references)
            reg = self._registry()
            fetched = [
                s.name for s in workflow.steps
                if s.fetch == "auto" and reg.get(s.cluster or cluster).remote
            ]
            options = refuse_outside_root(workflow, options or SubmitOptions(), root, fetched)
        ex: Execution = await engine.submit(workflow, cluster, params, options, steps)
        return ex

    async def cancel(self, engine: Engine, execution_id: str) -> Execution:
        """Ask ``engine`` to cancel (it drives the execution itself when its owner is gone);
        Conflict when the execution is already final. The result may not be final yet."""
        ex: Execution = await engine.cancel(execution_id)
        return ex

    async def retry(self, engine: Engine, execution_id: str, *, schedule: bool = True) -> Execution:
        """Run the failed, lost, canceled and skipped steps again on ``engine``, after the ONE
        precondition (:func:`check_retry`). ``schedule=False``: only reset the steps, for a
        long-lived engine to adopt (the local service's short-lived engine)."""
        ex = self.retryable(execution_id)
        out: Execution = await engine.retry(ex.id, schedule=schedule)
        return out
