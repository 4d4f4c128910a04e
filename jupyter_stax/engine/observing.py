"""Watching jobs to their end: the scheduler's status updates, the steps' records (read for
all running steps of a cluster in one batch), the outcome of each attempt (decided by
:func:`.outcome.decide`, then committed, retried or moved on), and cancellation.

Functions of the engine's event-loop thread; they drive the :class:`~.engine.Engine` given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..core.errors import SchedulerUnavailable, StaxError
from ..core.models import StepRun
from ..core.states import StepState
from . import outcome, staging
from .backend import JobUpdate
from .runstate import JobKey, Run, attempt_record, reset
from .store import LostOwnership, now
from .transport import StepRecords, TransportError

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("jupyter_stax.engine")


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc)


def on_update(engine: Engine, upd: JobUpdate) -> None:
    key = upd.key
    if key not in engine._keys:
        return
    run = engine._runs.get(key.execution_id)
    if run is None:
        return
    s = run.steps[key.step]
    if s.attempt != key.attempt or s.state.final:
        return
    if s.native_id is None:  # callback fired inside submit(), before the id was committed
        run.early.setdefault(s.name, []).append(upd)
        return
    try:
        apply(engine, run, upd)
    except LostOwnership:
        pass
    if upd.state == "queued":  # committed: the scheduler's first answer is in the store
        answered(engine, run, s.name)


def apply(engine: Engine, run: Run, upd: JobUpdate) -> None:
    name = upd.key.step
    if upd.state == "queued":
        engine._set(run, name, StepState.QUEUED)
    elif upd.state == "running":
        task = asyncio.get_running_loop().create_task(running(engine, run, name, upd))
        run.marking[name] = task
        engine._tasks.add(task)
        task.add_done_callback(engine._task_done)
    else:
        engine._spawn(
            finalize(engine, run, name, upd.state, upd.exit_code, upd.message),
            f"finalize {upd.key}",
        )


def answered(engine: Engine, run: Run, name: str) -> None:
    """Step ``name`` had its first answer since the adoption (a status from the scheduler, its
    exit record, or the end of the search for an interrupted submission). Once every step has
    one, the adoption's reconcile pass is over: the store is told (``checked``), so readers
    waiting for the true states (:meth:`.store.Store.unverified`) may answer."""
    if run.unchecked is None:
        return
    run.unchecked.discard(name)
    if run.unchecked:
        return
    run.unchecked = None
    try:
        engine._flush()  # the answers are committed before the states are said current
        engine.store.mark_checked(run.id, engine.id)
    except LostOwnership:
        pass


async def running(engine: Engine, run: Run, name: str, upd: JobUpdate) -> None:
    """The scheduler says the job runs: running since its start record (or now)."""
    s = run.steps[name]
    attempt = s.attempt
    try:
        start = (await engine._reader(s.cluster).read(s.directory)).start
    except TransportError:
        start = None
    finally:
        if run.marking.get(name) is asyncio.current_task():
            del run.marking[name]
    if s.attempt != attempt or s.state.final:
        return
    t = start.time if start and start.attempt == attempt else upd.time
    with contextlib.suppress(LostOwnership):
        engine._set(run, name, StepState.RUNNING, started_at=_utc(t))
    answered(engine, run, name)


async def check_records(engine: Engine) -> None:
    """The records of every watched step, in one batch per cluster: start (-> running) and
    exit (-> final)."""
    by_cluster: dict[str, list[tuple[Run, StepRun]]] = {}
    for run in list(engine._runs.values()):
        for s in run.steps.values():
            if s.state.active and s.native_id and s.name not in run.finalizing:
                by_cluster.setdefault(s.cluster, []).append((run, s))
    t = time.monotonic()
    for c in list(by_cluster):  # a remote cluster: one records read per poll interval
        every = remote_poll_interval(engine, c)
        if every:
            backend = engine._backends.get(c)
            answered = backend.health.answered if backend is not None else None
            due = records_due(engine._records_read.get(c), answered, every)
            if t < due:
                del by_cluster[c]
            else:
                engine._records_read[c] = t
    await asyncio.gather(*(check_cluster(engine, c, ss) for c, ss in by_cluster.items()))


def records_due(last_read: float | None, last_status: float | None, every: float) -> float:
    """When a remote cluster's records are read next (``time.monotonic()``): half-way between
    two status answers, so that the two round trips of a poll interval look at the jobs at
    evenly spread moments (a job's end is seen by whichever comes first: within half an
    interval, not a whole one); ``every`` after the last read while no status answers (no
    job known to the scheduler yet, or it is down). At most one read per status answer."""
    if last_read is None:
        return 0.0
    if last_status is not None and last_status > last_read:
        return last_status + every / 2
    return last_read + every


def remote_poll_interval(engine: Engine, cluster: str) -> float | None:
    """A remote cluster's poll interval (its records are read that often, not every
    ``record_interval``: every read is a round trip on a shared login node); None if local."""
    try:
        c = engine.clusters.get(cluster)
    except StaxError:
        return None
    return c.effective_poll_interval if c.remote else None


async def check_cluster(engine: Engine, cluster: str, steps: Sequence[tuple[Run, StepRun]]) -> None:
    try:
        got = await engine._reader(cluster).read_many(sorted({s.directory for _, s in steps}))
    except (TransportError, StaxError) as e:
        log.warning("cannot read the records on cluster %r: %s", cluster, e)
        return
    for run, s in steps:
        if engine._runs.get(run.id) is not run:
            continue
        rec = got[s.directory]
        if not s.state.active or not s.native_id or s.name in run.finalizing:
            continue
        if rec.exit is not None and rec.exit.attempt == s.attempt:
            engine._spawn(  # from the records just read: no second read of them
                finalize(engine, run, s.name, "record", None, None, known=rec),
                f"finalize {run.id}/{s.name}",
            )
            continue
        if s.state is not StepState.RUNNING and rec.start and rec.start.attempt == s.attempt:
            with contextlib.suppress(LostOwnership):
                engine._set(run, s.name, StepState.RUNNING, started_at=_utc(rec.start.time))


async def finalize(
    engine: Engine,
    run: Run,
    name: str,
    said: str,
    exit_code: int | None,
    message: str | None,
    gone: bool = False,
    known: StepRecords | None = None,
) -> None:
    """Decide the final state of the current attempt (see :mod:`.outcome`) from the step's
    records (``known``: as just read, with the exit record of this attempt) and the
    scheduler's word; then retry or move the DAG on."""
    s = run.steps[name]
    if s.state.final or name in run.finalizing:
        return
    run.finalizing.add(name)
    try:
        marking = run.marking.get(name)
        if marking is not None:  # "running" is committed before the end
            with contextlib.suppress(Exception):
                await marking
        attempt = s.attempt
        scheduler = sched(engine, s)
        fresh = known is not None and known.exit is not None and known.exit.attempt == attempt
        recs = known if known is not None and fresh else await engine._records(s)
        if recs.exit is None and said != "canceled" and scheduler != "local" and not gone:
            # the exit record may reach a shared filesystem after the scheduler forgot the job
            deadline = time.monotonic() + engine.record_grace
            while recs.exit is None and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                recs = await engine._records(s)
        skipped = recs.exit is not None and recs.exit.attempt == attempt and recs.exit.skipped
        # detached: the job found an upstream step not completed; its reason names that step,
        # so it is decided once the upstream steps are (they may be being decided right now:
        # their ends and this one's are often seen in the same poll)
        if skipped and not await run.upstream_settled(
            name, lambda: engine._runs.get(run.id) is run
        ):
            return
        if s.attempt != attempt or s.state.final:
            return
        tail = None
        if outcome.needs_stderr_tail(attempt, recs.exit):
            tr = engine._transport(engine.clusters.get(s.cluster))
            with contextlib.suppress(TransportError, StaxError):
                tail = outcome.last_line(await engine._io(tr.read_tail, s.stderr, 4096))
        out = outcome.decide(
            outcome.Facts(
                attempt=attempt,
                scheduler=scheduler,
                native_id=s.native_id,
                said=said,
                exit=recs.exit,
                start=recs.start,
                started_at=s.started_at.timestamp() if s.started_at else None,
                exit_code=exit_code,
                message=message,
                gone=gone,
                attached=name in run.attached,
                cancel_requested=run.ex.cancel_requested,
                upstream=run.upstream(name),
                retries_left=run.retries_left(name),
                stderr_tail=tail,
            )
        )
        fields: dict[str, Any] = {}
        if out.started_at is not None:
            fields["started_at"] = _utc(out.started_at)
        if out.exit_code is not None:
            fields["exit_code"] = out.exit_code
        if out.finished_at is not None:
            fields["finished_at"] = _utc(out.finished_at)
        if out.retry:
            auto_retry(
                engine, run, s, out.state, out.reason, out.exit_code,
                started_at=fields.get("started_at"), finished_at=fields.get("finished_at"),
            )
            return
        if out.state is StepState.COMPLETED and run.defs[name].outputs:
            # outputs are here before anyone hears the step completed (see .staging)
            fields["files"] = await staging.stage_out(engine, run, name)
        if run.defs[name].notebook is not None and out.state is not StepState.SKIPPED:
            from . import notebooks  # the executed notebook comes back, failed ones too

            fields["files"] = await notebooks.bring_back(engine, run, name, fields.get("files"))
        engine._set(run, name, out.state, reason=out.reason, **fields)
        engine._unwatch(JobKey(run.id, name, attempt), s.cluster, s.native_id)
        engine._schedule(run, [name])
    finally:
        run.finalizing.discard(name)
        answered(engine, run, name)  # its final state is committed (or retried)


