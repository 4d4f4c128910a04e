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

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.api import (
    INSTANCE_LIMIT_DEFAULT,
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    ClusterDetail,
    ClusterInfo,
    InstanceInfo,
    InstancePage,
    LogChunk,
)
from ..core.errors import BadRequest, Conflict, NotFound, StaxError
from ..core.models import (
    UNVERIFIED_WARNING,
    Cluster,
    Execution,
    ParamValue,
    StepRun,
    SubmitOptions,
    Workflow,
)
from ..core.staging import FetchRequest, FetchResult
from ..core.states import ExecutionState
from .logs import Undecodable, log_file_name, read_chunk
from .paging import decode_cursor, page_of, state_arg
from .remote_cluster import remote_detail
from .remote_logs import read_remote_chunk
from .requests import refuse_outside_root, refuse_server_paths

if TYPE_CHECKING:
    from ..core.api import ImageList
    from ..core.clusters import ClusterRegistry
    from ..core.nbparams import NotebookParameters
    from ..core.published import (
        PublishedSummary,
        PublishedWorkflow,
        PublishRequest,
        TriggerRequest,
    )
    from ..core.stepfiles import StepFileList
    from ..engine.builds.run import BuildReport, Progress
    from ..engine.catalog import Catalog
    from ..engine.engine import Engine
    from ..engine.staging import Report
    from ..engine.store import Store
    from ..engine.transport import Transport
    from .builds import BuildJobs, BuildRequest, BuildStatus
    from .stepfiles import Download
    from .workflows import Planned, RerunRequest

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


#: seconds without a heartbeat after which an engine on another machine counts as gone
LEASE_TIMEOUT = 15.0
#: seconds a read waits for the engine's first reconcile pass of an execution nobody drove
CHECK_TIMEOUT = 8.0
#: seconds between two looks at the store while waiting for that pass
CHECK_POLL = 0.1


def marked(store: Store, executions: list[Execution]) -> list[Execution]:
    """The executions, with :data:`~..core.models.UNVERIFIED_WARNING` added to those whose
    stored states no engine has reconciled yet (:meth:`Store.unverified`)."""
    stale = store.unverified(LEASE_TIMEOUT, [ex.id for ex in executions if not ex.state.final])
    for ex in executions:
        if ex.id in stale and UNVERIFIED_WARNING not in ex.warnings:
            ex.warnings.append(UNVERIFIED_WARNING)
    return executions


