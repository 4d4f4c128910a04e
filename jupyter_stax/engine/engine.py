"""The orchestrator: asyncio, the single writer of the executions it owns.

Lifecycle of a step attempt (each arrow is committed to the store before anyone hears of it):
``pending -> submitted`` (intent, no native id yet) ``-> submitted + native id -> queued ->
running -> completed | failed | canceled | lost``. Observations come from two sources:

* the scheduler, through PSI/J's status callbacks (one executor, hence one ``squeue`` per poll,
  per cluster), moved onto the event loop with ``call_soon_threadsafe``;
* the step's own records in its directory (``stax.start``, ``stax.exit``), checked every
  ``record_interval`` seconds: this is where exit codes come from, and what makes a finished job
  final without waiting for the next scheduler poll.

An engine that starts adopts unfinished executions whose owner is gone (a crashed process is seen
at once on the same machine; elsewhere after ``lease_timeout``) and re-attaches to their jobs by
native id. Scheduler outages never fail jobs: submissions are retried with backoff and the
execution carries a warning until the scheduler answers again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import json
import logging
import os
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import jobscript as js
from ..core.clusters import ClusterRegistry
from ..core.dag import bound_params, check, select, topological_order
from ..core.documents import load_workflow
from ..core.errors import Conflict, InvalidWorkflow, NotFound, SchedulerUnavailable, StaxError
from ..core.images import ResolvedImage
from ..core.models import (
    AttemptRecord,
    Cluster,
    Execution,
    ParamValue,
    Step,
    StepRun,
    SubmitOptions,
    Workflow,
)
from ..core.states import RETRYABLE, ExecutionState, StepState, execution_state
from .backend import Backend, JobGone, JobUpdate, SubmitError
from .store import LostOwnership, Store, now

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger("jupyter_stax.engine")

SUBMIT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


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


@dataclass
class _Run:
    ex: Execution
    steps: dict[str, StepRun]
    order: list[str]
    defs: dict[str, Step]
    children: dict[str, list[str]]
    position: dict[str, int]
    counts: Counter[StepState]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    submitting: set[str] = field(default_factory=set)
    early: dict[str, list[JobUpdate]] = field(default_factory=dict)
    attached: set[str] = field(default_factory=set)
    finalizing: set[str] = field(default_factory=set)
    retry_base: dict[str, int] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.ex.id


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
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=submit_workers, thread_name_prefix="stax-submit"
        )
        # at most this many steps are being prepared or submitted at once: a workflow of
        # thousands of ready steps must not hold the event loop (heartbeat, events, cancels)
        self._slots = asyncio.Semaphore(submit_workers)
        self._backends: dict[str, Backend] = {}
        self._runs: dict[str, _Run] = {}
        self._keys: dict[str, tuple[str, str, int]] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self.last_activity = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Engine:
        self._loop = asyncio.get_running_loop()
        self.store.register_engine(self.id)
        if self.adopt:
            await self._adopt_orphans()
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
        self.store.engine_stopped(self.id)
        for b in self._backends.values():
            b.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
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
    ) -> Execution:
        """Validate and start a workflow; returns once it is committed (detached mode: once every
        step is queued at the scheduler). Raises InvalidWorkflow / UnknownCluster first."""
        ex = self.prepare(workflow, cluster, params, options, steps, owner=self.id)
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
        """A validated, not yet stored Execution (what clients insert for an engine to adopt)."""
        wf = (
            workflow
            if isinstance(workflow, Workflow)
            else load_workflow(dict(workflow) if isinstance(workflow, Mapping) else workflow)
        )
        opts = options or SubmitOptions()
        if opts.on_failure:
            wf = wf.model_copy(update={"on_failure": opts.on_failure})
        wf = select(wf, steps)
        params = dict(params or {})
        main = self.clusters.get(cluster)
        if any(isinstance(s.software, str) for s in wf.steps):
            from ..core.software import inline

            wf = inline(wf)
        check(wf, params)
        wf, resolved, image_errors = self._resolve_images(wf, main)
        problems = [e.message for e in image_errors]
        for s in wf.steps:
            c = self.clusters.get(s.cluster) if s.cluster else main
            launcher = js.effective_launcher(s, c)
            if launcher == "srun" and c.scheduler != "slurm":
                problems.append(
                    f"step {s.name!r} uses launcher 'srun', which needs a Slurm cluster; "
                    f"cluster {c.name!r} uses {c.scheduler!r} (use 'single' or 'mpirun')"
                )
            if opts.detached:
                if c.scheduler != "slurm":
                    problems.append(
                        f"detached mode queues steps with Slurm dependencies; step {s.name!r} "
                        f"runs on {c.name!r} ({c.scheduler}). Submit without --detach"
                    )
                if s.retries:
                    problems.append(
                        f"step {s.name!r} has retries={s.retries}, but a detached execution is "
                        "run by the scheduler alone and cannot resubmit; drop retries or --detach"
                    )
        if len(problems) == 1 and image_errors:
            raise image_errors[0]
        if problems:
            details = problems + [d for e in image_errors for d in e.details]
            raise InvalidWorkflow(f"workflow {wf.name!r} cannot run as asked", details=details)
        eid = self._new_id()
        root = self.clusters.work_dir(main) / eid
        runs = []
        for s in wf.steps:
            c = self.clusters.get(s.cluster) if s.cluster else main
            d = (self.clusters.work_dir(c) / eid / s.name) if s.cluster else root / s.name
            runs.append(
                StepRun(
                    name=s.name,
                    cluster=c.name,
                    directory=str(d),
                    script=str(d / js.STEP_SCRIPT),
                    stdout=str(d / js.STDOUT),
                    stderr=str(d / js.STDERR),
                    image=s.image,
                    resolved_image=resolved.get(s.name),
                )
            )
        return Execution(
            id=eid,
            workflow=wf,
            cluster=main.name,
            params=params,
            options=opts,
            created_at=now(),
            work_dir=str(root),
            owner=owner,
            steps=runs,
        )

    def catalog(self) -> Catalog:
        """The StaX catalog as its sources are now (read on each call)."""
        from .catalog import Catalog

        return Catalog.load(self.image_catalogs)

    def _resolve_images(
        self, wf: Workflow, main: Cluster
    ) -> tuple[Workflow, dict[str, ResolvedImage], list[StaxError]]:
        """Each step's image resolved for its cluster (software descriptions: their container
        image, and their resources where the step sets none)."""
        from ..core import software as sw
        from ..core.images import step_need
        from .catalog import runtime_for

        resolved: dict[str, ResolvedImage] = {}
        errors: list[StaxError] = []
        steps = []
        catalog: Catalog | None = None
        for s in wf.steps:
            c = self.clusters.get(s.cluster) if s.cluster else main
            name, runtime = s.image, None
            if isinstance(s.software, dict):
                desc = sw.load_software(s.software, where=f"step {s.name!r}")
                implied = {
                    k: v for k, v in sw.resources(desc).items() if getattr(s.resources, k) is None
                }
                if implied:
                    res = s.resources.model_copy(update=implied)
                    s = s.model_copy(update={"resources": res})
                if desc.container is not None:
                    name, runtime = desc.container.image, sw.container_runtime_name(desc)
            steps.append(s)
            if name is None:
                continue
            try:
                rt = runtime_for(c, runtime)
                if catalog is None:
                    catalog = self.catalog()
                need = step_need(js.effective_launcher(s, c), s.resources.ntasks, s.resources.gpus)
                if s.software is not None:
                    need = step_need("single", None, s.resources.gpus)
                r, _ = catalog.resolve(name, c, need, rt.name)
                if rt.name == "charliecloud" and "://" in r.reference:
                    raise InvalidWorkflow(
                        f"step {s.name!r}: ch-run runs directory or SquashFS images, not "
                        f"{r.reference!r}; convert it with ch-image and name the directory"
                    )
                resolved[s.name] = r
            except StaxError as e:
                if not e.message.startswith("step "):
                    e = type(e)(f"step {s.name!r}: {e.message}", details=e.details)
                errors.append(e)
        return wf.model_copy(update={"steps": steps}), resolved, errors

    def get(self, execution_id: str) -> Execution:
        return self.store.get(self.store.resolve_id(execution_id))

    def list(self, state: str | None = None, limit: int = 50) -> list[Execution]:
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
            ex = self.store.get(eid)
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
                run = await self._resume(eid)
            else:
                self.store.add_request(eid, "cancel")
                return self.store.get(eid)
        if run is None:
            return self.store.get(eid)
        await self._cancel_run(run)
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
            # final executions keep their last owner; take them over
            with self.store.transaction() as db:
                db.execute("UPDATE executions SET owner=? WHERE id=?", (self.id, eid))
        self.store.reopen(eid, self.id)
        ex = self.store.get(eid)
        run = self._new_run(ex)
        for name in run.order:
            s = run.steps[name]
            if s.state in RETRYABLE:
                if s.attempt:
                    s.history.append(_attempt_record(s, "retry requested"))
                run.retry_base[name] = s.attempt
                previous = s.state
                self._reset(s, "retry requested")
                self._commit(run, s, previous)
        if schedule:
            self._schedule(run)
        return self.get(eid)

    # ------------------------------------------------------------------ internals: runs
    def _new_id(self) -> str:
        while True:
            eid = secrets.token_hex(4)
            try:
                self.store.resolve_id(eid)
            except NotFound:
                return eid

    def _new_run(self, ex: Execution) -> _Run:
        order = topological_order(ex.workflow)
        children: dict[str, list[str]] = {s.name: [] for s in ex.workflow.steps}
        for step in ex.workflow.steps:
            for dep in step.after:
                children[dep].append(step.name)
        run = _Run(
            ex=ex,
            steps={s.name: s for s in ex.steps},
            order=order,
            defs={s.name: s for s in ex.workflow.steps},
            children=children,
            position={n: i for i, n in enumerate(order)},
            counts=Counter(s.state for s in ex.steps),
        )
        self._runs[ex.id] = run
        self.last_activity = time.monotonic()
        return run

    def write_provenance(self, ex: Execution) -> None:
        """Write ``execution.json`` (workflow, params, options) into the execution directory."""
        root = Path(ex.work_dir)
        root.mkdir(parents=True, exist_ok=True)
        doc = {
            "id": ex.id,
            "cluster": ex.cluster,
            "params": ex.params,
            "options": ex.options.model_dump(mode="json"),
            "workflow": ex.workflow.model_dump(mode="json", exclude_defaults=True),
        }
        (root / "execution.json").write_text(json.dumps(doc, indent=2) + "\n")

    def _backend(self, cluster: Cluster) -> Backend:
        b = self._backends.get(cluster.name)
        if b is None:
            b = Backend(cluster, self.store.path.parent / "psij", self._on_update_threadsafe)
            self._backends[cluster.name] = b
        return b

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

    def _publish(self, run: _Run, step: str | None, state: str, previous: str | None) -> None:
        ev = Event(
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
        for cb in list(self._subscribers):
            try:
                cb(ev)
            except Exception:
                log.exception("event subscriber failed")

    def _commit(self, run: _Run, s: StepRun, previous: StepState | None) -> None:
        """Commit a step (fenced), then tell subscribers. Drops the run if ownership was lost."""
        if previous is not None and previous is not s.state:
            run.counts[previous] -= 1
            run.counts[s.state] += 1
        derived = execution_state(run.counts, cancel_requested=run.ex.cancel_requested)
        try:
            st = self.store.save_step(run.id, s, self.id, derived)
        except LostOwnership:
            log.warning("execution %s was adopted by another engine; letting go", run.id)
            self._runs.pop(run.id, None)
            run.done.set()
            raise
        old = run.ex.state
        run.ex.state = st
        self.last_activity = time.monotonic()
        self._publish(run, s.name, s.state.value, previous.value if previous else None)
        if st != old:
            self._publish(run, None, st.value, old.value)
        if st.final and not any(n in run.submitting for n in run.steps):
            self._finish(run)

    def _finish(self, run: _Run) -> None:
        if run.ex.warnings:  # about jobs and schedulers of this run: stale once it is final
            try:
                self._update_warnings(run)
            except Exception:
                log.exception("clearing the warnings of %s failed", run.id)
        if self._runs.get(run.id) is run:
            del self._runs[run.id]
        run.done.set()

    def _set(self, run: _Run, name: str, state: StepState, **fields: Any) -> bool:
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

    @staticmethod
    def _reset(s: StepRun, reason: str | None) -> None:
        s.state = StepState.PENDING
        s.native_id = s.exit_code = s.submitted_at = s.started_at = s.finished_at = None
        s.reason = reason

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, run: _Run, changed: Iterable[str] | None = None) -> None:
        """Start every step whose dependencies allow it; skip those that can never run.

        ``changed``: the steps whose state just changed; only they and their dependants are
        looked at (None: all steps), so an event costs O(dependants), not O(steps).
        """
        if run.ex.cancel_requested or self._runs.get(run.id) is not run:
            return
        stop_after = None
        if run.ex.workflow.on_failure == "stop":
            stop_after = next(
                (n for n in run.order if run.steps[n].state in (StepState.FAILED, StepState.LOST)),
                None,
            )
            if stop_after is not None:
                changed = None
        if changed is None:
            todo = [(run.position[n], n) for n in run.order]
        else:
            names = set(changed)
            for n in list(names):
                names.update(run.children[n])
            todo = [(run.position[n], n) for n in names]
        heapq.heapify(todo)
        seen = {n for _, n in todo}
        while todo:
            _, name = heapq.heappop(todo)
            s = run.steps[name]
            if s.state is not StepState.PENDING or name in run.submitting:
                continue
            deps = [run.steps[d] for d in run.defs[name].after]
            bad = next(
                (d for d in deps if d.state.final and d.state is not StepState.COMPLETED), None
            )
            if bad is not None or stop_after is not None:
                reason = (
                    f"not run: upstream step {bad.name!r} {bad.state.value}"
                    if bad is not None
                    else f"not run: step {stop_after!r} failed and on_failure is 'stop'"
                )
                self._set(run, name, StepState.SKIPPED, reason=reason)
                for child in run.children[name]:  # the skip cascades
                    if child not in seen:
                        seen.add(child)
                        heapq.heappush(todo, (run.position[child], child))
                continue
            if all(d.state is StepState.COMPLETED for d in deps):
                after: tuple[str, ...] = ()
            elif run.ex.options.detached and all(
                d.state is StepState.COMPLETED or (d.state.active and d.native_id) for d in deps
            ):
                after = tuple(d.native_id for d in deps if d.state.active and d.native_id)
            else:
                continue
            run.submitting.add(name)
            self._spawn(self._submit_step(run, name, after), f"submit {run.id}/{name}")

    async def _until_queued(self, run: _Run) -> None:
        while self._runs.get(run.id) is run and any(
            s.state is StepState.PENDING or (s.state is StepState.SUBMITTED and not s.native_id)
            for s in run.steps.values()
        ):
            await asyncio.sleep(0.01)

    def _prepare_attempt(
        self, run: _Run, s: StepRun, cluster: Cluster, attempt: int, guarded: bool
    ) -> Path:
        """Write the step's scripts for ``attempt``; earlier attempts' files get a suffix."""
        d = Path(s.directory)
        d.mkdir(parents=True, exist_ok=True)
        if attempt > 1:
            for f in js.ATTEMPT_FILES:
                p = d / f
                if p.exists():
                    os.replace(p, d / f"{f}.{attempt - 1}")
        step = run.defs[s.name]
        plan = self._container_plan(run, s, cluster)
        (d / js.STEP_SCRIPT).write_text(js.render_step_script(step, plan))
        job = d / js.JOB_SCRIPT
        job.write_text(
            js.render_job_script(
                container=plan,
                execution_id=run.id,
                step=step,
                attempt=attempt,
                cluster=cluster,
                params=bound_params(run.ex.workflow, run.ex.params, step),
                step_dir=d,
                execution_dir=Path(run.ex.work_dir),
                require_completed=[Path(run.steps[a].directory) for a in step.after]
                if guarded
                else (),
            )
        )
        return job

    def _container_plan(self, run: _Run, s: StepRun, cluster: Cluster) -> js.ContainerPlan | None:
        if s.resolved_image is None:
            return None
        from . import plugins

        rt = plugins.runtime(s.resolved_image.runtime)
        if rt is None:
            raise StaxError(
                f"container runtime {s.resolved_image.runtime!r} is not available here "
                f"(known: {', '.join(sorted(plugins.runtimes()))})"
            )
        step = run.defs[s.name]
        return js.container_plan(
            rt,
            s.resolved_image,
            step=step,
            cluster=cluster,
            params=bound_params(run.ex.workflow, run.ex.params, step),
            step_dir=Path(s.directory),
            work_dir=self.clusters.work_dir(cluster),
        )

    async def _submit_step(self, run: _Run, name: str, after: tuple[str, ...]) -> None:
        s = run.steps[name]
        try:
            cluster = self.clusters.get(s.cluster)
            step = run.defs[name]
            attempt = s.attempt + 1
            async with self._slots:  # the step's files are written on a worker thread
                job_script = await asyncio.get_running_loop().run_in_executor(
                    self._pool,
                    self._prepare_attempt,
                    run,
                    s,
                    cluster,
                    attempt,
                    run.ex.options.detached,
                )
            r = step.resources
            req = js.JobRequest(
                execution_id=run.id,
                step=name,
                attempt=attempt,
                job_name=js.job_name(run.id, name),
                step_dir=Path(s.directory),
                job_script=job_script,
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
                custom_attributes=self._directives(run, s, cluster),
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
        except Exception as e:  # a broken cluster setup or a bug: say it on the step, do not hang
            log.exception("submission of %s/%s failed", run.id, name)
            if not s.state.final:
                self._set(run, name, StepState.FAILED, reason=f"not submitted: {e}")
                self._schedule(run, [name])
        finally:
            run.submitting.discard(name)
        if run.ex.state.final and self._runs.get(run.id) is run:
            self._finish(run)

    def _directives(self, run: _Run, s: StepRun, cluster: Cluster) -> dict[str, str]:
        plan = self._container_plan(run, s, cluster)
        if plan is None or run.defs[s.name].software is not None:
            return {}
        return plan.runtime.directives(plan.run([], hybrid=False))

    async def _submit_with_backoff(
        self, run: _Run, s: StepRun, cluster: Cluster, req: js.JobRequest
    ) -> None:
        backend = self._backend(cluster)
        key = f"{run.id}/{s.name}/{req.attempt}"
        self._keys[key] = (run.id, s.name, req.attempt)
        loop = asyncio.get_running_loop()
        tries = 0
        while True:
            if run.ex.cancel_requested:
                self._set(run, s.name, StepState.CANCELED, reason="canceled before submission")
                return
            try:
                async with self._slots:
                    native = await loop.run_in_executor(self._pool, backend.submit, key, req)
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
            self._apply(run, upd)
        if run.ex.cancel_requested:
            await self._cancel_step(run, s)
        self._schedule(run, [s.name])  # detached mode: dependants can be queued now

    # ------------------------------------------------------------------ observing
    def _on_update_threadsafe(self, upd: JobUpdate) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_update, upd)

    def _on_update(self, upd: JobUpdate) -> None:
        ids = self._keys.get(upd.key)
        if ids is None:
            return
        run = self._runs.get(ids[0])
        if run is None:
            return
        s = run.steps[ids[1]]
        if s.attempt != ids[2] or s.state.final:
            return
        if s.native_id is None:  # callback fired inside submit(), before the id was committed
            run.early.setdefault(s.name, []).append(upd)
            return
        try:
            self._apply(run, upd)
        except LostOwnership:
            pass

    def _apply(self, run: _Run, upd: JobUpdate) -> None:
        s = run.steps[self._keys[upd.key][1]]
        if upd.state == "queued":
            self._set(run, s.name, StepState.QUEUED)
        elif upd.state == "running":
            start = js.read_start_record(Path(s.directory))
            t = start.time if start and start.attempt == s.attempt else upd.time
            self._set(run, s.name, StepState.RUNNING, started_at=_utc(t))
        else:
            self._spawn(
                self._finalize(run, s.name, upd.state, upd.exit_code, upd.message),
                f"finalize {upd.key}",
            )

    def _check_records(self, run: _Run) -> None:
        """The step's own records: start (-> running) and exit (-> final)."""
        for s in list(run.steps.values()):
            if not s.state.active or not s.native_id or s.name in run.finalizing:
                continue
            d = Path(s.directory)
            rec = js.read_exit_record(d)
            if rec is not None and rec.attempt == s.attempt:
                self._spawn(
                    self._finalize(run, s.name, "record", None, None), f"finalize {run.id}/{s.name}"
                )
                continue
            if s.state is not StepState.RUNNING:
                start = js.read_start_record(d)
                if start is not None and start.attempt == s.attempt:
                    self._set(run, s.name, StepState.RUNNING, started_at=_utc(start.time))

    async def _finalize(
        self,
        run: _Run,
        name: str,
        said: str,
        exit_code: int | None,
        message: str | None,
        gone: bool = False,
    ) -> None:
        """Decide the final state of the current attempt from the step's exit record first and
        the scheduler's word second; then retry or move the DAG on."""
        s = run.steps[name]
        if s.state.final or name in run.finalizing:
            return
        run.finalizing.add(name)
        try:
            attempt = s.attempt
            d = Path(s.directory)
            rec = js.read_exit_record(d)
            if rec is None and said != "canceled" and self._sched(s) != "local" and not gone:
                # the exit record may reach a shared filesystem after the scheduler forgot the job
                deadline = time.monotonic() + self.record_grace
                while rec is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    rec = js.read_exit_record(d)
            if s.attempt != attempt or s.state.final:
                return
            start = js.read_start_record(d)
            fields: dict[str, Any] = {}
            if start is not None and start.attempt == attempt and s.started_at is None:
                fields["started_at"] = _utc(start.time)
            if rec is not None and rec.attempt == attempt and rec.exit_code is None:
                state, reason = StepState.SKIPPED, _skipped_or_canceled(run, s)
                if not reason.startswith("not run"):
                    reason = "not run: an upstream step did not complete"
            elif rec is not None and rec.attempt == attempt and rec.exit_code is not None:
                fields.update(exit_code=rec.exit_code, finished_at=_utc(rec.time))
                if rec.exit_code == 0:
                    state, reason = StepState.COMPLETED, None
                else:
                    state, reason = StepState.FAILED, _exit_reason(rec.exit_code, d)
            elif said == "canceled" or run.ex.cancel_requested:
                state = StepState.CANCELED
                reason = "canceled" if run.ex.cancel_requested else _skipped_or_canceled(run, s)
                if reason.startswith("not run"):
                    state = StepState.SKIPPED
            elif said == "failed" and message:
                state, reason = StepState.FAILED, f"{self._sched(s)}: {message}"
                if exit_code is not None:
                    fields["exit_code"] = exit_code
            elif gone or name in run.attached:
                state = StepState.LOST
                reason = (
                    f"job {s.native_id} is unknown to {self._sched(s)} and left no exit "
                    "record; its outcome cannot be known"
                )
            elif exit_code is not None and exit_code != 0 and self._sched(s) == "local":
                state = StepState.FAILED
                fields["exit_code"] = exit_code
                reason = (
                    f"killed by signal {-exit_code}"
                    if exit_code < 0
                    else f"the job wrapper exited with {exit_code} before the step ended"
                )
            else:
                state = StepState.FAILED
                reason = (
                    f"job {s.native_id} ended without writing its exit record (killed by "
                    f"{self._sched(s)}: walltime, memory or node failure?)"
                )
            if state in (StepState.FAILED, StepState.LOST) and self._retry_left(run, s):
                self._auto_retry(run, s, state, reason, fields.get("exit_code"))
                return
            self._set(run, name, state, reason=reason, **fields)
            backend = self._backends.get(s.cluster)
            if backend is not None:
                backend.forget(f"{run.id}/{name}/{attempt}", s.native_id)
            self._keys.pop(f"{run.id}/{name}/{attempt}", None)
            self._schedule(run, [name])
        finally:
            run.finalizing.discard(name)

    def _sched(self, s: StepRun) -> str:
        try:
            return self.clusters.get(s.cluster).scheduler
        except StaxError:
            return "the scheduler"

    def _retry_left(self, run: _Run, s: StepRun) -> bool:
        if run.ex.cancel_requested:
            return False
        retries = run.defs[s.name].retries
        return s.attempt - run.retry_base.get(s.name, 0) <= retries

    def _auto_retry(
        self, run: _Run, s: StepRun, state: StepState, reason: str | None, exit_code: int | None
    ) -> None:
        rec = _attempt_record(s, reason)
        rec.state, rec.exit_code, rec.finished_at = state, exit_code, now()
        s.history.append(rec)
        key = f"{run.id}/{s.name}/{s.attempt}"
        self._keys.pop(key, None)
        previous = s.state
        retries = run.defs[s.name].retries
        used = s.attempt - run.retry_base.get(s.name, 0)
        self._reset(s, f"attempt {s.attempt} {state.value} ({reason}); retry {used} of {retries}")
        self._commit(run, s, previous)
        self._schedule(run, [s.name])

    # ------------------------------------------------------------------ cancel
    async def _cancel_run(self, run: _Run) -> None:
        self.store.set_cancel_requested(run.id, self.id)
        run.ex.cancel_requested = True
        for name in run.order:
            s = run.steps[name]
            if s.state is StepState.PENDING and name not in run.submitting:
                self._set(run, name, StepState.CANCELED, reason="canceled before it started")
        await asyncio.gather(
            *(
                self._cancel_step(run, s)
                for s in run.steps.values()
                if s.state.active and s.native_id
            )
        )

    async def _cancel_step(self, run: _Run, s: StepRun) -> None:
        backend = self._backend(self.clusters.get(s.cluster))
        key = f"{run.id}/{s.name}/{s.attempt}"
        loop = asyncio.get_running_loop()
        assert s.native_id
        tries = 0
        while True:
            try:
                await loop.run_in_executor(self._pool, backend.cancel, key, s.native_id)
                break
            except SchedulerUnavailable as e:
                wait = self.submit_backoff[min(tries, len(self.submit_backoff) - 1)]
                tries += 1
                s.reason = f"cancel not yet delivered: {e} (retrying in {wait:g} s)"
                self._commit(run, s, s.state)
                await asyncio.sleep(wait)
        if s.state.final:
            return
        rec = js.read_exit_record(Path(s.directory))
        if rec is not None and rec.attempt == s.attempt:
            await self._finalize(run, s.name, "record", None, None)
        else:
            self._set(run, s.name, StepState.CANCELED, reason="canceled by request")
            backend.forget(key, s.native_id)
            self._keys.pop(key, None)

    # ------------------------------------------------------------------ adoption
    async def _adopt_orphans(self) -> None:
        for eid in self.store.claim_orphans(self.id, self.lease_timeout):
            if eid not in self._runs:
                try:
                    await self._resume(eid)
                except LostOwnership:
                    pass
                except Exception:
                    log.exception("could not adopt execution %s", eid)
                    run = self._runs.pop(eid, None)
                    if run is not None:
                        run.done.set()

    async def _resume(self, eid: str) -> _Run | None:
        """Take over an execution: re-attach to its jobs by native id, then drive it on."""
        ex = self.store.get(eid)
        run = self._new_run(ex)
        for name in run.order:  # upstream steps settle first (detached: dependants' skips)
            s = run.steps[name]
            if not s.state.active:
                continue
            self.clusters.get(s.cluster)  # an unknown cluster fails the adoption, loudly
            if s.native_id is None:
                # interrupted between the intent and the scheduler's answer
                run.submitting.add(s.name)
                self._spawn(self._recover_submission(run, s.name), f"recover {eid}/{s.name}")
                continue
            await self._reattach(run, s)
        if ex.cancel_requested:
            await self._cancel_run(run)
        self._schedule(run)
        if all(s.state.final for s in run.steps.values()):
            self._finish(run)
        return run

    async def _reattach(self, run: _Run, s: StepRun) -> None:
        """Watch the job of a step again (by native id), or settle it from its exit record."""
        assert s.native_id
        key = f"{run.id}/{s.name}/{s.attempt}"
        self._keys[key] = (run.id, s.name, s.attempt)
        rec = js.read_exit_record(Path(s.directory))
        if rec is not None and rec.attempt == s.attempt:
            await self._finalize(run, s.name, "record", None, None)
            return
        run.attached.add(s.name)
        backend = self._backend(self.clusters.get(s.cluster))
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._pool, backend.attach, key, s.native_id
            )
        except JobGone:
            await self._finalize(run, s.name, "completed", None, None, gone=True)

    async def _recover_submission(self, run: _Run, name: str) -> None:
        """A step whose submission was interrupted (intent committed, no native id): find its
        job (its start record, then the scheduler by job name). Only when none has appeared
        by the time an orphaned ``sbatch`` would surely have finished is the same attempt
        submitted again: never twice."""
        s = run.steps[name]
        backend = self._backend(self.clusters.get(s.cluster))
        d = Path(s.directory)
        settle = (
            self.submit_settle if backend.scheduler != "local" else min(3.0, self.submit_settle)
        )
        since = s.submitted_at.timestamp() if s.submitted_at else time.time()
        loop = asyncio.get_running_loop()
        native: str | None = None
        try:
            while True:
                start = js.read_start_record(d)
                native = start.job_id if start and start.attempt == s.attempt else None
                answered = True
                if native is None and s.job_name:
                    try:
                        native = await loop.run_in_executor(
                            self._pool, backend.find_by_name, s.job_name
                        )
                    except SchedulerUnavailable:
                        answered = False  # cannot tell yet: never resubmit on a guess
                if native is not None or (answered and time.time() >= since + settle):
                    break
                await asyncio.sleep(1.0)
            if native is None:
                s.attempt -= 1  # it never reached the scheduler: the same attempt goes again
                previous = s.state
                self._reset(s, "resubmitting: the engine stopped during submission")
                self._commit(run, s, previous)
            else:
                s.native_id = native
                self._commit(run, s, s.state)
        finally:
            run.submitting.discard(name)
        if native is not None:
            if run.ex.cancel_requested:
                await self._cancel_step(run, s)
            else:
                await self._reattach(run, s)
        elif run.ex.cancel_requested:
            self._set(run, name, StepState.CANCELED, reason="canceled before submission")
        self._schedule(run, [name])

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
                    for run in list(self._runs.values()):
                        self._check_records(run)
                        self._update_warnings(run)
                if t >= next_beat:
                    next_beat = t + self.heartbeat_interval
                    self.store.heartbeat(self.id)
                if t >= next_scan:
                    next_scan = t + self.scan_interval
                    await self._serve_requests()
                    if self.adopt:
                        await self._adopt_orphans()
            except LostOwnership:
                pass
            except Exception:
                log.exception("engine housekeeping failed; continuing")
            await asyncio.sleep(tick)

    def _update_warnings(self, run: _Run) -> None:
        warnings = []
        for c in sorted({s.cluster for s in run.steps.values() if s.state.active}):
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
        if warnings != run.ex.warnings:
            run.ex.warnings = warnings
            self.store.set_warnings(run.id, warnings, self.id)
            self._publish(run, None, "warning", None)

    async def _serve_requests(self) -> None:
        for rid, eid, kind in self.store.open_requests(self.id):
            try:
                if kind == "cancel":
                    run = self._runs.get(eid)
                    if run is not None:
                        await self._cancel_run(run)
                    result = "ok"
                elif kind == "retry":
                    await self.retry(eid)
                    result = "ok"
                else:
                    result = f"unknown request {kind!r}"
            except StaxError as e:
                result = f"error: {e}"
            self.store.finish_request(rid, result)


