"""Taking over executions after a restart: adopt the unfinished executions whose engine is gone,
re-attach to their jobs by native id, settle the steps whose exit record is there, and recover
submissions that were interrupted between the committed intent and the scheduler's answer.

The rule: no step is ever submitted twice. A step with a native id is watched again; a step
without one is looked for (its start record, then the scheduler by job name) until an orphaned
submit command would surely have delivered it; only then is the same attempt submitted again.

Functions of the engine's event-loop thread; they drive the :class:`~.engine.Engine` given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..core.errors import SchedulerUnavailable
from ..core.states import StepState
from . import observing
from .backend import JobGone
from .runstate import JobKey, Run, reset
from .store import LostOwnership
from .transport import TransportError

if TYPE_CHECKING:
    from ..core.models import StepRun
    from .engine import Engine

log = logging.getLogger("jupyter_stax.engine")


async def adopt_orphans(engine: Engine) -> None:
    """Take over every unfinished execution whose owner is gone."""
    for eid in engine.store.claim_orphans(engine.id, engine.lease_timeout):
        if eid not in engine._runs:
            try:
                await resume(engine, eid)
            except LostOwnership:
                pass
            except Exception:
                log.exception("could not adopt execution %s", eid)
                run = engine._runs.pop(eid, None)
                if run is not None:
                    run.done.set()


async def resume(engine: Engine, eid: str) -> Run | None:
    """Take over an execution: re-attach to its jobs by native id, then drive it on."""
    ex = engine.store.get(eid)
    run = engine._new_run(ex)
    # the first reconcile pass: over when every step still active has had one answer; "" is
    # the re-attaching itself (see observing.answered)
    run.unchecked = {""}
    for name in run.graph.order:  # upstream steps settle first (detached: dependants' skips)
        s = run.steps[name]
        if not s.state.active:
            continue
        engine.clusters.get(s.cluster)  # an unknown cluster fails the adoption, loudly
        if run.defs[name].sweep is not None:  # its array(s) and instances: see .sweeps
            from . import sweeps

            await sweeps.resume(engine, run, s)
            continue
        if s.native_id is None:
            # interrupted between the intent and the scheduler's answer
            run.submitting.add(s.name)
            run.unchecked.add(s.name)
            engine._spawn(recover_submission(engine, run, s.name), f"recover {eid}/{s.name}")
            continue
        await reattach(engine, run, s)
    if ex.cancel_requested:
        await observing.cancel_run(engine, run)
    engine._schedule(run)
    observing.answered(engine, run, "")  # re-attached: the pass ends with the last answer
    if all(s.state.final for s in run.steps.values()):
        engine._finish(run)
    return run


async def reattach(engine: Engine, run: Run, s: StepRun) -> None:
    """Watch the job of a step again (by native id), or settle it from its exit record."""
    assert s.native_id
    key = JobKey.of(run.id, s)
    engine._watch(key)
    rec = (await engine._records(s)).exit
    if rec is not None and rec.attempt == s.attempt and rec.skipped:
        # decided once its upstream steps are (see Run.upstream_settled): not here, where a
        # wait would hold up the engine's housekeeping
        if run.unchecked is not None:
            run.unchecked.add(s.name)
        engine._spawn(
            observing.finalize(engine, run, s.name, "record", None, None),
            f"finalize {run.id}/{s.name}",
        )
        return
    if rec is not None and rec.attempt == s.attempt:
        await observing.finalize(engine, run, s.name, "record", None, None)
        return
    run.attached.add(s.name)
    if run.unchecked is not None:
        run.unchecked.add(s.name)
    backend = engine._backend(engine.clusters.get(s.cluster))
    try:
        await engine._blocking(backend.attach, key, s.native_id)
    except JobGone:
        await observing.finalize(engine, run, s.name, "completed", None, None, gone=True)


async def recover_submission(engine: Engine, run: Run, name: str) -> None:
    """A step whose submission was interrupted (intent committed, no native id): find its
    job (its start record, then the scheduler by job name). Only when none has appeared
    by the time an orphaned ``sbatch`` would surely have finished is the same attempt
    submitted again: never twice."""
    s = run.steps[name]
    backend = engine._backend(engine.clusters.get(s.cluster))
    reader = engine._reader(s.cluster)
    settle = (
        engine.submit_settle if backend.scheduler != "local" else min(3.0, engine.submit_settle)
    )
    since = s.submitted_at.timestamp() if s.submitted_at else time.time()
    native: str | None = None
    try:
        while True:
            answered = True
            try:
                start = (await reader.read(s.directory)).start
            except TransportError:
                start, answered = None, False  # cannot tell yet: never resubmit on a guess
            native = start.job_id if start and start.attempt == s.attempt else None
            if native is None and s.job_name and answered:
                try:
                    native = await engine._blocking(backend.find_by_name, s.job_name)
                except SchedulerUnavailable:
                    answered = False
            if native is not None or (answered and time.time() >= since + settle):
                break
            await asyncio.sleep(1.0)
        if native is None:
            s.attempt -= 1  # it never reached the scheduler: the same attempt goes again
            previous = s.state
            reset(s, "resubmitting: the engine stopped during submission")
            engine._commit(run, s, previous)
        else:
            s.native_id = native
            engine._commit(run, s, s.state)
    finally:
        run.submitting.discard(name)
    if native is not None:
        if run.ex.cancel_requested:
            await observing.cancel_step(engine, run, s)
        else:
            await reattach(engine, run, s)
    elif run.ex.cancel_requested:
        engine._set(run, name, StepState.CANCELED, reason="canceled before submission")
    engine._schedule(run, [name])
    if native is None:  # its new state is committed; a found job answers once re-attached
        observing.answered(engine, run, name)