class Operations:
    """The operations over one store and one cluster registry (see the module's docstring).

    ``store`` and ``registry`` are called each time an operation needs them (they may raise,
    e.g. ``ServiceUnavailable``); ``image_catalogs`` are the catalog sources (None: the
    defaults, see :mod:`jupyter_stax.engine.catalog`). ``transport``: a cluster's transport
    (remote logs and live numbers go through it); the server passes its engine's, so the
    operations share the engine's ONE connection per cluster. Without it, the operations keep
    one transport per cluster of their own (closed by :meth:`close`)."""

    def __init__(
        self,
        store: Callable[[], Store],
        registry: Callable[[], ClusterRegistry],
        image_catalogs: Callable[[], list[str] | None] = lambda: None,
        transport: Callable[[Cluster], Transport] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._image_catalogs = image_catalogs
        #: until when reads wait for an execution's first reconcile pass (see to_check)
        self._until: dict[str, float] = {}
        self._transport_of = transport
        self._own: dict[str, Transport] = {}
        self._lock = threading.Lock()

    def transport(self, c: Cluster) -> Transport:
        """The transport of cluster ``c`` (the given one, or one of these operations' own)."""
        if self._transport_of is not None:
            return self._transport_of(c)
        with self._lock:
            t = self._own.get(c.name)
            if t is None:
                from ..engine.planning import state_dir
                from ..engine.transports import transport_for

                t = transport_for(c, state_dir(self._store(), c))
                self._own[c.name] = t
            return t

    def close(self) -> None:
        """Close the transports these operations opened themselves."""
        with self._lock:
            own, self._own = self._own, {}
        for t in own.values():
            t.close()

    # ------------------------------------------------------------------ clusters and images
    def clusters(self) -> list[ClusterInfo]:
        reg = self._registry()
        return [cluster_info(reg, c) for c in reg]

    def cluster(self, name: str) -> ClusterDetail:
        """A cluster with live numbers from its scheduler where it has them (runs ``sinfo``
        and ``squeue`` for Slurm, ``qstat``/``qhost`` for Grid Engine: blocking). A remote
        cluster's run on the cluster in one command, and its connection state comes along
        (:mod:`.remote_cluster`)."""
        from ..engine import schedulers
        from ..engine.schedulers import local
        from ..engine.transport import LocalTransport

        reg = self._registry()
        c = reg.get(name)
        detail = ClusterDetail.model_validate(cluster_info(reg, c).model_dump())
        known = schedulers.get(c.scheduler)
        if c.remote:
            # through the cluster's transport: ONE command, and the connection's state
            return remote_detail(detail, c, self.transport(c), COMMAND_TIMEOUT)
        if known is not None and known.summary is not None:
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

    def catalog_files(self) -> list[str]:
        """The catalog files among the catalog sources (a build may add variants to them)."""
        from ..engine.catalog import default_specs
        from ..engine.image_sources import CatalogFile

        specs = self._image_catalogs()
        return [s for s in (default_specs() if specs is None else specs) if CatalogFile.claims(s)]

    # ------------------------------------------------------------------ builds (issue 18)
    def build(
        self, request: BuildRequest, emit: Callable[[Progress], None] | None = None
    ) -> BuildReport:
        """Build a recipe's variants now and catalogue them (:mod:`.builds`). Blocking."""
        from .builds import build_now

        return build_now(self._registry(), request, emit)

    def start_build(self, request: BuildRequest) -> BuildStatus:
        """Plan (refused here) and start a background build; its status (PENDING)."""
        return self.build_jobs.submit(self._registry(), request)

    @property
    def build_jobs(self) -> BuildJobs:
        """Background builds (REST), one registry per Operations object."""
        from .builds import BuildJobs

        jobs: BuildJobs | None = self.__dict__.get("_build_jobs")
        if jobs is None:
            jobs = self.__dict__.setdefault("_build_jobs", BuildJobs())
        return jobs

    # ------------------------------------------------------------------ executions
    # ------------------------------------------------------------------ the first pass
    def to_check(self, ids: Sequence[str] | None = None) -> dict[str, float]:
        """The executions of ``ids`` (None: all) whose stored states no engine has reconciled
        yet (:meth:`Store.unverified`), each with the time (``time.monotonic``) until which
        reads wait for it: ``CHECK_TIMEOUT`` after the first read that found it so. Reads at
        the same time all wait for the same pass; later ones answer at once (with the warning
        while the pass lasts), so a poller is held up once."""
        now = time.monotonic()
        stale = self._store().unverified(LEASE_TIMEOUT, ids)
        for eid in stale:
            self._until.setdefault(eid, now + CHECK_TIMEOUT)
        return {eid: self._until[eid] for eid in stale if self._until[eid] > now}

    def unchecked(self, waits: Mapping[str, float]) -> bool:
        """Whether one of ``waits`` (from :meth:`to_check`) is still to be waited for: not
        reconciled yet, and its time not over."""
        now = time.monotonic()
        due = sorted(eid for eid, until in waits.items() if until > now)
        return bool(due and self._store().unverified(LEASE_TIMEOUT, due))

    async def checked(self, ids: Sequence[str] | None = None) -> None:
        """Wait (on the caller's event loop, at most ``CHECK_TIMEOUT`` s) until the engine has
        reconciled the executions ``ids`` (None: all) with the scheduler, so that a read's
        first answer is the true one; what is still not reconciled then is answered with
        :data:`~..core.models.UNVERIFIED_WARNING`. The server's handlers call it: its engine
        (on the same loop) adopts and reconciles meanwhile."""
        waits = self.to_check(ids)
        while self.unchecked(waits):
            await asyncio.sleep(CHECK_POLL)

    async def get_checked(self, execution_id: str) -> Execution:
        """:meth:`get`, once the engine's first reconcile pass of the execution is over or
        ``CHECK_TIMEOUT`` passed (:meth:`checked`): what ``GET executions/{id}`` answers."""
        with contextlib.suppress(NotFound):  # get says what was not found
            await self.checked([self.resolve(execution_id)])
        return self.get(execution_id)

    def resolve(self, execution_id: str) -> str:
        """The full id of an execution given by id or unique id prefix; NotFound otherwise."""
        return self._store().resolve_id(execution_id)

    def get(self, execution_id: str) -> Execution:
        """An execution by id or unique id prefix; NotFound otherwise."""
        store = self._store()
        return marked(store, [store.get(store.resolve_id(execution_id))])[0]

    def step(self, execution_id: str, name: str) -> tuple[Execution, StepRun]:
        ex = self.get(execution_id)
        return ex, step_of(ex, name)

    def page(
        self,
        state: str | ExecutionState | None = None,
        limit: int = 50,
        cursor: str | None = None,
        workflow: str | None = None,
    ) -> tuple[list[Execution], str | None]:
        """Newest first, at most ``limit``, older than ``cursor``; the cursor of the next page,
        or None on the last one. BadRequest for an unknown state, a cursor that is not one, or
        a ``limit`` below 1 (the REST API also caps it at ``PAGE_LIMIT_MAX`` per request; local
        callers such as ``%stax list --limit 1000`` may ask for more at once). ``workflow``
        (``NAME`` or ``NAME@VERSION``): only the executions triggered from that published
        workflow."""
        in_range("limit", limit, 1)
        st = state if isinstance(state, ExecutionState) else state_arg(state)
        before = decode_cursor(cursor) if cursor else None
        name, _, version = (workflow or "").partition("@")
        items = self._store().list_executions(
            state=st.value if st else None,
            limit=limit + 1,
            before=before,
            workflow=name or None,
            version=version or None,
        )
        return page_of(marked(self._store(), items), limit)

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
        regular files are read (see :mod:`.logs`; on a remote cluster the same rules apply
        there, :mod:`.remote_logs`): Forbidden otherwise. Blocking (file IO, or one command
        through a remote cluster's transport: TransportError when it does not answer)."""
        in_range("offset", offset, 0)
        if limit is not None:
            in_range("limit", limit, 0)
        ex, s = self.step(execution_id, step)
        name = log_file_name(stream, attempt, s.attempt, s.name)
        final = s.state.final or attempt not in (None, s.attempt)
        want = LOG_LIMIT_DEFAULT if limit is None else min(limit, LOG_LIMIT_MAX)
        label = f"{name} of step {s.name!r}"
        remote = self._remote_cluster(ex, s)
        if remote is not None:
            # the log is on the cluster: ONE command through its transport, same rules
            return read_remote_chunk(
                self.transport(remote), s.directory, name, offset=offset, limit=want,
                final=final, label=label, errors=errors,
            )
        return read_chunk(
            s.directory,
            name,
            offset=offset,
            limit=want,
            final=final,
            label=label,
            errors=errors,
        )

    def instances(
        self,
        execution_id: str,
        step: str,
        state: str | None = None,
        cursor: str | None = None,
        limit: int = INSTANCE_LIMIT_DEFAULT,
    ) -> InstancePage:
        """A page of a sweep step's instances from their records, the ones that did not
        complete first (``state``: only those). BadRequest for a step that is no sweep, an
        unknown state or a bad cursor. Blocking (reads one record pair per instance)."""
        from ..core import sweep as sw
        from ..core.jobscript import read_exit_record, read_start_record

        in_range("limit", limit, 1)
        ex, s = self.step(execution_id, step)
        definition = ex.workflow.step(s.name).sweep
        if definition is None:
            raise BadRequest(f"step {s.name!r} is not a sweep; it has no instances")
        states_known = ("waiting", "running", "completed", "failed", "lost", "canceled")
        if state is not None and state not in states_known:
            raise BadRequest(f"unknown instance state {state!r}; use one of {states_known}")
        try:
            offset = int(cursor) if cursor else 0
        except ValueError:
            raise BadRequest(f"cursor {cursor!r} is not one this API gave") from None
        spec = sw.spec(definition)
        d = Path(s.directory)
        total = len(spec)
        remote = self._remote_cluster(ex, s)
        if remote is not None:
            # the instances' records live on the cluster: ONE records read through its
            # transport (TransportError when it does not answer)
            got = self.transport(remote).read_records([str(d / str(i)) for i in range(total)])
            records = [(got[k].start, got[k].exit) for k in (str(d / str(i)) for i in range(total))]
        else:
            records = [
                (read_start_record(d / str(i)), read_exit_record(d / str(i)))
                for i in range(total)
            ]
        states = sw.instance_states(total, s.attempt, records, s.sweep)
        order = sw.page_order(states, state)
        picked = order[offset : offset + limit]
        counts: dict[str, int] = {}
        for st, _, _ in states:
            counts[st] = counts.get(st, 0) + 1
        return InstancePage(
            total=total,
            counts=counts,
            items=[
                InstanceInfo(
                    index=i,
                    state=states[i][0],
                    exit_code=states[i][1],
                    attempt=states[i][2],
                    params=sw.instance(spec, i),
                    directory=str(d / str(i)),
                )
                for i in picked
            ],
            next_cursor=str(offset + limit) if offset + limit < len(order) else None,
        )

    def _remote_cluster(self, ex: Execution, s: StepRun) -> Cluster | None:
        """The remote cluster where step ``s`` ran (None: it ran on this machine)."""
        try:
            c = self._registry().get(s.cluster or ex.cluster)
        except StaxError:
            return None  # a cluster no longer configured: its steps ran where the store says
        return c if c.remote else None

    def step_files(self, execution_id: str, step: str) -> StepFileList:
        """The regular files of a step's directory with sizes (:mod:`.stepfiles`). Blocking."""
        from .stepfiles import list_files

        return list_files(self, execution_id, step)

    def download(self, execution_id: str, step: str, path: str | None) -> Download:
        """One regular file of a step's directory, open to be sent (:mod:`.stepfiles`); the
        caller closes it. Blocking."""
        from .stepfiles import open_download

        return open_download(self, execution_id, step, path)

    def export_crate(
        self, execution_id: str, dest: Path, *, as_dir: bool = False, license: str | None = None
    ) -> Path:
        """Write the Workflow Run RO-Crate of a final execution to ``dest`` (a zip file, or a
        new directory with ``as_dir``; ``license``: a URL or SPDX id the crate states);
        Conflict while it is not final. Blocking (file IO)."""
        from .crate import build

        ex = self.get(execution_id)
        try:
            registry: ClusterRegistry | None = self._registry()
        except StaxError:
            registry = None  # no clusters file: every step's files are where the store says
        software = self._store().software(ex.id)
        return build(ex, software, registry, dest, as_dir=as_dir, license=license)

    def fetch(
        self, execution_id: str, request: FetchRequest, progress: Report | None = None
    ) -> FetchResult:
        """A step's outputs, fetched on request (see :mod:`.fetching`); ``progress`` told how
        the transfers go. Blocking."""
        from .fetching import fetch

        return fetch(
            self._store(), self._registry(), self.get(execution_id), request, progress=progress
        )

    def notebook_parameters(self, path: str | None, root: str | None) -> NotebookParameters:
        """A notebook's parameters, its path inside ``root`` (see :mod:`.notebooks`)."""
        from .notebooks import parameters_in_root

        return parameters_in_root(path, root)

    def retryable(self, execution_id: str) -> Execution:
        """The execution when it can be retried (:func:`check_retry`), else Conflict."""
        return check_retry(self.get(execution_id))

    # ------------------------------------------------------------------ published workflows
    def publish(
        self, request: PublishRequest, *, over_network: bool = False, root: str | None = None
    ) -> PublishedWorkflow:
        """Publish a new version of a workflow (:func:`.workflows.publish`). ``over_network``:
        the workflow came in a request, so it may name no file on this machine, and the files
        its triggers stage lie inside ``root`` (the rules of :meth:`submit`)."""
        from .workflows import publish

        def refuse(wf: Workflow) -> None:
            refuse_server_paths(wf, self.catalog_references)
            fetched = [s.name for s in wf.steps if s.fetch == "auto" and s.outputs]
            request.options = refuse_outside_root(wf, request.options, root, fetched)

        return publish(
            self._store(), self._registry(), request, refuse=refuse if over_network else None
        )

    def workflows(self) -> list[PublishedSummary]:
        """The latest version of every published workflow."""
        from .workflows import published_list

        return published_list(self._store())

    def workflow(self, name: str, version: str | None = None) -> PublishedWorkflow:
        """A published workflow (``NAME`` or ``NAME@VERSION``; default: its latest version)."""
        from .workflows import published

        return published(self._store(), name, version)

    def trigger_plan(
        self, name: str, request: TriggerRequest, default_cluster: str
    ) -> Planned:
        """What a trigger runs (inputs checked: BadRequest listing every problem)."""
        from .workflows import trigger_plan

        return trigger_plan(self._store(), name, request, default_cluster)

    def rerun_plan(
        self, request: RerunRequest, default_cluster: str, *, over_network: bool = False
    ) -> Planned:
        """What a re-run submits (images pinned, or the family's fitting variant, said)."""
        from .workflows import rerun_plan

        if over_network and request.crate is not None:
            refuse_server_paths(request.crate.workflow, self.catalog_references)
        return rerun_plan(
            self._store(),
            self._registry(),
            self._catalog,
            request,
            default_cluster,
            over_network=over_network,
        )

    def _catalog(self) -> Catalog:
        from ..engine.catalog import Catalog

        return Catalog.load(self._image_catalogs())

    async def trigger(
        self, engine: Engine, name: str, request: TriggerRequest, default_cluster: str
    ) -> Execution:
        """Trigger a published workflow on ``engine``; the new execution remembers it."""
        plan = await asyncio.to_thread(self.trigger_plan, name, request, default_cluster)
        return await self.start(engine, plan)

    async def rerun(
        self,
        engine: Engine,
        request: RerunRequest,
        default_cluster: str,
        *,
        over_network: bool = False,
    ) -> Execution:
        """Re-run a recorded run on ``engine`` (see :meth:`rerun_plan`)."""
        plan = await asyncio.to_thread(
            self.rerun_plan, request, default_cluster, over_network=over_network
        )
        return await self.start(engine, plan)

    @staticmethod
    async def start(engine: Engine, plan: Planned) -> Execution:
        """Submit a planned trigger or re-run on ``engine``."""
        ex: Execution = await engine.submit(
            plan.workflow, plan.cluster, plan.params, plan.options, origin=plan.origin
        )
        return ex

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