def _utc(t: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc)


def _attempt_record(s: StepRun, reason: str | None) -> AttemptRecord:
    return AttemptRecord(
        attempt=s.attempt,
        state=s.state,
        native_id=s.native_id,
        exit_code=s.exit_code,
        reason=reason if s.reason is None else s.reason,
        submitted_at=s.submitted_at,
        finished_at=s.finished_at,
    )


def _exit_reason(code: int, step_dir: Path) -> str:
    what = {126: "command not executable", 127: "command not found"}.get(code)
    if code > 128 and code - 128 < 65:
        what = f"killed by signal {code - 128}"
    tail = _last_line(step_dir / js.STDERR)
    out = f"exit code {code}" + (f" ({what})" if what else "")
    return out + (f": {tail}" if tail else "")


def _last_line(path: Path, limit: int = 4096) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in data.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


def _skipped_or_canceled(run: _Run, s: StepRun) -> str:
    """Why a job that ended without running its step did so: an upstream step did not complete
    (detached mode), or someone canceled it outside jupyter_stax."""
    for dep in run.defs[s.name].after:
        d = run.steps[dep]
        if d.state.final and d.state is not StepState.COMPLETED:
            return f"not run: upstream step {dep!r} {d.state.value}"
    return "canceled outside jupyter_stax (scancel?)"
