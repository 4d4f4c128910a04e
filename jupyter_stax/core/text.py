"""Plain-text rendering of executions: status tables, list rows, progress lines, ages.

Pure: no I/O, no argparse, no terminal handling. The caller passes ``now`` (an aware datetime)
and the width to fit, so the same functions serve the command line and the notebook repr.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .models import UNVERIFIED_WARNING, Execution, StepRun
from .states import StepState

__all__ = [
    "cluster_rows",
    "execution_elapsed",
    "format_elapsed",
    "format_table",
    "images_text",
    "list_rows",
    "list_table",
    "progress_line",
    "relative_age",
    "status_header",
    "status_table",
    "status_text",
    "step_change_line",
    "step_elapsed",
    "step_rows",
]

ELLIPSIS = "…"
LIST_HEADERS = ("ID", "NAME", "CLUSTER", "STATE", "DONE", "CREATED")
STEP_HEADERS = ("STEP", "STATE", "TRY", "JOB", "EXIT", "ELAPSED", "REASON")


def format_elapsed(seconds: float | None) -> str:
    """``0:12``, ``12:05``, ``1:02:03``, ``2d 01:02:03``; ``-`` for None."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{s:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{s:02d}"
    return f"{minutes}:{s:02d}"


def relative_age(then: datetime | None, now: datetime) -> str:
    """``just now``, ``42s ago``, ``3m ago``, ``5h ago``, ``2d ago``; a date after 30 days."""
    if then is None:
        return "-"
    s = (now - then).total_seconds()
    if s < 5:
        return "just now"
    if s < 60:
        return f"{int(s)}s ago"
    if s < 3600:
        return f"{int(s // 60)}m ago"
    if s < 86400:
        return f"{int(s // 3600)}h ago"
    if s < 30 * 86400:
        return f"{int(s // 86400)}d ago"
    return then.astimezone().strftime("%Y-%m-%d")


