"""Running sweep steps: one step over many parameter values (see :mod:`..core.sweep`).

A sweep step is ONE step of the execution (one row, one state) whose attempt runs its
instances, each in ``<step>/<i>/`` with its own job script, records, output and exit code:

* **Slurm**: ONE job array (``--array=0-E%cap``); element ``k`` runs the instances of line
  ``k`` of ``stax.elements.<attempt>`` (``pack`` of them, in parallel up to the element's
  CPUs). When the elements outnumber the cluster's MaxArraySize (``scontrol show config``,
  asked once per cluster) the array is split into as few arrays as fit, the cap shared among
  them. The array's state comes from the one ``squeue`` per poll of the cluster's executor
  (elements summed up under the array's id, see :func:`.schedulers.slurm.aggregate_arrays`).
* **local** and the other schedulers: ONE job runs every instance, at most ``max_parallel``
  (local: the machine's CPUs by default) at once, each as its own process.

What an instance did comes from its own records (never from the scheduler's memory):
a start record makes it running, an exit record final. When every instance of the attempt is
final the step is: completed when all completed, else failed (or retried: a new attempt runs
only the instances that did not complete, as a smaller array). An instance whose job ended
without an exit record is failed ("lost"). Cancel cancels the array(s).

The engine keeps one :class:`Tracker` per sweep step it drives; after a restart it rebuilds
it from the records (the array is never submitted twice: its native ids are committed).
``stax.sweep.json`` in the step directory holds the summary (counts by state, the failed
instances) for the status surfaces.

Functions of the engine's event-loop thread (blocking work on its worker threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import jobscript as js
from ..core import sweep as sw
from ..core.dag import bound_params
from ..core.errors import SchedulerUnavailable, StaxError
from ..core.models import Cluster, StepRun, SweepSummary
from ..core.states import StepState
from . import planning, schedulers, staging
from .backend import JobGone, SubmitError, _kill_tree
from .runstate import JobKey, Run, attempt_record, reset
from .schedulers import run_checked, slurm
from .store import LostOwnership, now
from .transport import ClusterPath, FileSpec, LocalTransport, TransportError

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("jupyter_stax.engine")

#: instances an element runs at once at most (its CPUs are this many times an instance's)
PACK_WIDTH = 8
#: instances a remote workstation's runner runs at once at most without ``max_parallel`` (it
#: runs as many as the machine has CPUs, up to this)
REMOTE_WIDTH = 64
#: instance states (the summary's keys); the last four are final
STATES = ("pending", "queued", "running", "completed", "failed", "lost", "canceled")
FINAL = frozenset({"completed", "failed", "lost", "canceled"})
#: failed instances listed in the summary and in the step's reason
LISTED = 50

_TRACKERS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], Tracker]] = (
    weakref.WeakKeyDictionary()
)
_MAX_ARRAY: dict[str, int] = {}  # cluster name -> MaxArraySize (asked once)
_NODE_CPUS: dict[str, int | None] = {}  # cluster name -> CPUs of its smallest node


def is_sweep(run: Run, name: str) -> bool:
    return run.defs[name].sweep is not None


@dataclass
class Tracker:
    """One attempt of one sweep step: what each instance did (index -> state)."""

    run: Run
    name: str
    attempt: int
    step_dir: Path
    todo: list[int]
    """the instances this attempt runs (the others completed in an earlier one)"""
    state: list[str]
    exit: list[int | None]
    keys: list[JobKey] = field(default_factory=list)
    natives: list[str] = field(default_factory=list)
    gone: set[int] = field(default_factory=set)
    """jobs (by position) that attach() found gone"""
    pack: int = 1
    elements: int = 0
    groups: list[list[int]] = field(default_factory=list)
    """the instances of each element in the order its runner starts them (empty: unknown)"""
    width: int = 1
    """instances an element runs at once"""
    front: list[int] = field(default_factory=list)
    """per element: the position of its first instance not known to have started"""
    skipped: set[int] = field(default_factory=set)
    """instances whose element did not run them: an upstream step did not complete (detached)"""
    stopping: bool = False
    first_start: float | None = None
    written: str = ""
    offsets: list[int] = field(default_factory=list)
    """per job (array): the index of its first element among all (empty: unknown)"""
    tally: Counter[str] = field(default_factory=Counter)
    """instances per state, kept as states change (no pass scans every instance)"""
    running: set[int] = field(default_factory=set)
    """the instances running now"""

    def __post_init__(self) -> None:
        self.tally = Counter(self.state)
        self.running = {i for i, st in enumerate(self.state) if st == "running"}

    def set(self, i: int, st: str) -> None:
        """Instance ``i`` is in state ``st`` now (every change of ``state`` goes here)."""
        old = self.state[i]
        if old == st:
            return
        self.tally[old] -= 1
        self.tally[st] += 1
        self.state[i] = st
        if st == "running":
            self.running.add(i)
        else:
            self.running.discard(i)

    @property
    def total(self) -> int:
        return len(self.state)

    @property
    def unfinished(self) -> int:
        return sum(self.tally[k] for k in STATES if k not in FINAL)

    def counts(self) -> dict[str, int]:
        return {k: self.tally[k] for k in STATES if self.tally[k]}

    def failed(self) -> list[int]:
        if not (self.tally["failed"] or self.tally["lost"] or self.tally["canceled"]):
            return []
        return [i for i, st in enumerate(self.state) if st in ("failed", "lost", "canceled")]

    def summary(self) -> dict[str, Any]:
        failed = self.failed()
        return {
            "total": self.total,
            "attempt": self.attempt,
            "counts": self.counts(),
            "failed": [
                {"index": i, "state": self.state[i], "exit_code": self.exit[i]}
                for i in failed[:LISTED]
            ],
            "pack": self.pack,
            "elements": self.elements,
            "jobs": list(self.natives),
        }


def _trackers(engine: Engine) -> dict[tuple[str, str], Tracker]:
    return _TRACKERS.setdefault(engine, {})


# ---------------------------------------------------------------------- submission
@dataclass(frozen=True)
class _Written:
    todo: list[int]
    done: list[int]
    runners: list[tuple[Path, int]]  # (script, array size; 0: one job, not an array)
    pack: int
    elements: int
    width: int
    groups: list[list[int]]


def submit_step(engine: Engine, run: Run, name: str, after: tuple[str, ...] = ()) -> None:
    """Start a sweep step's next attempt (called by the engine's scheduling). ``after``:
    native ids of upstream jobs its array(s) wait for at the scheduler (detached mode)."""
    engine._spawn(_submit(engine, run, name, after), f"submit sweep {run.id}/{name}")


async def _submit(engine: Engine, run: Run, name: str, after: tuple[str, ...] = ()) -> None:
    s = run.steps[name]
    try:
        await _submit_attempt(engine, run, s, after)
    except (LostOwnership, asyncio.CancelledError):
        raise
    except Exception as e:
        log.exception("submission of sweep %s/%s failed", run.id, name)
        if not s.state.final:
            engine._set(run, name, StepState.FAILED, reason=f"not submitted: {e}")
            engine._schedule(run, [name])
    finally:
        run.submitting.discard(name)
    if run.ex.options.detached:
        engine._schedule(run, [name])  # every array submitted: dependants wait on them all
    if run.ex.state.final and engine._runs.get(run.id) is run:
        engine._finish(run)


async def _submit_attempt(
    engine: Engine, run: Run, s: StepRun, after: tuple[str, ...] = ()
) -> None:
    """Write the attempt's files, submit its job(s), start tracking it."""
    name = s.name
    cluster = engine.clusters.get(s.cluster)
    attempt = s.attempt + 1
    max_array = node_cpus = None
    style = schedulers.array_style(cluster.scheduler)
    if style is not None:
        max_array = await _max_array_size(engine, cluster, style)
    if cluster.scheduler == slurm.NAME:
        node_cpus = await _node_cpus(engine, cluster)
    while True:
        try:
            async with engine._slots:
                w = await engine._blocking(
                    _write_attempt, engine, run, s, cluster, attempt, max_array, node_cpus
                )
            break
        except TransportError as e:
            s.reason = f"not yet submitted: {e}"
            engine._commit(run, s, s.state)
            await asyncio.sleep(engine.submit_backoff[0])
    s.attempt, s.job_name = attempt, js.job_name(run.id, name)
    tr = _new_tracker(engine, run, name, attempt, w.todo, w.done)
    tr.pack, tr.elements, tr.groups, tr.width = w.pack, w.elements, w.groups, w.width
    if all(size for _, size in w.runners):  # arrays: where each one's elements start
        tr.offsets = [sum(size for _, size in w.runners[:j]) for j in range(len(w.runners))]
    if not w.todo:  # every instance completed in earlier attempts
        engine._set(run, name, StepState.COMPLETED, reason=None, exit_code=0)
        await _write_summary(engine, tr)
        engine._schedule(run, [name])
        return
    engine._set(
        run, name, StepState.SUBMITTED, submitted_at=now(), reason=None, native_id=None,
        exit_code=None,
    )
    await _write_summary(engine, tr)
    step = run.defs[name]
    for j, (script, size) in enumerate(w.runners):
        if run.ex.cancel_requested:
            break
        req = _request(run, s, step, cluster, script, size, w, attempt, after)
        key = JobKey(run.id, f"{name}[{j}]", attempt)
        native = await _submit_job(engine, run, s, cluster, key, req)
        if native is None:  # refused: the arrays already submitted go too
            if tr.natives:
                await _cancel_jobs(engine, run, s, tr)
            return
        tr.keys.append(key)
        tr.natives.append(native)
        s.native_id = ",".join(tr.natives)
        s.reason = None
        engine._commit(run, s, s.state)
    if run.ex.cancel_requested:
        await cancel(engine, run, s)
        return
    engine._spawn(_track(engine, tr), f"track sweep {run.id}/{name}")


