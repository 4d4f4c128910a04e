"""The ONE domain object every client surface uses: the CLI, the kernel API (``stax.connect``),
the magics and the widgets all talk to a :class:`StaxService`.

:class:`StaxService` is what a client can do with executions: submit, look, cancel, retry, read
logs. Two implementations speak the same models (:mod:`jupyter_stax.core.api`) and give the same
answer to the same request:

* :class:`LocalService`: the store on this machine. Its reads and rules (log chunks, paging,
  cluster detail, step lookup, the retry precondition, the catalog) are the operations layer's
  (:class:`jupyter_stax.operations.Operations`), the same code the REST handlers call; the
  driving of executions is left to the background engine (:mod:`jupyter_stax.engine.daemon`),
  which it starts on demand, and to short-lived engines it runs for a detached submission, a
  cancel or the reset of a retry. This is what clients use when no Jupyter server serves their
  store.
* :class:`~jupyter_stax.client.RestService`: the REST API of a running Jupyter server (its
  engine drives everything); :func:`~jupyter_stax.client.find_server` finds one, and
  ``stax.connect()`` / the CLI use it when it serves their store.

Every method is synchronous and may be called from a thread that runs an event loop (a kernel):
the few that need the engine's coroutines run them on a private loop in a worker thread then.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from .core.api import (
    INSTANCE_LIMIT_DEFAULT,
    ClusterDetail,
    ClusterInfo,
    ImageList,
    InstancePage,
    LogChunk,
    WorkflowSource,
)
from .core.api import Listed as Listed  # the CLI names list lines so
from .core.errors import error_class
from .core.models import Execution, ParamValue, SubmitOptions, Workflow
from .core.staging import FetchRequest, FetchResult, base_for
from .operations import CHECK_POLL, Operations
from .operations import CHECK_TIMEOUT as CHECK_TIMEOUT  # the bound of a read's wait
from .operations import LEASE_TIMEOUT as LEASE_TIMEOUT
from .operations import step_of as step_of  # the CLI and the kernel API look steps up here
from .operations.logs import read_chunk

if TYPE_CHECKING:
    from .core.clusters import ClusterRegistry
    from .core.published import PublishedSummary, PublishedWorkflow, PublishRequest
    from .engine.engine import Engine
    from .engine.store import Store
    from .operations.workflows import Planned

log = logging.getLogger("jupyter_stax.service")

T = TypeVar("T")
#: seconds after which a client no longer waits for a cancel to reach every step
CANCEL_TIMEOUT = 60.0
#: at most one look for executions nobody drives per this many seconds (LocalService reads)
RECONCILE_EVERY = 5.0


@runtime_checkable
class StaxService(Protocol):
    """What clients do with executions; every error is a
    :class:`~jupyter_stax.core.errors.StaxError` (the REST client maps the server's answers back
    to the same classes). Execution ids may be abbreviated to a unique prefix."""

    def describe(self) -> str:
        """``server http://127.0.0.1:8888/`` or ``store /path (background engine)``."""
        ...

    def clusters(self) -> list[ClusterInfo]: ...

    def cluster(self, name: str) -> ClusterDetail:
        """A cluster with live numbers from its scheduler where it has them."""
        ...

    def images(self, cluster: str | None = None) -> ImageList:
        """The StaX catalog; with ``cluster``, each image's fit there and the reason for each
        rule. Sources that cannot be read are in ``problems`` (said once), never an error."""
        ...

    def submit(
        self,
        workflow: WorkflowSource,
        cluster: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
        options: SubmitOptions | None = None,
        steps: list[str] | None = None,
    ) -> Execution:
        """Validate and store a workflow; an engine drives it from then on. ``cluster`` None:
        the service's default. Detached: returns once every step is queued."""
        ...

    def get(self, execution_id: str) -> Execution: ...

    def list(
        self,
        state: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        workflow: str | None = None,
    ) -> tuple[list[Listed], str | None]:
        """Newest first, at most ``limit``; the cursor of the next (older) page, or None.
        ``workflow`` (``NAME`` or ``NAME@VERSION``): only those triggered from it."""
        ...

    def publish(self, request: PublishRequest) -> PublishedWorkflow:
        """Publish a new version of a workflow with declared inputs (Conflict when that
        version exists)."""
        ...

    def workflows(self) -> builtins.list[PublishedSummary]:
        """The latest version of every published workflow."""
        ...

    def workflow(self, name: str, version: str | None = None) -> PublishedWorkflow:
        """A published workflow (``NAME`` or ``NAME@VERSION``; default: the latest version)."""
        ...

    def trigger(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        cluster: str | None = None,
        version: str | None = None,
    ) -> Execution:
        """Run a published workflow with ``inputs`` (BadRequest listing every unknown input,
        wrong type and missing required input); the execution remembers name and version."""
        ...

    def rerun(
        self,
        source: str | Path,
        cluster: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
    ) -> Execution:
        """Run a recorded run again: ``source`` is an execution id or a Workflow Run Crate
        (zip or directory) written by ``export``; the images pinned to the variants it used,
        or their family's variant that fits ``cluster`` (``origin.changes`` says which)."""
        ...

    def cancel(self, execution_id: str) -> Execution:
        """Ask for the cancel; the result may not be final yet (poll :meth:`get`). Conflict when
        the execution is already final."""
        ...

    def retry(self, execution_id: str) -> Execution:
        """Run the failed, lost, canceled and skipped steps again. Conflict unless final and
        not completed."""
        ...

    def read_log(
        self,
        execution_id: str,
        step: str,
        stream: str = "stdout",
        offset: int = 0,
        attempt: int | None = None,
        limit: int | None = None,
    ) -> LogChunk:
        """A chunk of a step's output from byte ``offset`` (``attempt`` None: the current one).
        A missing file is an empty chunk; ``eof`` once the step is final and all was read."""
        ...

    def instances(
        self,
        execution_id: str,
        step: str,
        state: str | None = None,
        cursor: str | None = None,
        limit: int = INSTANCE_LIMIT_DEFAULT,
    ) -> InstancePage:
        """A page of a sweep step's instances, the ones that did not complete first."""
        ...

    def fetch(
        self, execution_id: str, request: FetchRequest,
        progress: Callable[[str, int, int | None], None] | None = None,
    ) -> FetchResult:
        """Steps' outputs to this side (see :mod:`jupyter_stax.operations.fetching`);
        ``progress(line, done, total)`` while files move here (this machine's engine only)."""
        ...

    def export_crate(
        self,
        execution_id: str,
        dest: str | Path,
        *,
        as_dir: bool = False,
        license: str | None = None,
    ) -> Path:
        """Write the Workflow Run RO-Crate of a final execution to ``dest`` (a zip file, or a
        new directory with ``as_dir``; ``license``: a URL or SPDX id the crate states);
        Conflict while it is not final."""
        ...


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from synchronous code, also on a thread whose event loop is
    running (a kernel's): then on a private loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stax-sync") as pool:
        return pool.submit(asyncio.run, coro).result()


class LocalService:
    """The store on this machine, driven by the background engine (started on demand).

    Reads (``get``, ``list``, ``read_log``) also start the engine when executions nobody drives
    exist (detached ones, or ones whose engine died), at most once per ``RECONCILE_EVERY``
    seconds. ``notify`` receives the one-line notes about that (default: the log).

    ``get`` and ``list`` never present such an execution's stored states as current: they
    start the engine and wait (at most ``CHECK_TIMEOUT`` seconds, once per execution and
    service) until it has adopted the execution and finished its first reconcile pass (every
    active step answered by the scheduler or settled from its exit record; the engine commits
    the true states, then marks the pass in the store: ``Store.mark_checked``). The engine
    stays the one writer; the reader only waits. If the pass does not end in time (the
    scheduler does not answer), the answer carries
    :data:`~jupyter_stax.core.models.UNVERIFIED_WARNING` in its ``warnings``.
    """

    def __init__(
        self,
        store_path: str | Path | None = None,
        clusters_file: str | Path | None = None,
        *,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        from .engine.store import default_store_path

        self.store_path = Path(store_path or default_store_path()).expanduser().absolute()
        self.clusters_file = Path(clusters_file).expanduser() if clusters_file else None
        self.notify = notify or log.info
        self._store: Store | None = None
        self._registry: ClusterRegistry | None = None
        #: the reads and rules this service shares with the REST handlers
        self.ops = Operations(store=self.store, registry=self.registry)
        self._last_kick: float | None = None
        self._started = 0

    def describe(self) -> str:
        return f"store {self.store_path} (background engine)"

    # ------------------------------------------------------------------ plumbing
    def store(self) -> Store:
        if self._store is None:
            from .engine.store import Store

            self._store = Store(self.store_path)
        return self._store

    def registry(self) -> ClusterRegistry:
        if self._registry is None:
            from .core.clusters import ClusterRegistry

            self._registry = ClusterRegistry.load(self.clusters_file)
        return self._registry

    def engine(self) -> Engine:
        """A short-lived engine that adopts nothing: it drives only what it submits or takes
        over (detached submission, cancel)."""
        from .engine.engine import Engine

        return Engine(store=self.store(), clusters=self.registry(), adopt=False)

    def close(self) -> None:
        self.ops.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def ensure_daemon(self) -> int | None:
        """Start the background engine unless one runs; the new pid or None."""
        from .engine.daemon import ensure_daemon, log_path

        self._last_kick = time.monotonic()  # a new daemon needs a moment to take the lock
        pid = ensure_daemon(self.store_path, self.clusters_file)
        if pid is not None:
            self._started += 1
            if self._started > 1:
                self.notify(f"the engine does not stay up; see {log_path(self.store_path)}")
        return pid

    def reconcile(self, every: float = 0.0) -> None:
        """Start the engine when executions nobody drives exist (detached ones, or after a
        crash). With ``every``, at most once per that many seconds."""
        t = time.monotonic()
        if every and self._last_kick is not None and t - self._last_kick < every:
            return
        self._last_kick = t
        n = self.store().unowned_unfinished(LEASE_TIMEOUT)
        if n and (pid := self.ensure_daemon()) is not None:
            self.notify(f"started the engine (pid {pid}) to drive {n} unfinished execution(s)")

    def wait_checked(self, ids: list[str] | None = None) -> None:
        """Wait (at most ``CHECK_TIMEOUT``) until the executions ``ids`` (None: all) are
        reconciled by a live engine (see the class docstring); starts the engine if needed."""
        waits = self.ops.to_check(ids)
        if not waits:
            return
        if self.store().unowned_unfinished(LEASE_TIMEOUT):
            self.reconcile()
        while self.ops.unchecked(waits):
            time.sleep(CHECK_POLL)

    # ------------------------------------------------------------------ clusters, images
    def clusters(self) -> list[ClusterInfo]:
        return self.ops.clusters()

    def cluster(self, name: str) -> ClusterDetail:
        return self.ops.cluster(name)

    def images(self, cluster: str | None = None) -> ImageList:
        return self.ops.images(cluster)

    # ------------------------------------------------------------------ executions
    def submit(
        self,
        workflow: WorkflowSource,
        cluster: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
        options: SubmitOptions | None = None,
        steps: list[str] | None = None,
    ) -> Execution:
        """Detached: submitted by a short-lived engine here (no process needs to stay).
        Otherwise stored without an owner for the background engine to adopt and drive."""
        wf = _workflow(workflow)
        opts = options or SubmitOptions()
        if opts.base_dir is None:  # relative inputs: beside the workflow file, or here
            opts = opts.model_copy(update={"base_dir": base_for(workflow)})
        name = cluster or "local"
        if opts.detached:
            if _loop_running():  # a kernel: keep PSI/J's threads out of it (engine/detach.py)
                return self._submit_detached_child(wf, name, params, opts, steps)
            return run_sync(self._submit_detached(wf, name, params, opts, steps))
        from .engine.planning import prepare, write_provenance

        ex = prepare(wf, name, params, opts, steps, clusters=self.registry(), store=self.store())
        write_provenance(ex)
        self.store().insert_execution(ex)
        self.ensure_daemon()
        return ex

    def _submit_detached_child(
        self,
        wf: Workflow,
        cluster: str,
        params: Mapping[str, ParamValue] | None,
        options: SubmitOptions,
        steps: list[str] | None,
    ) -> Execution:
        import json
        import subprocess

        from .engine.daemon import module_argv

        request = {
            "store": str(self.store_path),
            "clusters_file": str(self.clusters_file) if self.clusters_file else None,
            "workflow": wf.model_dump(mode="json"),
            "cluster": cluster,
            "params": dict(params or {}),
            "options": options.model_dump(mode="json"),
            "steps": steps,
        }
        done = subprocess.run(
            module_argv("jupyter_stax.engine.detach"),
            input=json.dumps(request),
            capture_output=True,
            text=True,
        )
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else {}
        except ValueError:
            answer = {}
        if "execution" in answer:
            # the submission's own answer, as in-process (CLI) detached submissions give it:
            # not a read, which would wait for the engine's first pass (see get) and show
            # whatever the jobs did since
            return Execution.model_validate(answer["execution"])
        if "error" in answer:
            cls = error_class(str(answer["error"]))  # one registry: core.errors
            raise cls(answer["message"], details=answer["details"])
        raise RuntimeError(
            f"the detached submission failed (exit status {done.returncode}): "
            + (done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:])
        )

    async def _submit_detached(
        self,
        wf: Workflow,
        cluster: str,
        params: Mapping[str, ParamValue] | None,
        options: SubmitOptions,
        steps: list[str] | None,
    ) -> Execution:
        async with self.engine() as eng:
            return await self.ops.submit(eng, wf, cluster, params, options, steps)

    def get(self, execution_id: str) -> Execution:
        self.reconcile(every=RECONCILE_EVERY)
        self.wait_checked([self.store().resolve_id(execution_id)])
        return self.ops.get(execution_id)

    def list(
        self,
        state: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        workflow: str | None = None,
    ) -> tuple[list[Listed], str | None]:
        self.reconcile(every=RECONCILE_EVERY)
        self.wait_checked()
        items, next_cursor = self.ops.page(state, limit, cursor, workflow)
        return list(items), next_cursor

    # ------------------------------------------------------------------ published, re-runs
    def publish(self, request: PublishRequest) -> PublishedWorkflow:
        return self.ops.publish(request)

    def workflows(self) -> builtins.list[PublishedSummary]:
        return self.ops.workflows()

    def workflow(self, name: str, version: str | None = None) -> PublishedWorkflow:
        return self.ops.workflow(name, version)

    def trigger(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        cluster: str | None = None,
        version: str | None = None,
    ) -> Execution:
        from .core.published import TriggerRequest

        req = TriggerRequest(inputs=dict(inputs or {}), cluster=cluster, version=version)
        return self._store_plan(self.ops.trigger_plan(name, req, "local"))

    def rerun(
        self,
        source: str | Path,
        cluster: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
    ) -> Execution:
        from .operations.workflows import rerun_request

        return self._store_plan(
            self.ops.rerun_plan(rerun_request(source, cluster, params), "local")
        )

    def _store_plan(self, plan: Planned) -> Execution:
        """Store a planned trigger or re-run for the background engine (as :meth:`submit`)."""
        from .engine.planning import prepare, write_provenance

        ex = prepare(
            plan.workflow,
            plan.cluster,
            plan.params,
            plan.options,
            clusters=self.registry(),
            store=self.store(),
        )
        ex.origin = plan.origin
        write_provenance(ex)
        self.store().insert_execution(ex)
        self.ensure_daemon()
        return ex

    def cancel(self, execution_id: str) -> Execution:
        """Waits up to CANCEL_TIMEOUT for the execution to be final: when nobody drives it, the
        engine created here does, and must see its cancel through."""
        eid = self.store().resolve_id(execution_id)
        return run_sync(self._cancel(eid))

    async def _cancel(self, eid: str) -> Execution:
        async with self.engine() as eng:
            await self.ops.cancel(
                eng, eid
            )  # drives it itself if its owner is gone, else asks the owner
            try:
                ex: Execution = await eng.wait(eid, timeout=CANCEL_TIMEOUT)
            except TimeoutError:
                ex = eng.get(eid)
        return ex

    def retry(self, execution_id: str) -> Execution:
        eid = self.ops.retryable(execution_id).id  # before an engine is started for it
        ex = run_sync(self._retry(eid))
        self.ensure_daemon()
        return ex

    async def _retry(self, eid: str) -> Execution:
        # reset only: the daemon adopts and drives the execution when this engine stops, so no
        # job becomes a child of this short-lived process
        async with self.engine() as eng:
            return await self.ops.retry(eng, eid, schedule=False)

    def read_log(
        self,
        execution_id: str,
        step: str,
        stream: str = "stdout",
        offset: int = 0,
        attempt: int | None = None,
        limit: int | None = None,
    ) -> LogChunk:
        """``GET .../log`` (the same operation), but bytes that are not UTF-8 come back as
        surrogate escapes (``chunk.data.encode("utf-8", "surrogateescape")`` is exactly the
        file's bytes)."""
        self.reconcile(every=RECONCILE_EVERY)
        return self.ops.read_log(
            execution_id, step, stream, offset, attempt, limit, errors="surrogateescape"
        )

    def instances(
        self,
        execution_id: str,
        step: str,
        state: str | None = None,
        cursor: str | None = None,
        limit: int = INSTANCE_LIMIT_DEFAULT,
    ) -> InstancePage:
        """``GET .../instances`` (the same operation)."""
        self.reconcile(every=RECONCILE_EVERY)
        return self.ops.instances(execution_id, step, state, cursor, limit)

    def export_crate(
        self,
        execution_id: str,
        dest: str | Path,
        *,
        as_dir: bool = False,
        license: str | None = None,
    ) -> Path:
        return self.ops.export_crate(execution_id, Path(dest), as_dir=as_dir, license=license)

    def fetch(
        self, execution_id: str, request: FetchRequest,
        progress: Callable[[str, int, int | None], None] | None = None,
    ) -> FetchResult:
        self.reconcile(every=RECONCILE_EVERY)
        return self.ops.fetch(execution_id, _absolute(request), progress)


def _absolute(request: FetchRequest) -> FetchRequest:
    """``request`` with ``to`` made absolute here (the caller's directory)."""
    if request.to is None:
        return request
    return request.model_copy(update={"to": str(Path(request.to).expanduser().absolute())})


def read_bytes_chunk(path: Path, offset: int, limit: int, final: bool) -> LogChunk:
    """Up to ``limit`` bytes of the step file ``path`` from ``offset``, read by the ONE strict
    reader (:func:`jupyter_stax.operations.logs.read_chunk`: no links out of its directory, no
    FIFOs), undecodable bytes as surrogate escapes; an incomplete UTF-8 character at the end is
    left for the next chunk unless the file is final and ends there."""
    return read_chunk(
        str(path.parent),
        path.name,
        offset=offset,
        limit=limit,
        final=final,
        label=str(path),
        errors="surrogateescape",
    )


def _workflow(source: WorkflowSource) -> Workflow:
    if isinstance(source, Workflow):
        return source
    from .core.documents import load_workflow

    return load_workflow(dict(source) if isinstance(source, Mapping) else source)
