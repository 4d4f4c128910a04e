"""The final state of a step's attempt, decided from what is known about it: a PURE function
(no event loop, no scheduler, no files), tested table-driven.

The step's own exit record comes first (it is what the step wrote), the scheduler's word second:
a job the scheduler calls failed or completed without an exit record was killed (walltime,
memory, node failure), a job it does not know and that left no record is lost. Then: a failed or
lost attempt with retries left is retried instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.jobscript import ExitRecord, StartRecord
from ..core.states import StepState


@dataclass(frozen=True)
class Facts:
    """What is known when an attempt ends."""

    attempt: int
    """the attempt being decided"""
    scheduler: str
    """the cluster's scheduler name (for messages; ``local`` has its own exit codes)"""
    native_id: str | None
    said: str
    """what reported the end: the scheduler's state (completed, failed, canceled) or
    ``record`` (the exit record was seen first)"""
    exit: ExitRecord | None = None
    """the step's exit record, of whatever attempt (None: none, or not completely written)"""
    start: StartRecord | None = None
    """the step's start record, of whatever attempt"""
    started_at: float | None = None
    """the start time the step already has (None: none yet); it may come from the scheduler's
    "running" update, which a loaded engine can see after the job ended"""
    exit_code: int | None = None
    """the scheduler's exit code (PSI/J's)"""
    message: str | None = None
    """the scheduler's message about a failed job"""
    gone: bool = False
    """the scheduler does not know the job (re-attach by native id found nothing)"""
    attached: bool = False
    """the job was re-attached by native id (its start might be unknown to the scheduler)"""
    cancel_requested: bool = False
    upstream: Sequence[tuple[str, StepState]] = ()
    """the steps this one comes after, with their states, in the workflow's order"""
    retries_left: int = 0
    """how many more attempts the step's ``retries`` allow after this one"""
    stderr_tail: str | None = None
    """the last line of the attempt's stderr (read only when the exit code is not 0)"""


@dataclass(frozen=True)
class Outcome:
    state: StepState
    reason: str | None
    exit_code: int | None = None
    """to store on the step (None: leave it)"""
    started_at: float | None = None
    """to store on the step (None: leave it)"""
    finished_at: float | None = None
    """the exit record's time (None: now)"""
    retry: bool = False
    """a new attempt goes instead of this final state"""


#: exit codes of a job killed by the scheduler's cancel (SIGTERM, then SIGKILL)
CANCEL_SIGNAL_CODES = (128 + 15, 128 + 9)


def decide(f: Facts) -> Outcome:
    """The outcome of attempt ``f.attempt`` (see the module docstring)."""
    rec = f.exit if f.exit is not None and f.exit.attempt == f.attempt else None
    started_at = None
    if f.start is not None and f.start.attempt == f.attempt and f.start.time != f.started_at:
        started_at = f.start.time  # the job's own record: its start, whatever was guessed
    exit_code = finished_at = None
    if rec is not None and rec.exit_code is None:
        state, reason = StepState.SKIPPED, skipped_or_canceled(f.upstream)
        if not reason.startswith("not run"):
            reason = "not run: an upstream step did not complete"
    elif rec is not None and rec.exit_code is not None:
        exit_code, finished_at = rec.exit_code, rec.time
        if rec.exit_code == 0:
            state, reason = StepState.COMPLETED, None
        elif f.cancel_requested and rec.exit_code in CANCEL_SIGNAL_CODES:
            # the cancel's signal reached the job before the cancel command returned (a remote
            # cluster's round trip makes this common): the step was canceled, not failed
            state, reason = StepState.CANCELED, "canceled"
        else:
            state, reason = StepState.FAILED, exit_reason(rec.exit_code, f.stderr_tail)
    elif f.said == "canceled" or f.cancel_requested:
        state = StepState.CANCELED
        reason = "canceled" if f.cancel_requested else skipped_or_canceled(f.upstream)
        if reason.startswith("not run"):
            state = StepState.SKIPPED
    elif f.said == "failed" and f.message:
        state, reason = StepState.FAILED, f"{f.scheduler}: {f.message}"
        exit_code = f.exit_code
    elif f.gone or f.attached:
        state = StepState.LOST
        reason = (
            f"job {f.native_id} is unknown to {f.scheduler} and left no exit record; its "
            "outcome cannot be known"
        )
    elif f.exit_code is not None and f.exit_code != 0 and f.scheduler == "local":
        state, exit_code = StepState.FAILED, f.exit_code
        reason = (
            f"killed by signal {-f.exit_code}"
            if f.exit_code < 0
            else f"the job wrapper exited with {f.exit_code} before the step ended"
        )
    else:
        state = StepState.FAILED
        reason = (
            f"job {f.native_id} ended without writing its exit record (killed by "
            f"{f.scheduler}: walltime, memory or node failure?)"
        )
    retry = (
        state in (StepState.FAILED, StepState.LOST)
        and not f.cancel_requested
        and f.retries_left > 0
    )
    return Outcome(state, reason, exit_code, started_at, finished_at, retry)


def needs_stderr_tail(attempt: int, exit: ExitRecord | None) -> bool:
    """Whether :func:`decide` will name the last line of stderr (a non-zero exit code)."""
    return exit is not None and exit.attempt == attempt and exit.exit_code not in (None, 0)


def exit_reason(code: int, stderr_tail: str | None) -> str:
    """``exit code 127 (command not found): bash: nope: command not found``"""
    what = {126: "command not executable", 127: "command not found"}.get(code)
    if code > 128 and code - 128 < 65:
        what = f"killed by signal {code - 128}"
    out = f"exit code {code}" + (f" ({what})" if what else "")
    return out + (f": {stderr_tail}" if stderr_tail else "")


def last_line(data: bytes) -> str | None:
    """The last non-empty line of the tail of a log (at most 300 characters)."""
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


def skipped_or_canceled(upstream: Sequence[tuple[str, StepState]]) -> str:
    """Why a job that ended without running its step did so: an upstream step did not complete
    (detached mode), or someone canceled it outside jupyter_stax."""
    for name, state in upstream:
        if state.final and state is not StepState.COMPLETED:
            return f"not run: upstream step {name!r} {state.value}"
    return "canceled outside jupyter_stax (scancel?)"