async def _submit_job(
    engine: Engine, run: Run, s: StepRun, cluster: Cluster, key: JobKey, req: js.JobRequest
) -> str | None:
    backend = engine._backend(cluster)
    tries = 0
    while True:
        await engine._durable(run)  # the intent is committed before the scheduler is called
        try:
            async with engine._slots:
                return await engine._blocking(backend.submit, key, req)
        except SubmitError as e:
            if not e.transient:
                engine._set(run, s.name, StepState.FAILED, reason=f"not submitted: {e}")
                engine._schedule(run, [s.name])
                return None
            wait = engine.submit_backoff[min(tries, len(engine.submit_backoff) - 1)]
            tries += 1
            s.reason = f"{e} (try {tries}; next in {wait:g} s)"
            engine._commit(run, s, s.state)
            await asyncio.sleep(wait)


def _request(
    run: Run,
    s: StepRun,
    step: Any,
    cluster: Cluster,
    script: Path,
    size: int,
    w: _Written,
    attempt: int,
    after: tuple[str, ...] = (),
) -> js.JobRequest:
    """One job (an array of ``size`` elements, or with 0 one job of every instance)."""
    r = step.resources
    width = w.width
    per = max(1, math.ceil((w.pack if size else len(w.todo)) / width))  # rounds of instances
    cap = sw.element_cap(step.max_parallel, width)
    attrs = {}
    style = schedulers.array_style(cluster.scheduler)
    if size and style is not None:
        attrs = style.attributes(size, None if cap is None else max(1, cap // len(w.runners)))
    d = Path(s.directory)
    return js.JobRequest(
        execution_id=run.id,
        step=s.name,
        attempt=attempt,
        job_name=js.job_name(run.id, s.name),
        step_dir=d,
        job_script=script,
        stdout=d / js.STDOUT,
        stderr=d / js.STDERR,
        walltime_seconds=js.walltime_seconds(step, cluster) * per,
        nodes=r.nodes,
        ntasks=r.ntasks,
        cpus_per_task=(r.cpus_per_task or 1) * width if width > 1 else r.cpus_per_task,
        gpus_per_task=r.gpus,
        memory_bytes=r.memory_bytes * width if r.memory_bytes else None,
        queue=cluster.queue,
        account=cluster.account,
        after_native_ids=after,
        custom_attributes=attrs,
    )


def _write_attempt(
    engine: Engine,
    run: Run,
    s: StepRun,
    cluster: Cluster,
    attempt: int,
    max_array: int | None,
    node_cpus: int | None,
) -> _Written:
    """Write the files of the attempt on the cluster: each instance's scripts (the instances
    that did not complete earlier), the elements file and the runner(s). An array element
    asks for the CPUs of as many instances as it runs at once (``width``: at most its pack,
    :data:`PACK_WIDTH` and what the smallest node has). Blocking."""
    step = run.defs[s.name]
    spec = sw.spec(step.sweep or {})
    n = len(spec)
    d = Path(s.directory)
    transport = engine._transport(cluster)
    done: list[int] = []
    if attempt > 1:
        recs = transport.read_records([str(d / str(i)) for i in range(n)])
        done = [
            i for i in range(n)
            if (e := recs[str(d / str(i))].exit) is not None and e.exit_code == 0
        ]
    finished = set(done)
    todo = [i for i in range(n) if i not in finished]
    local = cluster.scheduler == "local"
    style = schedulers.array_style(cluster.scheduler)
    array = style is not None
    pack = (
        step.pack
        if isinstance(step.pack, int)
        else sw.balanced(len(todo), sw.auto_pack(len(todo), step.expected_seconds))
    )
    width, cpi = lanes(
        local=local, remote=cluster.remote, array=array, pack=pack, count=len(todo),
        max_parallel=step.max_parallel, node_cpus=node_cpus,
        cpus_per_task=step.resources.cpus_per_task, here_cpus=os.cpu_count() or 1,
    )
    elements = sw.plan_elements(todo, pack) if array else [todo]
    wd = planning.cluster_work_dir(engine.clusters, cluster, engine.store)
    base = bound_params(run.ex.workflow, run.ex.params, step)
    # detached: each instance checks its upstream steps' records (the scheduler only orders)
    required = planning.required_upstream(run.ex, step) if run.ex.options.detached else ()
    ds = str(d)  # paths below as text: thousands of instances, no Path per file
    transport.make_dirs([ds, *(f"{ds}/{i}" for i in todo)])
    # the step's inputs, into the step directory (its instances read them from ``..``)
    if step.inputs:
        staged = staging.stage_in(run.ex, step, s, cluster, attempt, engine._cluster_transport)
        if staged is not None:
            s.files = staged
    if attempt > 1:
        transport.rename(
            [m for i in todo for m in planning.earlier_attempt_moves(d / str(i), attempt)]
        )
    files: dict[ClusterPath, FileSpec] = {}
    # one step script for every instance (values reach it as STAX_PARAM_* variables) in the
    # step directory, sourced by each instance's job script; per instance in a container
    shared = js.run_line(step, cluster, own=True) if s.resolved_image is None else None
    if shared is not None and f"./{js.STEP_SCRIPT}" in shared:
        files[str(d / js.STEP_SCRIPT)] = FileSpec(js.render_step_script(step, None))
    else:
        shared = None
    exec_dir = Path(run.ex.work_dir)
    for i in todo:
        values = sw.instance(spec, i)
        inst = step.model_copy(
            update={
                "params": {**step.params, **values},
                "env": {**step.env, "STAX_SWEEP_INDEX": str(i)},
            }
        )
        sd = f"{ds}/{i}"
        plan = None
        if s.resolved_image is not None:
            plan = planning.container_plan(
                run.ex, inst, s.model_copy(update={"directory": sd}), cluster, wd
            )
        job = js.render_job_script(
            container=plan,
            execution_id=run.id,
            step=inst,
            attempt=attempt,
            cluster=cluster,
            params={**base, **values},
            step_dir=sd,
            execution_dir=exec_dir,
            exit_record=False,
        )
        if shared is not None:  # the run line is the script's last (a value may hold its text)
            head, _, tail = job.rpartition(shared)
            job = head + shared.replace(f"./{js.STEP_SCRIPT}", f"../{js.STEP_SCRIPT}") + tail
        else:
            files[f"{sd}/{js.STEP_SCRIPT}"] = FileSpec(js.render_step_script(inst, plan))
        files[f"{sd}/{js.JOB_SCRIPT}"] = FileSpec(job)
    files[str(d / f"{sw.ELEMENTS_FILE}.{attempt}")] = FileSpec(sw.elements_text(elements))
    runners: list[tuple[Path, int]] = []
    if style is not None:
        for j, (offset, size) in enumerate(
            slurm.split_array(len(elements), max_array or style.max_size)
        ):
            path = d / f"{sw.RUNNER}.{attempt}.{j}.sh"
            files[str(path)] = FileSpec(
                sw.render_runner(
                    step_dir=str(d), attempt=attempt, offset=offset, width=width,
                    cpus_per_instance=cpi, array=style.index, required=required,
                    claims_in_step_dir=local,
                ),
                0o755,
            )
            runners.append((path, size))
    elif todo:
        path = d / f"{sw.RUNNER}.{attempt}.sh"
        files[str(path)] = FileSpec(
            sw.render_runner(
                step_dir=str(d), attempt=attempt, offset=0, width=width,
                cpus_per_instance=cpi, array=False, required=required,
                claims_in_step_dir=local,
            ),
            0o755,
        )
        runners.append((path, 0))
    if isinstance(transport, LocalTransport):
        _write_new_files(files)
    else:
        transport.write_files(files)
    return _Written(todo, done, runners, pack, len(elements) if todo else 0, width, elements)


def lanes(
    *,
    local: bool,
    remote: bool,
    array: bool,
    pack: int,
    count: int,
    max_parallel: int | None,
    node_cpus: int | None,
    cpus_per_task: int | None,
    here_cpus: int,
) -> tuple[int, int | None]:
    """How many instances a runner runs at once: ``(width, cpus per instance)``; with a
    number of CPUs per instance the runner runs at most as many as the CPUs it finds when it
    starts allow (its allocation's, or the machine's), never more than ``width``; without,
    exactly ``width``.

    * local (this machine): ``max_parallel``, else its CPUs (at least 2);
    * a remote workstation: ``max_parallel``, else ITS CPUs, counted by the runner there;
    * an array element: at most its pack, ``max_parallel``, :data:`PACK_WIDTH` and what the
      smallest node's CPUs fit;
    * one job of another scheduler: the CPUs of ``max_parallel`` instances (at most
      :data:`PACK_WIDTH`), else one at a time."""
    cpi = cpus_per_task or 1
    if local and not remote:
        return max_parallel or max(2, here_cpus), None
    if local:
        return (max_parallel, None) if max_parallel else (REMOTE_WIDTH, cpi)
    if array:
        fit = max(1, (node_cpus or 1) // cpi)
        return min(pack, max_parallel or pack, PACK_WIDTH, fit), cpi
    return min(count or 1, max_parallel or 1, PACK_WIDTH), cpi


def _write_new_files(files: dict[ClusterPath, FileSpec]) -> None:
    """Local files of an attempt about to be submitted (nobody reads them before): written in
    place, without the temporary file and rename of :meth:`.LocalTransport.write_files`
    (thousands of instances: a third of the time)."""
    for path, spec in files.items():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, spec.mode)
        with os.fdopen(fd, "w") as f:
            f.write(spec.text)
        if spec.mode != 0o644:
            os.chmod(path, spec.mode)


async def _max_array_size(engine: Engine, cluster: Cluster, style: schedulers.ArrayStyle) -> int:
    """The elements one array may have on the cluster, asked once (Slurm: MaxArraySize of
    ``scontrol show config``; Grid Engine: ``max_aj_tasks``); the scheduler's default when it
    cannot be read."""
    got = _MAX_ARRAY.get(cluster.name)
    if got is None:
        if style.max_size_command is None or style.parse_max_size is None:
            return style.max_size
        tr = engine._transport(cluster)
        try:
            out = await engine._blocking(run_checked, tr, style.max_size_command, 60.0)
            got = style.parse_max_size(out)
        except SchedulerUnavailable as e:
            log.warning("array size limit of %s unknown (%s); assuming the default", cluster, e)
            return style.max_size
        _MAX_ARRAY[cluster.name] = got
    return got


async def _node_cpus(engine: Engine, cluster: Cluster) -> int | None:
    """The CPUs of the cluster's smallest node (``sinfo``), asked once; None: unknown."""
    if cluster.name not in _NODE_CPUS:
        tr = engine._transport(cluster)
        try:
            out = await engine._blocking(
                run_checked, tr, slurm.node_cpus_command(cluster.queue), 60.0
            )
        except SchedulerUnavailable as e:
            log.warning("node CPUs of %s unknown (%s); packed instances run one by one", cluster, e)
            return None
        _NODE_CPUS[cluster.name] = slurm.parse_node_cpus(out)
    return _NODE_CPUS[cluster.name]


def _new_tracker(
    engine: Engine, run: Run, name: str, attempt: int, todo: list[int], done: list[int]
) -> Tracker:
    n = len(sw.spec(run.defs[name].sweep or {}))
    state = ["pending"] * n
    for i in done:
        state[i] = "completed"
    tr = Tracker(
        run, name, attempt, Path(run.steps[name].directory), todo, state, [None] * n
    )
    for i in done:
        tr.exit[i] = 0
    _trackers(engine)[(run.id, name)] = tr
    return tr


# ---------------------------------------------------------------------- tracking
async def _track(engine: Engine, tr: Tracker) -> None:
    run, s = tr.run, tr.run.steps[tr.name]
    cluster = engine.clusters.get(s.cluster)
    backend = engine._backend(cluster)
    reader = engine._reader(s.cluster)
    # a remote cluster's records: once per poll interval (each read is a round trip on a
    # shared login node, batched with the other steps' reads of that turn)
    interval = (
        cluster.effective_poll_interval
        if cluster.remote
        else max(0.1, min(engine.record_interval, cluster.effective_poll_interval))
    )
    here = cluster.scheduler == "local" and not cluster.remote
    grace = min(1.0, engine.record_grace) if here else engine.record_grace
    ended_at: float | None = None
    last_write = 0.0
    told = False  # the first reconcile pass after an adoption (see observing.answered)
    try:
        while True:
            if engine._runs.get(run.id) is not run or s.attempt != tr.attempt or s.state.final:
                return
            try:
                await _read_records(tr, reader, _waiting(tr, backend))
            except (TransportError, StaxError) as e:
                log.warning("records of sweep %s/%s: %s", run.id, tr.name, e)
                await asyncio.sleep(interval)
                continue
            jobs = [
                "gone" if j in tr.gone else backend.state(k) for j, k in enumerate(tr.keys)
            ]
            if s.state.final or s.attempt != tr.attempt:
                return
            running = bool(tr.running)
            if s.state is not StepState.RUNNING and (running or "running" in jobs):
                t = tr.first_start or time.time()
                engine._set(run, tr.name, StepState.RUNNING, started_at=_utc(t))
            elif s.state is StepState.SUBMITTED and jobs and all(j == "queued" for j in jobs):
                engine._set(run, tr.name, StepState.QUEUED)
            if tr.tally["pending"] and jobs and all(j is not None for j in jobs):
                for i in tr.todo:
                    if tr.state[i] == "pending":
                        tr.set(i, "queued")
            pending = tr.unfinished
            failed_now = bool(tr.tally["failed"] or tr.tally["lost"])
            if (
                failed_now and pending and not tr.stopping
                and run.ex.workflow.on_failure == "stop"
            ):
                tr.stopping = True  # stop: the rest of the array is canceled
                await _cancel_jobs(engine, run, s, tr)
            if not pending:
                await _decide(engine, tr)
                return
            if jobs and all(j in ("completed", "failed", "canceled", "gone") for j in jobs):
                if ended_at is None:
                    ended_at = time.monotonic()
                elif time.monotonic() - ended_at >= grace:
                    for i in tr.todo:  # the job ended and no exit record came
                        if tr.state[i] not in FINAL:
                            tr.set(i, "canceled" if tr.stopping else "lost")
                    await _decide(engine, tr)
                    return
            if time.monotonic() - last_write >= 1.0:
                last_write = time.monotonic()
                await _write_summary(engine, tr)
            if not told and all(j is not None for j in jobs):
                told = True  # every instance's records read, every array's state known
                engine._answered(run, tr.name)
            await asyncio.sleep(interval)
    except LostOwnership:
        pass
    finally:
        engine._answered(run, tr.name)
        if _trackers(engine).get((run.id, tr.name)) is tr and (
            s.state.final or engine._runs.get(run.id) is not run
        ):
            with contextlib.suppress(Exception):
                await _write_summary(engine, tr)


def _waiting(tr: Tracker, backend: Any) -> set[int] | None:
    """The elements (numbered across the sweep's arrays) that the scheduler showed still
    waiting at its last status query; None when it does not say."""
    if not tr.offsets or len(tr.offsets) != len(tr.natives):
        return None
    out: set[int] = set()
    for offset, native in zip(tr.offsets, tr.natives, strict=True):
        got = backend.waiting_elements(native)
        if got is None:
            return None
        out.update(offset + e for e in got)
    return out


async def _read_records(tr: Tracker, reader: Any, waiting: set[int] | None = None) -> None:
    """Read the records that may have changed since the last pass and apply them.

    Each element's runner starts its instances in order, at most ``width`` at once: the
    started ones are a prefix of its list (give or take ``width``). So per element only the
    instances from the first not started one (``front``) on, in a window that doubles while
    everything in it has started, are read, plus those known to run: a sweep of 100,000 does
    not cost 200,000 file reads per poll, and a backlog is caught up in a few rounds. Without
    the elements (after a restart) every unfinished instance is read. Elements the scheduler
    still shows waiting (``waiting``: Slurm lists them) are not read at all."""
    base = str(tr.step_dir)

    def dirs(ids: set[int] | list[int]) -> list[str]:
        return [f"{base}/{i}" for i in sorted(ids)]

    if not tr.groups:
        pending = [i for i in tr.todo if tr.state[i] not in FINAL]
        if pending:
            _apply_records(tr, pending, await reader.read_many(dirs(pending)))
        return
    if len(tr.front) != len(tr.groups):
        tr.front = [0] * len(tr.groups)
    window = [2 * tr.width] * len(tr.groups)
    active = [g for g in range(len(tr.groups)) if waiting is None or g not in waiting]
    ids = set(tr.running)
    while active:
        for g in active:
            group, f = tr.groups[g], tr.front[g]
            ids.update(i for i in group[f : f + window[g]] if tr.state[i] not in FINAL)
        if not ids:
            return
        _apply_records(tr, list(ids), await reader.read_many(dirs(ids)))
        ids = set()
        again = []
        for g in active:
            group, f = tr.groups[g], tr.front[g]
            start = f
            while f < len(group) and tr.state[group[f]] in ("running", *FINAL):
                f += 1
            tr.front[g] = f
            if f < len(group) and f - start >= window[g] - tr.width:
                window[g] *= 2  # all (or nearly all) of it had started: look further
                again.append(g)
        active = again


def _apply_records(tr: Tracker, pending: list[int], got: dict[str, Any]) -> None:
    base = str(tr.step_dir)  # the keys: f"{base}/{i}" is str(step_dir / str(i))
    for i in pending:
        rec = got[f"{base}/{i}"]
        if rec.exit is not None and rec.exit.attempt == tr.attempt:
            code = rec.exit.exit_code
            tr.exit[i] = code
            tr.set(i, "completed" if code == 0 else "failed")
            if rec.exit.skipped:
                tr.skipped.add(i)
        elif rec.start is not None and rec.start.attempt == tr.attempt:
            tr.set(i, "running")
            if tr.first_start is None or rec.start.time < tr.first_start:
                tr.first_start = rec.start.time


async def _decide(engine: Engine, tr: Tracker) -> None:
    """Every instance of the attempt is final: the step's outcome (or its retry)."""
    run, s = tr.run, tr.run.steps[tr.name]
    failed = tr.failed()
    for j, key in enumerate(tr.keys):
        with contextlib.suppress(Exception):
            engine._backend(engine.clusters.get(s.cluster)).forget(key, tr.natives[j])
    await _write_summary(engine, tr)
    if s.state.final or s.attempt != tr.attempt:
        return
    if not failed:
        engine._set(run, tr.name, StepState.COMPLETED, reason=None, exit_code=0)
        engine._schedule(run, [tr.name])
        return
    if set(failed) <= tr.skipped:  # detached: an upstream step did not complete
        # named once the upstream steps are decided (an adopting engine's trackers decide in
        # any order: the upstream step's may come after this one's)
        if not await run.upstream_settled(tr.name, lambda: engine._runs.get(run.id) is run):
            return
        if s.state.final or s.attempt != tr.attempt:
            return
        bad = [
            f"{a!r} {run.steps[a].state.value}"
            for a in run.defs[tr.name].after
            if run.steps[a].state.final and run.steps[a].state is not StepState.COMPLETED
        ]
        why = f"upstream step {bad[0]}" if bad else "an upstream step did not complete"
        engine._set(run, tr.name, StepState.SKIPPED, reason=f"not run: {why}")
        engine._schedule(run, [tr.name])
        return
    reason = failed_reason(tr)
    code = next((tr.exit[i] for i in failed if tr.exit[i] is not None), None)
    if run.ex.cancel_requested:
        engine._set(run, tr.name, StepState.CANCELED, reason=reason, exit_code=code)
    elif run.retries_left(tr.name) > 0 and not tr.stopping:
        _retry(engine, run, s, reason, code)
        return
    else:
        engine._set(run, tr.name, StepState.FAILED, reason=reason, exit_code=code)
    engine._schedule(run, [tr.name])


def _retry(engine: Engine, run: Run, s: StepRun, reason: str, exit_code: int | None) -> None:
    """An automatic retry (``retries``): the attempt goes into the history, the step back to
    pending; its next attempt runs the instances that did not complete (as
    :func:`.observing.auto_retry` does for a step; not imported: observing calls this module)."""
    rec = attempt_record(s, reason)
    rec.state, rec.exit_code, rec.finished_at = StepState.FAILED, exit_code, now()
    s.history.append(rec)
    previous = s.state
    used = s.attempt - run.retry_base.get(s.name, 0)
    retries = run.defs[s.name].retries
    reset(s, f"attempt {s.attempt} failed ({reason}); retry {used} of {retries}")
    engine._commit(run, s, previous)
    engine._schedule(run, [s.name])


def failed_reason(tr: Tracker) -> str:
    """``3 of 100 instances did not complete: 4 (exit 1), 17 (exit 1), 52 (lost)``."""
    failed = tr.failed()

    def one(i: int) -> str:
        st = tr.state[i]
        return f"{i} (exit {tr.exit[i]})" if st == "failed" and tr.exit[i] is not None else (
            f"{i} ({st})"
        )

    shown = ", ".join(one(i) for i in failed[:10])
    more = f", ... ({len(failed) - 10:,} more)" if len(failed) > 10 else ""
    return f"{len(failed):,} of {tr.total:,} instances did not complete: {shown}{more}"


async def _write_summary(engine: Engine, tr: Tracker) -> None:
    """The summary into ``stax.sweep.json`` and onto the step (published: rows show counts)."""
    text = json.dumps(tr.summary(), sort_keys=True) + "\n"
    if text == tr.written:
        return
    s = tr.run.steps[tr.name]
    if s.attempt == tr.attempt:
        s.sweep = SweepSummary.model_validate(tr.summary())
        if engine._runs.get(tr.run.id) is tr.run:
            with contextlib.suppress(LostOwnership):
                engine._commit(tr.run, s, s.state)
    transport = engine._transport(engine.clusters.get(s.cluster))
    try:
        await engine._io(
            transport.write_files, {str(tr.step_dir / sw.SUMMARY_FILE): FileSpec(text)}
        )
        tr.written = text
    except (TransportError, OSError) as e:
        log.warning("summary of sweep %s/%s not written: %s", tr.run.id, tr.name, e)


def _utc(t: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc)


# ---------------------------------------------------------------------- cancel
async def _cancel_jobs(engine: Engine, run: Run, s: StepRun, tr: Tracker | None) -> None:
    cluster = engine.clusters.get(s.cluster)
    backend = engine._backend(cluster)
    natives = [n for n in (s.native_id or "").split(",") if n]
    for j, native in enumerate(natives):
        key = tr.keys[j] if tr is not None and j < len(tr.keys) else JobKey(
            run.id, f"{s.name}[{j}]", s.attempt
        )
        tries = 0
        while True:
            try:
                if cluster.scheduler == "local" and not cluster.remote:
                    await engine._blocking(_kill_tree, int(native))
                else:
                    await engine._blocking(backend.cancel, key, native)
                break
            except SchedulerUnavailable as e:
                wait = engine.submit_backoff[min(tries, len(engine.submit_backoff) - 1)]
                tries += 1
                s.reason = f"cancel not yet delivered: {e} (retrying in {wait:g} s)"
                engine._commit(run, s, s.state)
                await asyncio.sleep(wait)
            except (StaxError, ValueError) as e:
                log.warning("cancel of job %s of sweep %s/%s: %s", native, run.id, s.name, e)
                break


async def cancel(engine: Engine, run: Run, s: StepRun) -> None:
    """Cancel the sweep's array(s); the instances that had not ended are canceled."""
    tr = _trackers(engine).get((run.id, s.name))
    await _cancel_jobs(engine, run, s, tr)
    if s.state.final:
        return
    if tr is not None and tr.attempt == s.attempt:
        pending = [i for i in tr.todo if tr.state[i] not in FINAL]
        with contextlib.suppress(TransportError, StaxError):
            got = await engine._reader(s.cluster).read_many(
                [str(tr.step_dir / str(i)) for i in pending]
            )
            _apply_records(tr, pending, got)
        for i in tr.todo:
            if tr.state[i] not in FINAL:
                tr.set(i, "canceled")
        await _write_summary(engine, tr)
    if not s.state.final:
        engine._set(run, s.name, StepState.CANCELED, reason="canceled by request")


# ---------------------------------------------------------------------- recovery
async def _read_groups(engine: Engine, cluster: Cluster, d: Path, attempt: int) -> list[list[int]]:
    """The elements of an attempt from its elements file ([]: not readable: every unfinished
    instance is read each pass instead)."""
    transport = engine._transport(cluster)
    path = d / f"{sw.ELEMENTS_FILE}.{attempt}"
    try:
        data = await engine._io(transport.read_chunk, path, 0, 1 << 26)
        return sw.parse_elements(data.decode())
    except (TransportError, OSError, ValueError) as e:
        log.warning("elements of %s not read (%s); reading every instance's records", d, e)
        return []



async def resume(engine: Engine, run: Run, s: StepRun) -> None:
    """Drive a sweep step again after an engine restart: its jobs by native id (never
    submitted twice), its instances from their records."""
    cluster = engine.clusters.get(s.cluster)
    backend = engine._backend(cluster)
    if not s.native_id:
        # the engine stopped between the intent and the scheduler's answer
        run.submitting.add(s.name)
        try:
            found = None
            since = s.submitted_at.timestamp() if s.submitted_at else time.time()
            settle = engine.submit_settle if cluster.scheduler != "local" else 0.0
            while s.job_name and cluster.scheduler != "local":
                with contextlib.suppress(SchedulerUnavailable):
                    found = await engine._blocking(backend.find_by_name, s.job_name)
                if found is not None or time.time() >= since + settle:
                    break
                await asyncio.sleep(1.0)
            if found is None:
                s.attempt -= 1
                previous = s.state
                reset(s, "resubmitting: the engine stopped during submission")
                engine._commit(run, s, previous)
                return  # nothing to check: resume's own answer ends the pass
            s.native_id = found
            engine._commit(run, s, s.state)
        finally:
            run.submitting.discard(s.name)
    step = run.defs[s.name]
    n = len(sw.spec(step.sweep or {}))
    d = Path(s.directory)
    if run.unchecked is not None:  # answered once its tracker has read every instance
        run.unchecked.add(s.name)
    recs = await engine._reader(s.cluster).read_many([str(d / str(i)) for i in range(n)])
    done = []
    for i in range(n):
        e = recs[str(d / str(i))].exit
        if e is not None and e.attempt < s.attempt and e.exit_code == 0:
            done.append(i)
    finished = set(done)
    todo = [i for i in range(n) if i not in finished]
    tr = _new_tracker(engine, run, s.name, s.attempt, todo, done)
    _apply_records(tr, todo, recs)
    tr.groups = await _read_groups(engine, cluster, d, s.attempt)
    tr.width = max(PACK_WIDTH, step.max_parallel or 1, os.cpu_count() or 1)  # at least its own
    natives = [x for x in (s.native_id or "").split(",") if x]
    tr.natives = natives
    for j, native in enumerate(natives):
        key = JobKey(run.id, f"{s.name}[{j}]", s.attempt)
        tr.keys.append(key)
        try:
            await engine._blocking(backend.attach, key, native)
        except JobGone:
            tr.gone.add(j)
    if run.ex.cancel_requested:
        await cancel(engine, run, s)
        engine._answered(run, s.name)
        return
    engine._spawn(_track(engine, tr), f"track sweep {run.id}/{s.name}")