def sched(engine: Engine, s: StepRun) -> str:
    try:
        return engine.clusters.get(s.cluster).scheduler
    except StaxError:
        return "the scheduler"


def auto_retry(
    engine: Engine,
    run: Run,
    s: StepRun,
    state: StepState,
    reason: str | None,
    exit_code: int | None,
    *,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> None:
    """Keep the attempt in the step's history (with the start and end its records say, for
    provenance) and start the next one."""
    rec = attempt_record(s, reason)
    rec.state, rec.exit_code, rec.finished_at = state, exit_code, finished_at or now()
    if rec.started_at is None:
        rec.started_at = started_at
    s.history.append(rec)
    engine._keys.discard(run.key(s.name))
    previous = s.state
    retries = run.defs[s.name].retries
    used = s.attempt - run.retry_base.get(s.name, 0)
    reset(s, f"attempt {s.attempt} {state.value} ({reason}); retry {used} of {retries}")
    engine._commit(run, s, previous)
    engine._schedule(run, [s.name])


# ---------------------------------------------------------------------- cancel
async def cancel_run(engine: Engine, run: Run) -> None:
    engine._flush()  # the state it derives from the stored steps includes this turn's
    engine.store.set_cancel_requested(run.id, engine.id)
    run.ex.cancel_requested = True
    for name in run.graph.order:
        s = run.steps[name]
        if s.state is StepState.PENDING and name not in run.submitting:
            engine._set(run, name, StepState.CANCELED, reason="canceled before it started")
    await asyncio.gather(
        *(cancel_step(engine, run, s) for s in run.steps.values() if s.state.active and s.native_id)
    )


async def cancel_step(engine: Engine, run: Run, s: StepRun) -> None:
    if run.defs[s.name].sweep is not None:  # its array(s): see .sweeps
        from . import sweeps

        await sweeps.cancel(engine, run, s)
        return
    backend = engine._backend(engine.clusters.get(s.cluster))
    key = run.key(s.name)
    assert s.native_id
    tries = 0
    while True:
        try:
            await engine._blocking(backend.cancel, key, s.native_id)
            break
        except SchedulerUnavailable as e:
            wait = engine.submit_backoff[min(tries, len(engine.submit_backoff) - 1)]
            tries += 1
            s.reason = f"cancel not yet delivered: {e} (retrying in {wait:g} s)"
            engine._commit(run, s, s.state)
            await asyncio.sleep(wait)
    if s.state.final:
        return
    rec = (await engine._records(s)).exit
    if s.state.final:
        return
    if rec is not None and rec.attempt == s.attempt:
        await finalize(engine, run, s.name, "record", None, None)
    else:
        engine._set(run, s.name, StepState.CANCELED, reason="canceled by request")
        engine._unwatch(key, s.cluster, s.native_id)
