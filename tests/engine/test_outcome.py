"""The outcome of an attempt, decided from its records and the scheduler's word: a pure
function, tested table-driven (no asyncio, no scheduler, no files)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jupyter_stax.core.jobscript import ExitRecord, StartRecord
from jupyter_stax.core.states import StepState
from jupyter_stax.engine.outcome import (
    Facts,
    Outcome,
    decide,
    exit_reason,
    last_line,
    needs_stderr_tail,
    skipped_or_canceled,
)

S = StepState
BASE = Facts(attempt=2, scheduler="slurm", native_id="77", said="completed")
EXIT0 = ExitRecord(2, 0, 1000.0)
EXIT3 = ExitRecord(2, 3, 1000.0)
SKIPPED = ExitRecord(2, None, 1000.0)
OLD_EXIT = ExitRecord(1, 0, 900.0)  # left by attempt 1
START = StartRecord(2, "77", "node1", 990.0)
UP_FAILED = (("a", S.COMPLETED), ("b", S.FAILED))
UP_OK = (("a", S.COMPLETED),)

CASES = [
    # (name, facts, expected state, expected reason (prefix), expected fields)
    ("exit 0 completes", replace(BASE, exit=EXIT0), S.COMPLETED, None, {"exit_code": 0}),
    (
        "exit record first, whatever the scheduler says",
        replace(BASE, exit=EXIT0, said="failed", message="NodeFail"),
        S.COMPLETED,
        None,
        {"exit_code": 0, "finished_at": 1000.0},
    ),
    (
        "non-zero exit fails with the stderr tail",
        replace(BASE, exit=EXIT3, stderr_tail="boom"),
        S.FAILED,
        "exit code 3: boom",
        {"exit_code": 3},
    ),
    (
        "an earlier attempt's record is not this attempt's",
        replace(BASE, exit=OLD_EXIT),
        S.FAILED,
        "job 77 ended without writing its exit record (killed by slurm",
        {"exit_code": None},
    ),
    (
        "skipped record names the upstream step",
        replace(BASE, exit=SKIPPED, upstream=UP_FAILED),
        S.SKIPPED,
        "not run: upstream step 'b' failed",
        {},
    ),
    (
        "skipped record without a failed upstream step",
        replace(BASE, exit=SKIPPED, upstream=UP_OK),
        S.SKIPPED,
        "not run: an upstream step did not complete",
        {},
    ),
    (
        "canceled on request",
        replace(BASE, said="canceled", cancel_requested=True),
        S.CANCELED,
        "canceled",
        {},
    ),
    (
        "killed by the cancel's signal before the cancel returned",
        replace(BASE, exit=ExitRecord(2, 143, 1000.0), said="canceled", cancel_requested=True),
        S.CANCELED,
        "canceled",
        {"exit_code": 143},
    ),
    (
        "killed by a signal without a cancel request: failed",
        replace(BASE, exit=ExitRecord(2, 143, 1000.0)),
        S.FAILED,
        "exit code 143 (killed by signal 15)",
        {"exit_code": 143},
    ),
    (
        "another non-zero exit during a cancel is the step's own failure",
        replace(BASE, exit=EXIT3, cancel_requested=True),
        S.FAILED,
        "exit code 3",
        {"exit_code": 3},
    ),
    (
        "canceled at the scheduler by someone else",
        replace(BASE, said="canceled"),
        S.CANCELED,
        "canceled outside jupyter_stax (scancel?)",
        {},
    ),
    (
        "canceled by the scheduler because upstream failed (detached)",
        replace(BASE, said="canceled", upstream=UP_FAILED),
        S.SKIPPED,
        "not run: upstream step 'b' failed",
        {},
    ),
    (
        "cancel requested beats the scheduler's failed",
        replace(BASE, said="failed", message="x", cancel_requested=True),
        S.CANCELED,
        "canceled",
        {},
    ),
    (
        "scheduler's failure message",
        replace(BASE, said="failed", message="Job hit its time limit", exit_code=1),
        S.FAILED,
        "slurm: Job hit its time limit",
        {"exit_code": 1},
    ),
    (
        "unknown to the scheduler after re-attach: lost",
        replace(BASE, gone=True),
        S.LOST,
        "job 77 is unknown to slurm and left no exit record",
        {},
    ),
    (
        "re-attached job ended without record: lost",
        replace(BASE, attached=True),
        S.LOST,
        "job 77 is unknown to slurm",
        {},
    ),
    (
        "local job killed by a signal",
        replace(BASE, scheduler="local", exit_code=-9),
        S.FAILED,
        "killed by signal 9",
        {"exit_code": -9},
    ),
    (
        "local wrapper exited before the step ended",
        replace(BASE, scheduler="local", exit_code=2),
        S.FAILED,
        "the job wrapper exited with 2 before the step ended",
        {"exit_code": 2},
    ),
    (
        "a Slurm job's exit code alone is not the step's",
        replace(BASE, exit_code=2),
        S.FAILED,
        "job 77 ended without writing its exit record",
        {"exit_code": None},
    ),
    (
        "start record of this attempt gives the start time",
        replace(BASE, exit=EXIT0, start=START),
        S.COMPLETED,
        None,
        {"started_at": 990.0},
    ),
    (
        "a start time known from the record is kept",
        replace(BASE, exit=EXIT0, start=START, started_at=990.0),
        S.COMPLETED,
        None,
        {"started_at": None},
    ),
    (
        # a loaded engine can see the scheduler's "running" after the job ended (seen in CI:
        # a start 0.2 ms after the end); the job's own record wins
        "a start time guessed from the scheduler's update gives way to the record's",
        replace(BASE, exit=EXIT0, start=START, started_at=991.5),
        S.COMPLETED,
        None,
        {"started_at": 990.0},
    ),
    (
        "an earlier attempt's start record is not used",
        replace(BASE, exit=EXIT0, start=replace(START, attempt=1)),
        S.COMPLETED,
        None,
        {"started_at": None},
    ),
]


@pytest.mark.parametrize(
    ("facts", "state", "reason", "fields"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(
    facts: Facts, state: StepState, reason: str | None, fields: dict[str, object]
) -> None:
    out = decide(facts)
    assert out.state is state
    if reason is None:
        assert out.reason is None
    else:
        assert out.reason is not None and out.reason.startswith(reason), out.reason
    for k, v in fields.items():
        assert getattr(out, k) == v, k
    assert not out.retry  # no retries left in these cases


@pytest.mark.parametrize(
    ("facts", "retry"),
    [
        (replace(BASE, exit=EXIT3, retries_left=1), True),
        (replace(BASE, gone=True, retries_left=1), True),  # lost is retried too
        (replace(BASE, exit=EXIT3, retries_left=0), False),
        (replace(BASE, exit=EXIT3, retries_left=1, cancel_requested=True), False),
        (replace(BASE, exit=EXIT0, retries_left=1), False),
        (replace(BASE, exit=SKIPPED, retries_left=1), False),
        (replace(BASE, said="canceled", retries_left=1), False),
    ],
)
def test_retry_only_failed_or_lost_with_retries_left(facts: Facts, retry: bool) -> None:
    out = decide(facts)
    assert out.retry is retry
    assert isinstance(out, Outcome)


@pytest.mark.parametrize(
    ("code", "tail", "expected"),
    [
        (1, None, "exit code 1"),
        (126, None, "exit code 126 (command not executable)"),
        (127, "bash: nope: command not found", "exit code 127 (command not found): bash: nope"),
        (137, None, "exit code 137 (killed by signal 9)"),
        (143, "Terminated", "exit code 143 (killed by signal 15): Terminated"),
        (200, None, "exit code 200"),
    ],
)
def test_exit_reason(code: int, tail: str | None, expected: str) -> None:
    assert exit_reason(code, tail).startswith(expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"\n  \n", None),
        (b"first\nlast line\n\n", "last line"),
        (b"x" * 500 + b"\n", "x" * 300),
        (b"caf\xc3\xa9 \xff\n", "café \ufffd"),
    ],
)
def test_last_line(data: bytes, expected: str | None) -> None:
    assert last_line(data) == expected


def test_needs_stderr_tail_only_for_this_attempts_nonzero_exit() -> None:
    assert needs_stderr_tail(2, EXIT3)
    assert not needs_stderr_tail(2, EXIT0)
    assert not needs_stderr_tail(2, SKIPPED)
    assert not needs_stderr_tail(2, None)
    assert not needs_stderr_tail(3, EXIT3)


def test_skipped_or_canceled_names_the_first_upstream_step_that_did_not_complete() -> None:
    up = (("a", S.COMPLETED), ("b", S.RUNNING), ("c", S.CANCELED), ("d", S.FAILED))
    assert skipped_or_canceled(up) == "not run: upstream step 'c' canceled"
    assert skipped_or_canceled(()) == "canceled outside jupyter_stax (scancel?)"
