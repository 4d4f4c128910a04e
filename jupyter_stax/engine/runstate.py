"""What the engine holds in memory about an execution it drives (a cache of the store: every
change is committed before it is published), and the key of one job.

Threading: a :class:`Run` is read and changed on the engine's event-loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.models import AttemptRecord, Execution, Step, StepRun
from ..core.states import StepState
from .scheduling import Graph

if TYPE_CHECKING:
    from .backend import JobUpdate


@dataclass(frozen=True)
class JobKey:
    """One attempt of one step of one execution: the key of its scheduler job everywhere (the
    backend's jobs, status updates, the engine's watched jobs)."""

    execution_id: str
    step: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.execution_id}/{self.step}/{self.attempt}"

    @classmethod
    def of(cls, execution_id: str, s: StepRun) -> JobKey:
        """The key of the step's current attempt."""
        return cls(execution_id, s.name, s.attempt)


@dataclass
class Run:
    """An execution being driven by this engine."""

    ex: Execution
    """the execution (its steps are the objects in ``steps``)"""
    steps: dict[str, StepRun]
    """step name -> its run record, as last committed"""
    defs: dict[str, Step]
    """step name -> its definition in the workflow"""
    graph: Graph
    """the DAG, computed once"""
    counts: Counter[StepState]
    """steps per state (the execution's state is derived from it)"""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """set once the execution is final or no longer driven here"""
    submitting: set[str] = field(default_factory=set)
    """steps whose submission (or its recovery) is under way"""
    early: dict[str, list[JobUpdate]] = field(default_factory=dict)
    """status updates that arrived inside submit(), before the native id was committed"""
    attached: set[str] = field(default_factory=set)
    """steps whose job was re-attached by native id after an engine restart"""
    unchecked: set[str] | None = None
    """after an adoption: the steps still waiting for their first answer (the scheduler's
    status or their exit record); None once the first reconcile pass is over (or none was due)"""
    finalizing: set[str] = field(default_factory=set)
    """steps whose outcome is being decided"""
    retry_base: dict[str, int] = field(default_factory=dict)
    """step -> its attempt number when a retry was requested (automatic retries count from it)"""
    marking: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    """steps being marked running (their outcome waits for it, so events keep their order)"""
    state_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """set, then replaced by a fresh one, whenever a step's state changes (see
    :meth:`upstream_settled`)"""

    @property
    def id(self) -> str:
        return self.ex.id

    @classmethod
    def of(cls, ex: Execution) -> Run:
        return cls(
            ex=ex,
            steps={s.name: s for s in ex.steps},
            defs={s.name: s for s in ex.workflow.steps},
            graph=Graph.of(ex.workflow),
            counts=Counter(s.state for s in ex.steps),
        )

    def key(self, name: str) -> JobKey:
        """The job key of the step's current attempt."""
        return JobKey.of(self.id, self.steps[name])

    def upstream(self, name: str) -> list[tuple[str, StepState]]:
        """The steps ``name`` comes after, with their states."""
        return [(d, self.steps[d].state) for d in self.defs[name].after]

    def changed(self) -> None:
        """A step's state changed: wake whoever waits in :meth:`upstream_settled`."""
        self.state_changed.set()
        self.state_changed = asyncio.Event()

    async def upstream_settled(self, name: str, driven: Callable[[], bool]) -> bool:
        """Wait until every step ``name`` comes after has settled its current attempt: final,
        or sent back for another one (an automatic retry). A job whose exit record says it was
        skipped (detached mode: an upstream step did not complete) is decided after this, so
        that its reason names the upstream step whatever order the steps' ends are seen in (an
        adopting engine reads them all at once). False, without waiting further, once
        ``driven()`` says the run is no longer driven here."""
        seen = {d: self.steps[d].attempt for d in self.defs[name].after}

        def settled(d: str) -> bool:
            s = self.steps[d]
            return s.state.final or s.state is StepState.PENDING or s.attempt != seen[d]

        while not all(settled(d) for d in seen):
            if not driven():
                return False
            with contextlib.suppress(asyncio.TimeoutError):  # (and look at driven() again)
                await asyncio.wait_for(self.state_changed.wait(), 1.0)
        return driven()

    def retries_left(self, name: str) -> int:
        """More attempts that the step's ``retries`` allow after its current one."""
        s = self.steps[name]
        used = s.attempt - self.retry_base.get(name, 0)
        return self.defs[name].retries - used + 1


def attempt_record(s: StepRun, reason: str | None) -> AttemptRecord:
    """The history entry of the step's current attempt."""
    return AttemptRecord(
        attempt=s.attempt,
        state=s.state,
        native_id=s.native_id,
        exit_code=s.exit_code,
        reason=reason if s.reason is None else s.reason,
        submitted_at=s.submitted_at,
        started_at=s.started_at,
        finished_at=s.finished_at,
        # provenance of that attempt: the next one's stage-in replaces ``s.files``
        files=s.files if s.files is not None and s.files.attempt == s.attempt else None,
    )


def reset(s: StepRun, reason: str | None) -> None:
    """Back to pending for a new attempt (the attempt number is raised at submission)."""
    s.state = StepState.PENDING
    s.native_id = s.exit_code = s.submitted_at = s.started_at = s.finished_at = None
    s.reason = reason
