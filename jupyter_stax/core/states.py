"""Ordered step states with the transitions the engine may make.

A step goes ``pending -> submitted -> queued -> running -> completed|failed|canceled|lost``;
``pending`` may also end as ``skipped`` (an upstream step did not complete) or ``canceled``.
States may be skipped forwards (a short job can go from ``submitted`` straight to
``completed``), never backwards, except that a retry starts a new attempt at ``pending``.
States are stored and sent by NAME, never by number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from enum import Enum


class StepState(str, Enum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    LOST = "lost"
    """The scheduler no longer knows the job and the step left no exit record."""

    @property
    def final(self) -> bool:
        return self in _FINAL

    @property
    def active(self) -> bool:
        """Submitted to a scheduler and not final: a job exists that may be running."""
        return self in _ACTIVE

    @property
    def order(self) -> int:
        return _ORDER[self]

    def can_become(self, new: StepState) -> bool:
        """Whether the engine may move a step from this state to ``new`` within one attempt."""
        if self.final:
            return False
        if new is StepState.PENDING:
            return False
        if self is StepState.PENDING:
            return True
        return new.order > self.order


_ORDER = {s: i for i, s in enumerate(StepState)}
_FINAL = frozenset(
    {StepState.COMPLETED, StepState.FAILED, StepState.CANCELED, StepState.SKIPPED, StepState.LOST}
)
_ACTIVE = frozenset({StepState.SUBMITTED, StepState.QUEUED, StepState.RUNNING})
#: final states after which a retry makes sense
RETRYABLE = frozenset({StepState.FAILED, StepState.LOST, StepState.SKIPPED, StepState.CANCELED})


class ExecutionState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def final(self) -> bool:
        return self in (ExecutionState.COMPLETED, ExecutionState.FAILED, ExecutionState.CANCELED)


def execution_state(
    states: Iterable[StepState] | Mapping[StepState, int], *, cancel_requested: bool = False
) -> ExecutionState:
    """The state of an execution, derived from its steps' states (or their counts); never
    stored on its own."""
    counts = states if isinstance(states, Mapping) else Counter(states)
    total = sum(counts.values())
    if not total:
        return ExecutionState.COMPLETED

    def n(*which: StepState) -> int:
        return sum(counts.get(w, 0) for w in which)

    final = n(*_FINAL)
    if final < total:
        if n(StepState.PENDING) == total and not cancel_requested:
            return ExecutionState.PENDING
        return ExecutionState.RUNNING
    if n(StepState.COMPLETED) == total:
        return ExecutionState.COMPLETED
    if n(StepState.FAILED, StepState.LOST):
        return ExecutionState.FAILED
    if n(StepState.CANCELED):
        return ExecutionState.CANCELED
    return ExecutionState.FAILED  # only skipped + completed: something upstream went wrong