def _truncate(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None
) -> str:
    """Left-aligned columns two spaces apart; with ``width``, the last column is cut to fit."""
    cells = [[" ".join(str(c).split()) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(c))
    lead = sum(w + 2 for w in widths[:-1])
    lines = []
    for row in [list(headers), *cells]:
        last = row[-1]
        if width is not None:
            last = _truncate(last, max(width - lead, 10))
        parts = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [last]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def step_elapsed(step: StepRun, now: datetime) -> float | None:
    """Run time of the current attempt (so far, while running)."""
    if step.started_at is None:
        return None
    end = step.finished_at or (None if step.state.final else now)
    return None if end is None else (end - step.started_at).total_seconds()


def execution_elapsed(ex: Execution, now: datetime) -> float:
    return ((ex.finished_at or now) - ex.created_at).total_seconds()


def step_rows(ex: Execution, now: datetime) -> list[list[str]]:
    return [
        [
            s.name,
            s.state.value,
            str(s.attempt) if s.attempt else "-",
            s.native_id or "-",
            "-" if s.exit_code is None else str(s.exit_code),
            format_elapsed(step_elapsed(s, now)),
            step_detail(s),
        ]
        for s in ex.steps
    ]


def step_detail(s: StepRun) -> str:
    """The last column of a step's row: its reason; a sweep's counts first."""
    if s.sweep is None:
        return s.reason or ""
    return s.sweep.line() + (f"; {s.reason}" if s.reason else "")


def status_table(ex: Execution, now: datetime, width: int | None = None) -> str:
    return format_table(STEP_HEADERS, step_rows(ex, now), width)


def _when(t: datetime | None, now: datetime) -> str:
    if t is None:
        return "-"
    return f"{t.astimezone().strftime('%Y-%m-%d %H:%M:%S')} ({relative_age(t, now)})"


def status_header(ex: Execution, now: datetime) -> str:
    done, total = ex.progress
    state = f"{ex.state.value} ({done}/{total} steps done"
    state += ", cancel requested)" if ex.cancel_requested and not ex.state.final else ")"
    finished = _when(ex.finished_at, now)
    if ex.finished_at is not None:
        finished += f", took {format_elapsed(execution_elapsed(ex, now))}"
    rows = [
        ("execution", ex.id),
        ("workflow", ex.workflow.name),
        ("cluster", ex.cluster + (" (detached)" if ex.options.detached else "")),
        ("state", state),
        ("created", _when(ex.created_at, now)),
        ("finished", finished),
        ("work dir", ex.work_dir),
    ]
    o = ex.origin
    if o is not None and o.workflow:
        rows.append(("published", f"{o.workflow} version {o.version}"))
    if o is not None and o.rerun_of:
        rows.append(("re-run of", o.rerun_of))
    rows += [("changed", c) for c in (o.changes if o else [])]
    if ex.params:
        rows.append(("params", " ".join(f"{k}={v}" for k, v in ex.params.items())))
    rows += [("warning", w) for w in ex.warnings]
    return "\n".join(f"{k:<10} {v}" for k, v in rows)


def status_text(ex: Execution, now: datetime, width: int | None = None) -> str:
    """Header, blank line, step table."""
    return status_header(ex, now) + "\n\n" + status_table(ex, now, width)


def _unverified(ex: Any) -> bool:
    """Stored states no engine has reconciled yet (:data:`UNVERIFIED_WARNING`)."""
    return UNVERIFIED_WARNING in (getattr(ex, "warnings", None) or ())


def list_rows(executions: Sequence[Any], now: datetime) -> list[list[str]]:
    """One row per execution: whole executions, or summaries with ``name``/``done``/``total``
    (what ``GET executions`` gives)."""
    rows = []
    for ex in executions:
        if isinstance(ex, Execution):
            name, (done, total) = ex.workflow.name, ex.progress
        else:
            name, done, total = ex.name, ex.done, ex.total
        rows.append(
            [
                ex.id,
                name,
                ex.cluster,
                ex.state.value + (" (being checked)" if _unverified(ex) else ""),
                f"{done}/{total}",
                relative_age(ex.created_at, now),
            ]
        )
    return rows


CLUSTER_HEADERS = ("NAME", "SCHEDULER", "QUEUE", "ACCOUNT", "WALLTIME", "LAUNCHER", "WORK DIR")


def cluster_rows(clusters: Sequence[Any]) -> list[list[str]]:
    """One row per cluster (anything with the fields of ``ClusterInfo``)."""
    return [
        [c.name, c.scheduler, c.queue or "-", c.account or "-", c.walltime, c.launcher, c.work_dir]
        for c in clusters
    ]


def list_table(executions: Sequence[Any], now: datetime, width: int | None = None) -> str:
    return format_table(LIST_HEADERS, list_rows(executions, now), width)


_PROGRESS_EXTRA = (
    ("queued", (StepState.SUBMITTED, StepState.QUEUED)),
    ("failed", (StepState.FAILED,)),
    ("lost", (StepState.LOST,)),
    ("canceled", (StepState.CANCELED,)),
    ("skipped", (StepState.SKIPPED,)),
)


def progress_line(ex: Execution, now: datetime, bar_width: int = 10) -> str:
    """``[#####.....] 5/10 done · 2 running · 1 failed · 0:12``."""
    done, total = ex.progress
    filled = round(bar_width * done / total) if total else bar_width
    parts = [
        f"[{'#' * filled}{'.' * (bar_width - filled)}] {done}/{total} done",
        f"{sum(1 for s in ex.steps if s.state is StepState.RUNNING)} running",
    ]
    for label, states in _PROGRESS_EXTRA:
        n = sum(1 for s in ex.steps if s.state in states)
        if n or label == "failed":
            parts.append(f"{n} {label}")
    parts.append(format_elapsed(execution_elapsed(ex, now)))
    return " · ".join(parts)


def step_change_line(step: StepRun, at: datetime) -> str:
    """``12:00:01 make running (job 123)``: one line per observed state change."""
    detail = None
    if step.state.active:
        detail = f"job {step.native_id}" if step.native_id else None
        if step.attempt > 1:
            detail = f"attempt {step.attempt}" + (f", {detail}" if detail else "")
    elif step.state is StepState.FAILED:
        detail = step.reason or (None if step.exit_code is None else f"exit {step.exit_code}")
    elif step.state is not StepState.COMPLETED:
        detail = step.reason
    elif step.attempt > 1:
        detail = f"attempt {step.attempt}"
    line = f"{at.astimezone().strftime('%H:%M:%S')} {step.name} {step.state.value}"
    return line + (f" ({' '.join(detail.split())})" if detail else "")


def images_text(listing: Any) -> str:
    """``jupyter stax images`` / ``%stax images``: the cluster's runtime and traits (when the
    listing was for a cluster), then one row per variant with its fit and reasons."""
    lines = []
    if listing.cluster:
        t = listing.traits
        traits = (
            ", ".join(
                f"{k}={','.join(v) if isinstance(v, list) else v}"
                for k, v in (t.model_dump(exclude_none=True) if t else {}).items()
                if v not in ([], None)
            )
            or "none set"
        )
        lines.append(
            f"cluster {listing.cluster}: runtime {listing.runtime or 'none'}; traits: {traits}"
        )
    rows = []
    for i in listing.images:
        lab = i.labels
        row = [i.family, i.name]
        if listing.cluster:
            if i.fits:
                notes = [r.message for r in i.rules if r.outcome == "note"]
                row.append("yes" + (f" ({'; '.join(notes)})" if notes else ""))
            else:
                row.append("NO: " + "; ".join(r.message for r in i.rules if r.outcome == "fail"))
        row += [lab.cpu or "-", lab.gpu or "-", lab.mpi or "-", lab.kabi or "-", i.reference]
        rows.append(row)
    headers = ["STAX", "VARIANT"] + (["FITS"] if listing.cluster else [])
    headers += ["CPU", "GPU", "MPI", "KABI", "REFERENCE"]
    if rows:
        lines.append(format_table(tuple(headers), rows))
    else:
        lines.append("no StaX images" + (f": {listing.note}" if listing.note else ""))
    return "\n".join(lines)
