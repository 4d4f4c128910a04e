"""The orchestrator: asyncio, the single writer of the executions it owns.

Lifecycle of a step attempt (each arrow is committed to the store before anyone hears of it):
``pending -> submitted`` (intent, no native id yet) ``-> submitted + native id -> queued ->
running -> completed | failed | canceled | lost``. The changes of one turn of the event loop
(the status updates of one poll, the submissions of a ready set) are committed together, in ONE
transaction at the end of the turn (:meth:`Engine._flush`); their events are published after it,
and a step's submission intent is committed before its scheduler is called
(:meth:`Engine._durable`). Observations come from two sources:

* the scheduler, through PSI/J's status callbacks (one executor, hence one ``squeue`` per poll,
  per cluster), moved onto the event loop with ``call_soon_threadsafe``;
* the step's own records in its directory (``stax.start``, ``stax.exit``), read for all running
  steps of a cluster in one batch every ``record_interval`` seconds: this is where exit codes
  come from, and what makes a finished job final without waiting for the next scheduler poll.

An engine that starts adopts unfinished executions whose owner is gone (a crashed process is seen
at once on the same machine; elsewhere after ``lease_timeout``) and re-attaches to their jobs by
native id. Scheduler outages never fail jobs: submissions are retried with backoff and the
execution carries a warning until the scheduler answers again.

The jobs of this class are split along its seams: planning an execution (:mod:`.planning`),
which steps start or are skipped (:mod:`.scheduling`), an attempt's outcome (:mod:`.outcome`),
what is held per execution (:mod:`.runstate`), recovery after a restart (:mod:`.recovery`).
Everything done to a cluster's files and commands goes through its transport
(:mod:`.transport`), one per cluster. Watching jobs to their end is :mod:`.observing`; this
class keeps the loop, the public API, submission and the wiring (about 700 lines: the state
every part shares lives here, and each part is one section below).
Threading: every method runs on the event-loop thread; blocking calls (transport, PSI/J) run on
worker threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core import jobscript as js
from ..core.clusters import ClusterRegistry
from ..core.errors import Conflict, StaxError
from ..core.models import (
    Cluster,
    Execution,
    Origin,
    ParamValue,
    StepRun,
    SubmitOptions,
    Workflow,
)
from ..core.states import RETRYABLE, ExecutionState, StepState, execution_state
from . import observing, planning, recovery, staging, sweeps
from .backend import Backend, JobUpdate, SubmitError
from .coalesce import Batcher
from .records import RecordReader
from .runstate import JobKey, Run, attempt_record, reset
from .scheduling import next_moves
from .store import Changes, LostOwnership, Store, now
from .submitting import Attempt, Written, write_attempts
from .transport import StepRecords, Transport, TransportError
from .transports import transport_for

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger("jupyter_stax.engine")

SUBMIT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: seconds a remote cluster's records reader gathers reads before its round trip
#: (:class:`.records.RecordReader`)
REMOTE_READ_WINDOW = 0.05
#: the attempts of a cluster on this machine written, and those of the ``local`` scheduler
#: submitted, by one worker call (one after the other): the steps that become ready together
#: cost a few thread hand-offs and loop turns, not several each (a remote cluster's batches
#: are its transport's ``batch_limit``)
LOCAL_BATCH = 16
T = TypeVar("T")


@dataclass(frozen=True)
class Event:
    """A committed change: ``step`` is None for execution-level changes."""

    execution_id: str
    step: str | None
    state: str
    previous: str | None
    time: float
    execution_state: str
    step_run: StepRun | None = None
    """the step as just committed (a copy), for step events"""
    done: int = 0
    total: int = 0
    warnings: tuple[str, ...] = ()


class Engine:
    """Runs workflows on clusters. Use as ``async with Engine(...) as engine:``."""

    def __init__(
        self,
        *,
        store: Store | str | Path | None = None,
        clusters: ClusterRegistry | None = None,
        engine_id: str | None = None,
        adopt: bool = True,
        lease_timeout: float = 15.0,
        heartbeat_interval: float = 2.0,
        scan_interval: float = 1.0,
        record_interval: float = 0.5,
        record_grace: float = 3.0,
        submit_workers: int = 4,
        submit_backoff: tuple[float, ...] = SUBMIT_BACKOFF,
        submit_settle: float = 30.0,
        image_catalogs: Sequence[str] | None = None,
        transports: Callable[[Cluster, Path], Transport] = transport_for,
    ) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.clusters = clusters or ClusterRegistry.load()
        self.id = engine_id or f"engine-{uuid.uuid4().hex[:12]}"
        self.adopt = adopt
        self.lease_timeout = lease_timeout
        self.heartbeat_interval = heartbeat_interval
        self.scan_interval = scan_interval
        self.record_interval = record_interval
        self.record_grace = record_grace
        self.submit_backoff = submit_backoff
        #: after a crash during submission: seconds (from the intent) within which an orphaned
        #: submit command may still deliver the job; only then is the attempt submitted again
        self.submit_settle = submit_settle
        #: StaX catalog sources (None: the defaults, see :mod:`.catalog`); read at submission
        self.image_catalogs = None if image_catalogs is None else list(image_catalogs)
        #: (cluster, its state directory here) -> the cluster's transport (see :mod:`.transport`)
        self.transports = transports
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=submit_workers, thread_name_prefix="stax-submit"
        )
        # reads of records and logs never wait behind slow submit commands
        self._io_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="stax-io"
        )
        # at most this many steps are being prepared or submitted at once: a workflow of
        # thousands of ready steps must not hold the event loop (heartbeat, events, cancels)
        self._slots = asyncio.Semaphore(submit_workers)
        self._transports: dict[str, Transport] = {}
        self._transports_lock = threading.Lock()  # the operations layer asks from its threads
        self._readers: dict[str, RecordReader] = {}
        #: (cluster, "write" | "submit") -> the batcher of that half of the submissions
        self._batchers: dict[tuple[str, str], Batcher[Any, Any]] = {}
        #: remote cluster -> time.monotonic() of its last periodic records read
        self._records_read: dict[str, float] = {}
        self._backends: dict[str, Backend] = {}
        self._runs: dict[str, Run] = {}
        self._keys: set[JobKey] = set()  # the jobs being watched
        self._updates: list[JobUpdate] = []  # from the backends' threads, for the loop
        self._updates_lock = threading.Lock()
        self._updates_scheduled = False
        self._subscribers: list[Callable[[Event], None]] = []
        # the changes of this loop turn, committed together by _flush: execution id -> its
        # changes; the events to publish once they are committed; the tasks waiting for it
        self._changes: dict[str, Changes] = {}
        self._events: list[Event] = []
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self.last_activity = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Engine:
        self._loop = asyncio.get_running_loop()
        self.store.register_engine(self.id)
        if self.adopt:
            await recovery.adopt_orphans(self)
        self._main = asyncio.create_task(self._housekeeping(), name="stax-housekeeping")
        return self

    async def stop(self) -> None:
        """Stop watching; jobs keep running and the next engine adopts the executions."""
        if self._main:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._flush()  # before letting go: an engine that adopts them reads them
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.store.engine_stopped(self.id)
        for r in self._readers.values():
            r.close()
        for bt in self._batchers.values():
            bt.close()
        for b in self._backends.values():
            b.close()
        for tr in self._transports.values():
            tr.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        self._runs.clear()

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` (on the loop thread) after each committed change."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    @property
    def busy(self) -> bool:
        return bool(self._runs)

    # ------------------------------------------------------------------ public API
    async def submit(
        self,
        workflow: Workflow | Mapping[str, Any] | str | Path,
        cluster: str = "local",
        params: Mapping[str, ParamValue] | None = None,
        options: SubmitOptions | None = None,
        steps: list[str] | None = None,
        *,
        origin: Origin | None = None,
    ) -> Execution:
        """Validate and start a workflow; returns once it is committed (detached mode: once every
        step is queued at the scheduler). Raises InvalidWorkflow / UnknownCluster first.
        ``origin``: the published workflow or the run it comes from (recorded with it)."""
        ex = self.prepare(workflow, cluster, params, options, steps, owner=self.id)
        ex.origin = origin
        for c in sorted({s.cluster for s in ex.steps}):  # refuse a remote cluster's bad host key
            await self._io(self._transport(self.clusters.get(c)).verify)
        self.store.insert_execution(ex)
        run = self._new_run(ex)
        self.write_provenance(ex)
        self._publish(run, None, ex.state.value, None)
        self._schedule(run)
        if ex.options.detached:
            await self._until_queued(run)
        return run.ex.model_copy(deep=True)

    def prepare(
        self,
        workflow: Workflow | Mapping[str, Any] | str | Path,
        cluster: str = "local",
        params: Mapping[str, ParamValue] | None = None,
        options: SubmitOptions | None = None,
        steps: list[str] | None = None,
        owner: str | None = None,
    ) -> Execution:
        """A validated, not yet stored Execution (see :func:`.planning.prepare`)."""
        return planning.prepare(
            workflow,
            cluster,
            params,
            options,
            steps,
            clusters=self.clusters,
            store=self.store,
            owner=owner,
            image_catalogs=self.image_catalogs,
        )

    def catalog(self) -> Catalog:
        """The StaX catalog as its sources are now (read on each call)."""
        return planning.catalog(self.image_catalogs)

    @staticmethod
    def write_provenance(ex: Execution) -> None:
        """Write ``execution.json`` (workflow, params, options) into the execution directory."""
        planning.write_provenance(ex)

    def get(self, execution_id: str) -> Execution:
        self._flush()  # this turn's changes too (committed now rather than at its end)
        return self.store.get(self.store.resolve_id(execution_id))

    def list(self, state: str | None = None, limit: int = 50) -> list[Execution]:
        self._flush()
        return self.store.list_executions(state=state, limit=limit)

    async def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Until the execution is final (whoever drives it)."""
        eid = self.store.resolve_id(execution_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self._runs.get(eid)
            if run is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    await asyncio.wait_for(run.done.wait(), left)
                except asyncio.TimeoutError:
                    raise TimeoutError(f"execution {eid} not finished after {timeout} s") from None
                return self.get(eid)
            ex = self.get(eid)
            if ex.state.final:
                return ex
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"execution {eid} not finished after {timeout} s")
            await asyncio.sleep(0.2)

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel queued/running jobs and pending steps. Conflict if already final."""
        eid = self.store.resolve_id(execution_id)
        run = self._runs.get(eid)
        if run is None:
            ex = self.store.get(eid)
            if ex.state.final:
                raise Conflict(f"execution {eid} is already {ex.state.value}; nothing to cancel")
            if self.store.take_ownership(eid, self.id) or eid in self.store.claim_orphans(
                self.id, self.lease_timeout
            ):
                run = await recovery.resume(self, eid)
            else:
                self.store.add_request(eid, "cancel")
                return self.store.get(eid)
        if run is None:
            return self.store.get(eid)
        await observing.cancel_run(self, run)
        return self.get(eid)

    async def retry(self, execution_id: str, *, schedule: bool = True) -> Execution:
        """Run the failed, lost, canceled and skipped steps again, as new attempts.

        ``schedule=False`` only resets the steps (committed): a short-lived client does that and
        lets a long-lived engine adopt and drive the execution when the client stops."""
        eid = self.store.resolve_id(execution_id)
        if eid in self._runs:
            raise Conflict(f"execution {eid} is still running; wait for it or cancel it first")
        ex = self.store.get(eid)
        if not ex.state.final:
            if ex.owner and ex.owner != self.id:
                self.store.add_request(eid, "retry")
                return ex
            raise Conflict(f"execution {eid} is still {ex.state.value}")
        if ex.state is ExecutionState.COMPLETED:
            raise Conflict(f"execution {eid} completed; there is nothing to retry")
        if not (self.store.take_ownership(eid, self.id) or ex.owner == self.id):
            self.store.set_owner(eid, self.id)  # final executions keep their last owner
        self.store.reopen(eid, self.id)
        ex = self.store.get(eid)
        run = self._new_run(ex)
        for name in run.graph.order:
            s = run.steps[name]
            if s.state in RETRYABLE:
                if s.attempt:
                    s.history.append(attempt_record(s, "retry requested"))
                run.retry_base[name] = s.attempt
                previous = s.state
                reset(s, "retry requested")
                self._commit(run, s, previous)
        if schedule:
            self._schedule(run)
        return self.get(eid)

    # ------------------------------------------------------------------ internals: runs
    def _new_run(self, ex: Execution) -> Run:
        run = Run.of(ex)
        self._runs[ex.id] = run
        self.last_activity = time.monotonic()
        return run

    def _transport(self, cluster: Cluster) -> Transport:
        with self._transports_lock:
            t = self._transports.get(cluster.name)
            if t is None:
                t = self.transports(cluster, planning.state_dir(self.store, cluster))
                self._transports[cluster.name] = t
            return t

    def transport(self, cluster: Cluster) -> Transport:
        """The cluster's ONE transport (made on first use), for the operations layer (remote
        logs, live numbers): thread-safe."""
        return self._transport(cluster)

    def _backend(self, cluster: Cluster) -> Backend:
        b = self._backends.get(cluster.name)
        if b is None:
            cls = Backend
            if cluster.remote and cluster.scheduler == "local":  # a workstation over SSH
                from .remote.workstation import WorkstationBackend as cls
            b = cls(
                cluster,
                self.store.path.parent / "psij" / cluster.name,
                self._on_update_threadsafe,
                self._transport(cluster),
            )
            self._backends[cluster.name] = b
        return b

    def _reader(self, cluster_name: str) -> RecordReader:
        r = self._readers.get(cluster_name)
        if r is None:
            c = self.clusters.get(cluster_name)
            r = RecordReader(self._transport(c), self._io, REMOTE_READ_WINDOW if c.remote else 0.0)
            self._readers[cluster_name] = r
        return r

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking transport read on an I/O worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._io_pool, fn, *args)

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking call (submission, scheduler command) on a submit worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _records(self, s: StepRun) -> StepRecords:
        """The step's records; waits (with backoff) while its cluster does not answer: an
        outcome is never decided on records that could not be read."""
        tries = 0
        while True:
            try:
                return await self._reader(s.cluster).read(s.directory)
            except TransportError as e:
                wait = self.submit_backoff[min(tries, len(self.submit_backoff) - 1)]
                tries += 1
                log.warning("records of %s: %s (retrying in %g s)", s.directory, e, wait)
                await asyncio.sleep(wait)

    def _spawn(self, coro: Any, name: str) -> None:
        t = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task[Any]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            exc = t.exception()
            if isinstance(exc, LostOwnership):
                log.warning("%s", exc)
            else:
                log.error("engine task %s failed", t.get_name(), exc_info=exc)

    def _event(self, run: Run, step: str | None, state: str, previous: str | None) -> Event:
        """The event of a change, as things are now (published once it is committed)."""
        return Event(
            run.id,
            step,
            state,
            previous,
            time.time(),
            run.ex.state.value,
            run.steps[step].model_copy() if step else None,
            sum(n for st, n in run.counts.items() if st.final),
            len(run.steps),
            tuple(run.ex.warnings),
        )

    def _publish(self, run: Run, step: str | None, state: str, previous: str | None) -> None:
        """Tell subscribers of a change committed already (this turn's other changes first)."""
        self._flush()
        self._tell(self._event(run, step, state, previous))

    def _tell(self, ev: Event) -> None:
        for cb in list(self._subscribers):
            try:
                cb(ev)
            except Exception:
                log.exception("event subscriber failed")

    def _commit(self, run: Run, s: StepRun, previous: StepState | None) -> None:
        """Note a step's change for this turn's transaction (:meth:`_flush`: fenced, committed
        at the end of the turn, then told to subscribers). The step's row is taken as it is
        now; a later change of it in the same turn replaces it."""
        if previous is not None and previous is not s.state:
            run.counts[previous] -= 1
            run.counts[s.state] += 1
            run.changed()
        st = execution_state(run.counts, cancel_requested=run.ex.cancel_requested)
        ch = self._changes.get(run.id)
        if ch is None:
            ch = self._changes[run.id] = Changes(st)
        ch.add(run.id, s, st)
        old = run.ex.state
        run.ex.state = st
        self.last_activity = time.monotonic()
        self._events.append(
            self._event(run, s.name, s.state.value, previous.value if previous else None)
        )
        if st != old:
            self._events.append(self._event(run, None, st.value, old.value))
        if self._loop is None:  # not started (no loop turn to wait for): now
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        if st.final and not any(n in run.submitting for n in run.steps):
            self._finish(run)

    def _flush(self) -> None:
        """Commit the changes noted since the last flush in ONE transaction (called at the end
        of the loop turn that made them, and by whatever must see them committed first), then
        publish their events and wake the tasks waiting for it (:meth:`_durable`). An
        execution another engine adopted meanwhile is let go: its changes are not written, its
        events not told, and its tasks get LostOwnership (:meth:`_durable`, :meth:`_owns`).
        A failed commit (the store unwritable) is kept for the next flush, a second later."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        changes, self._changes = self._changes, {}
        events, self._events = self._events, []
        waiters, self._flush_waiters = self._flush_waiters, []
        try:
            lost = self.store.save_steps(self.id, changes)
        except Exception as e:
            log.exception("committing the engine's changes failed; trying again in 1 s")
            for eid, ch in changes.items():  # the later changes of a step win
                later = self._changes.get(eid)
                if later is not None:
                    ch.steps.update(later.steps)
                    ch.files.update(later.files)
                    ch.state = later.state
            self._changes = changes
            self._events = events + self._events
            if self._loop is not None and not self._loop.is_closed():
                self._flush_handle = self._loop.call_later(1.0, self._flush)
            for w in waiters:
                if not w.done():
                    w.set_exception(e)
            return
        for eid in lost:
            run = self._runs.pop(eid, None)
            if run is not None:  # (said once: its tasks' later changes are dropped too)
                log.warning("execution %s was adopted by another engine; letting go", eid)
                run.done.set()
        for ev in events:
            if ev.execution_id not in lost:
                self._tell(ev)
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _durable(self, run: Run) -> None:
        """Return once every change noted so far is committed: the flush at the end of this
        turn, so the changes of all the tasks that wait here in one turn (the submission
        intents of a ready set) are one transaction. LostOwnership when the execution is no
        longer ours: a caller about to submit a job must not."""
        if self._changes:
            assert self._loop is not None
            w: asyncio.Future[None] = self._loop.create_future()
            self._flush_waiters.append(w)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)
            await w
        self._owns(run)

    def _owns(self, run: Run) -> None:
        """LostOwnership when ``run`` is no longer driven here (another engine adopted it)."""
        if self._runs.get(run.id) is not run:
            raise LostOwnership(f"execution {run.id} is no longer driven by engine {self.id}")

    def _finish(self, run: Run) -> None:
        self._flush()  # its last changes are committed before anyone hears it is over
        if run.done.is_set() and self._runs.get(run.id) is not run:
            return  # let go by that flush (adopted by another engine)
        # about jobs and schedulers of this run: stale once it is final; files' notes stay
        if run.ex.warnings or staging.warnings(list(run.steps.values())):
            try:
                self._update_warnings(run)
            except Exception:
                log.exception("clearing the warnings of %s failed", run.id)
        if self._runs.get(run.id) is run:
            del self._runs[run.id]
        run.done.set()

    def _set(self, run: Run, name: str, state: StepState, **fields: Any) -> bool:
        s = run.steps[name]
        if not s.state.can_become(state):
            return False
        previous = s.state
        s.state = state
        for k, v in fields.items():
            setattr(s, k, v)
        if state.final and s.finished_at is None:
            s.finished_at = now()
        self._commit(run, s, previous)
        return True

    def _answered(self, run: Run, name: str) -> None:
        """Step ``name`` had its first answer since an adoption (see
        :func:`.observing.answered`; for modules that observing itself imports)."""
        observing.answered(self, run, name)

    def _watch(self, key: JobKey) -> None:
        self._keys.add(key)

    def _unwatch(self, key: JobKey, cluster: str, native_id: str | None) -> None:
        self._keys.discard(key)
        backend = self._backends.get(cluster)
        if backend is not None:
            backend.forget(key, native_id)

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, run: Run, changed: Iterable[str] | None = None) -> None:
        """Start every step whose dependencies allow it; skip those that can never run (see
        :func:`.scheduling.next_moves`)."""
        if run.ex.cancel_requested or self._runs.get(run.id) is not run:
            return
        moves = next_moves(
            run.graph,
            run.steps,
            changed,
            submitting=run.submitting,
            stop_on_failure=run.ex.workflow.on_failure == "stop",
            detached=run.ex.options.detached,
        )
        for name, reason in moves.skip:
            self._set(run, name, StepState.SKIPPED, reason=reason)
        for start in moves.start:
            run.submitting.add(start.step)
            if run.defs[start.step].sweep is not None:  # its instances: see .sweeps
                sweeps.submit_step(self, run, start.step, start.after)
                continue
            self._spawn(
                self._submit_step(run, start.step, start.after), f"submit {run.id}/{start.step}"
            )

    async def _until_queued(self, run: Run) -> None:
        # a submission under way (a sweep's next array) keeps it waiting too
        while self._runs.get(run.id) is run and (
            run.submitting
            or any(
                s.state is StepState.PENDING
                or (s.state is StepState.SUBMITTED and not s.native_id)
                for s in run.steps.values()
            )
        ):
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ submission
    def _writer(self, cluster: Cluster) -> Batcher[Attempt, Written]:
        """The cluster's batcher of attempt files (:func:`.submitting.write_attempts`)."""
        key = (cluster.name, "write")
        b = self._batchers.get(key)
        if b is None:
            transport = self._transport(cluster)
            b = Batcher(
                lambda items: write_attempts(self, items),
                lambda: transport.batch_limit if cluster.remote else LOCAL_BATCH,
                self._in_slot,
            )
            self._batchers[key] = b
        return b

    def _submitter(self, cluster: Cluster) -> Batcher[tuple[JobKey, js.JobRequest], str]:
        """The cluster's batcher of submissions (:meth:`.backend.Backend.submit_many`)."""
        key = (cluster.name, "submit")
        b = self._batchers.get(key)
        if b is None:
            backend = self._backend(cluster)
            # PSI/J's local executor submits in a fork: a chunk of them is one worker call; a
            # scheduler command (sbatch) is slow enough to run several at once, one per slot
            local = cluster.scheduler == "local" and not cluster.remote
            b = Batcher(
                backend.submit_many,
                lambda: LOCAL_BATCH if local else backend.batch_limit,
                self._in_slot,
            )
            self._batchers[key] = b
        return b

    async def _in_slot(self, fn: Callable[[Any], T], items: Any) -> T:
        """A blocking batch call on a submit worker, holding one of the submission slots."""
        async with self._slots:
            return await self._blocking(fn, items)

    def _transfer_progress(self, run: Run, s: StepRun) -> staging.Report:
        """A transfer's progress lines (from a worker thread) committed as the step's reason
        on this loop while the step is not final: the sidebar and the monitor show it. Callable
        from any thread (it uses the loop the engine started on)."""
        loop = self._loop
        assert loop is not None, "the engine is not started"

        def commit(line: str) -> None:
            if not s.state.final and self._runs.get(run.id) is run:
                s.reason = line
                self._commit(run, s, s.state)

        def report(line: str, done: int, total: int | None) -> None:
            loop.call_soon_threadsafe(commit, line)

        return report

    def _cluster_transport(self, name: str) -> tuple[Cluster, Transport]:
        c = self.clusters.get(name)
        return c, self._transport(c)

    async def _submit_step(self, run: Run, name: str, after: tuple[str, ...]) -> None:
        s = run.steps[name]
        try:
            self._owns(run)  # the turn that scheduled it may have found the execution adopted
            cluster = self.clusters.get(s.cluster)
            step = run.defs[name]
            attempt = s.attempt + 1
            tries = 0
            while True:
                try:  # with the other steps that became ready in this turn (one call)
                    written = await self._writer(cluster)(
                        Attempt(run, s, cluster, attempt, run.ex.options.detached)
                    )
                    break
                except TransportError as e:  # the cluster did not answer: not the step's fault
                    wait = self.submit_backoff[min(tries, len(self.submit_backoff) - 1)]
                    tries += 1
                    s.reason = f"not yet submitted: {e} (try {tries}; next in {wait:g} s)"
                    self._commit(run, s, s.state)
                    await asyncio.sleep(wait)
            if written.staged is not None:
                s.files = written.staged
            r = step.resources
            req = js.JobRequest(
                execution_id=run.id,
                step=name,
                attempt=attempt,
                job_name=js.job_name(run.id, name),
                step_dir=Path(s.directory),
                job_script=written.job_script,
                stdout=Path(s.stdout),
                stderr=Path(s.stderr),
                walltime_seconds=js.walltime_seconds(step, cluster),
                nodes=r.nodes,
                ntasks=r.ntasks,
                cpus_per_task=r.cpus_per_task,
                gpus_per_task=r.gpus,
                memory_bytes=r.memory_bytes,
                queue=cluster.queue,
                account=cluster.account,
                after_native_ids=after,
                custom_attributes=written.directives,
                task_env=written.task_env,
            )
            s.attempt, s.job_name = attempt, req.job_name
            self._set(
                run,
                name,
                StepState.SUBMITTED,
                submitted_at=now(),
                reason=None,
                native_id=None,
                exit_code=None,
            )
            await self._submit_with_backoff(run, s, cluster, req)
        except (LostOwnership, asyncio.CancelledError):
            raise
        except staging.StageInFailed as e:  # that step fails, nothing was submitted for it
            if not s.state.final:
                self._set(run, name, StepState.FAILED, reason=str(e))
                self._schedule(run, [name])
        except Exception as e:  # a broken cluster setup or a bug: say it on the step, do not hang
            log.exception("submission of %s/%s failed", run.id, name)
            if not s.state.final:
                self._set(run, name, StepState.FAILED, reason=f"not submitted: {e}")
                self._schedule(run, [name])
        finally:
            run.submitting.discard(name)
        if run.ex.options.detached:
            self._schedule(run, [name])  # its submission is over: dependants can be queued
        if run.ex.state.final and self._runs.get(run.id) is run:
            self._finish(run)

    async def _submit_with_backoff(
        self, run: Run, s: StepRun, cluster: Cluster, req: js.JobRequest
    ) -> None:
        submitter = self._submitter(cluster)
        key = JobKey(run.id, s.name, req.attempt)
        self._watch(key)
        tries = 0
        while True:
            # the intent (state submitted, no native id) is committed before the scheduler is
            # called: with the other intents of this turn, in one transaction
            await self._durable(run)
            if run.ex.cancel_requested:
                self._set(run, s.name, StepState.CANCELED, reason="canceled before submission")
                return
            try:  # with the other steps that reached this point in this turn (one call)
                native = await submitter((key, req))
                break
            except SubmitError as e:
                if not e.transient:
                    self._set(run, s.name, StepState.FAILED, reason=f"not submitted: {e}")
                    self._schedule(run, [s.name])
                    return
                wait = self.submit_backoff[min(tries, len(self.submit_backoff) - 1)]
                tries += 1
                s.reason = f"{e} (try {tries}; next in {wait:g} s)"
                self._commit(run, s, s.state)
                await asyncio.sleep(wait)
            except Exception as e:  # a bug or an unexpected PSI/J error: say it, do not hang
                log.exception("submission of %s failed", key)
                self._set(run, s.name, StepState.FAILED, reason=f"not submitted: {e!r}")
                self._schedule(run, [s.name])
                return
        # commit the native id together with what the scheduler already said inside submit()
        # (PSI/J's local executor reports queued and running there): one commit, not three
        previous = s.state
        s.native_id = native
        s.reason = None
        later = []
        for upd in run.early.pop(s.name, []):
            new = {"queued": StepState.QUEUED, "running": StepState.RUNNING}.get(upd.state)
            if new is None:
                later.append(upd)
            elif s.state.can_become(new):
                s.state = new
                if new is StepState.RUNNING:
                    s.started_at = _utc(upd.time)
        self._commit(run, s, previous)
        for upd in later:
            observing.apply(self, run, upd)
        if run.ex.cancel_requested:
            await observing.cancel_step(self, run, s)
        self._schedule(run, [s.name])  # (detached: dependants once its submission is over)

    # ------------------------------------------------------------------ observing
    def _on_update_threadsafe(self, upd: JobUpdate) -> None:
        """A status from a backend's thread: queued, and the queue is taken on the loop in ONE
        callback, so that the updates of one status poll are applied in one turn and the
        records reads they start (running, ended) are one batch (see :mod:`.records`)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._updates_lock:
            self._updates.append(upd)
            if self._updates_scheduled:
                return
            self._updates_scheduled = True
        try:
            loop.call_soon_threadsafe(self._apply_updates)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _apply_updates(self) -> None:
        with self._updates_lock:
            updates, self._updates = self._updates, []
            self._updates_scheduled = False
        for upd in updates:
            try:
                observing.on_update(self, upd)
            except Exception:  # one update's failure is not the others'
                log.exception("applying the status update %s failed", upd)

    # ------------------------------------------------------------------ housekeeping
    async def _housekeeping(self) -> None:
        tick = min(self.record_interval, 0.25)
        next_beat = next_scan = 0.0
        next_records = 0.0
        while True:
            t = time.monotonic()
            try:
                if t >= next_records:
                    next_records = t + self.record_interval
                    await observing.check_records(
                        self,
                    )
                    for run in list(self._runs.values()):
                        self._update_warnings(run)
                if t >= next_beat:
                    next_beat = t + self.heartbeat_interval
                    self.store.heartbeat(self.id)
                if t >= next_scan:
                    next_scan = t + self.scan_interval
                    await self._serve_requests()
                    if self.adopt:
                        await recovery.adopt_orphans(self)
            except LostOwnership:
                pass
            except Exception:
                log.exception("engine housekeeping failed; continuing")
            await asyncio.sleep(tick)

    def _update_warnings(self, run: Run) -> None:
        warnings = []
        for c in sorted({s.cluster for s in run.steps.values() if s.state.active}):
            tr = self._transports.get(c)
            w = tr.warning() if tr else None
            if w:
                warnings.append(f"cluster {c!r}: {w}")
            b = self._backends.get(c)
            w = b.warning() if b else None
            if w:
                warnings.append(f"cluster {c!r}: {w}")
        for s in run.steps.values():
            if s.state is StepState.QUEUED and s.native_id:
                b = self._backends.get(s.cluster)
                why = b.blocked(s.native_id) if b else None
                if why:
                    warnings.append(
                        f"step {s.name!r} (job {s.native_id}) will not start as it stands: {why}; "
                        "cancel and submit it again with what the cluster allows"
                    )
        warnings += staging.warnings(list(run.steps.values()))
        if warnings != run.ex.warnings:
            self._flush()  # this turn's changes are told first
            run.ex.warnings = warnings
            self.store.set_warnings(run.id, warnings, self.id)
            self._publish(run, None, "warning", None)

    async def _serve_requests(self) -> None:
        for rid, eid, kind in self.store.open_requests(self.id):
            try:
                if kind == "cancel":
                    run = self._runs.get(eid)
                    if run is not None:
                        await observing.cancel_run(self, run)
                    result = "ok"
                elif kind == "retry":
                    await self.retry(eid)
                    result = "ok"
                else:
                    result = f"unknown request {kind!r}"
            except StaxError as e:
                result = f"error: {e}"
            self.store.finish_request(rid, result)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)
