"""Representations of an execution for frontends without widgets (plain IPython, nbconvert, VS
Code's static outputs): text and self-contained HTML with the DAG as inline SVG.

These become ``__repr__`` / ``_repr_html_`` of the notebook API's execution object. The pieces
of the live :class:`~jupyter_stax.kernel.monitor.Monitor` (badges, bar styles, step rows, the log
pane) are here too, as plain HTML.
Every user-provided string (names, descriptions, reasons, warnings, parameter values) is
HTML-escaped. No widget or IPython import here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

from ..core import dagview, text
from ..core.api import ImageList
from ..core.models import UNVERIFIED_WARNING, Execution, StepRun
from ..core.states import ExecutionState, StepState

__all__ = [
    "BAR_STYLES",
    "OUTCOME_COLORS",
    "clean_log_text",
    "execution_html",
    "execution_text",
    "header_row_html",
    "log_pane_html",
    "progress_html",
    "state_badge",
    "step_row_html",
    "title_html",
]

#: an execution's state -> the ipywidgets ``bar_style`` of its progress bar
BAR_STYLES: dict[ExecutionState, str] = {
    ExecutionState.PENDING: "info",
    ExecutionState.RUNNING: "info",
    ExecutionState.COMPLETED: "success",
    ExecutionState.FAILED: "danger",
    ExecutionState.CANCELED: "warning",
}
#: the same outcomes as colours for the HTML progress bar (Bootstrap-like, as ipywidgets uses)
OUTCOME_COLORS: dict[ExecutionState, str] = {
    ExecutionState.PENDING: "#2196f3",
    ExecutionState.RUNNING: "#2196f3",
    ExecutionState.COMPLETED: "#4caf50",
    ExecutionState.FAILED: "#f44336",
    ExecutionState.CANCELED: "#ff9800",
}
_EXECUTION_STATE_STEP = {
    ExecutionState.PENDING: StepState.PENDING,
    ExecutionState.RUNNING: StepState.RUNNING,
    ExecutionState.COMPLETED: StepState.COMPLETED,
    ExecutionState.FAILED: StepState.FAILED,
    ExecutionState.CANCELED: StepState.CANCELED,
}
#: characters of a log that a log pane keeps (the tail)
LOG_KEEP = 200_000
_FONT = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:13px"
_CELL = "padding:2px 10px 2px 0;text-align:left;vertical-align:top"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(timezone.utc)


def state_badge(state: StepState | ExecutionState, label: str | None = None) -> str:
    """``<span class="stax-badge" data-state="running" ...>running</span>``, coloured like the
    DAG's boxes."""
    step_state = state if isinstance(state, StepState) else _EXECUTION_STATE_STEP[state]
    css = dagview.STATE_STYLES[step_state].css()
    return (
        f'<span class="stax-badge" data-state="{state.value}" style="{css};'
        f'border-radius:8px;padding:0 7px;font-size:12px;white-space:nowrap">'
        f"{escape(label or state.value)}</span>"
    )


def execution_text(ex: Execution, now: datetime | None = None, width: int | None = None) -> str:
    """The status text of ``jupyter stax status``: header, blank line, step table."""
    return text.status_text(ex, _now(now), width)


def progress_html(ex: Execution) -> str:
    """A bar of done/total steps in the colour of the execution's outcome, with the counts."""
    done, total = ex.progress
    pct = 100.0 * done / total if total else 100.0
    color = OUTCOME_COLORS[ex.state]
    return (
        f'<div class="stax-progress" data-done="{done}" data-total="{total}" '
        f'style="display:flex;align-items:center;gap:8px;margin:4px 0">'
        f'<div style="flex:0 0 240px;height:12px;background:#e9ecef;border-radius:6px;'
        f'overflow:hidden"><div style="width:{pct:.1f}%;height:100%;background:{color}">'
        f"</div></div><span>{done}/{total} steps done</span></div>"
    )


def title_html(ex: Execution, now: datetime | None = None) -> str:
    """Workflow name, execution id, cluster, state badge and elapsed time, on one line."""
    now = _now(now)
    took = text.format_elapsed(text.execution_elapsed(ex, now))
    cancel = " (cancel requested)" if ex.cancel_requested and not ex.state.final else ""
    if UNVERIFIED_WARNING in ex.warnings:
        cancel += f' <i class="stax-unverified">({escape(UNVERIFIED_WARNING)})</i>'
    return (
        f'<div class="stax-title"><b>{escape(ex.workflow.name)}</b> '
        f"<code>{escape(ex.id)}</code> on <b>{escape(ex.cluster)}</b>"
        f"{' (detached)' if ex.options.detached else ''} {state_badge(ex.state)}{cancel} "
        f'<span style="color:#868e96">{took}</span></div>'
    )


def _step_cells(s: StepRun, row: list[str]) -> list[str]:
    """A step's cells, in the order of :data:`_COLUMNS` (the CLI's status table order)."""
    _name, _state, attempt, job, code, elapsed, reason = row
    return [
        f"<code>{escape(s.name)}</code>",
        state_badge(s.state),
        escape(attempt),
        f"<code>{escape(job)}</code>",
        escape(code),
        escape(elapsed),
        escape(reason),
    ]


def _steps_table(ex: Execution, now: datetime) -> str:
    head = "".join(f'<th style="{_CELL}">{h}</th>' for h, _ in _COLUMNS)
    rows = []
    for s, row in zip(ex.steps, text.step_rows(ex, now), strict=True):
        cells = _step_cells(s, row)
        cells[-1] = f'<span style="white-space:pre-wrap">{cells[-1]}</span>'
        tds = "".join(f'<td style="{_CELL}">{c}</td>' for c in cells)
        rows.append(f'<tr class="stax-step" data-step="{escape(s.name)}">{tds}</tr>')
    return (
        '<table class="stax-steps" style="border-collapse:collapse;margin:4px 0">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def execution_html(ex: Execution, now: datetime | None = None) -> str:
    """A self-contained HTML summary: title (workflow, id, cluster, state), description,
    parameters, a progress bar coloured by outcome, the steps table, warnings and the DAG."""
    t = _now(now)
    parts = [f'<div class="stax-execution" data-id="{escape(ex.id)}" style="{_FONT}">']
    parts.append(title_html(ex, t))
    if ex.workflow.description:
        parts.append(
            f'<div class="stax-description" style="color:#495057">'
            f"{escape(ex.workflow.description)}</div>"
        )
    if ex.params:
        params = " ".join(f"<code>{escape(f'{k}={v}')}</code>" for k, v in ex.params.items())
        parts.append(f'<div class="stax-params">params: {params}</div>')
    parts.append(progress_html(ex))
    parts.append(_steps_table(ex, t))
    if ex.warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in ex.warnings)
        parts.append(f'<ul class="stax-warnings" style="color:#e8590c;margin:4px 0">{items}</ul>')
    parts.append(f'<div class="stax-dag" style="overflow-x:auto">{dagview.svg(ex)}</div>')
    parts.append("</div>")
    return "\n".join(parts)


# ---------------------------------------------------------------------- pieces of the monitor
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("step", "170px"),
    ("state", "110px"),
    ("try", "40px"),
    ("job", "110px"),
    ("exit", "50px"),
    ("elapsed", "80px"),
    ("reason", "auto"),
)
_ROW_CSS = "display:flex;align-items:center;font-size:13px;line-height:22px"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_log_text(data: str) -> str:
    """Log text fit for the pane: undecodable bytes (surrogate escapes from the local store)
    as U+FFFD, ANSI colour and cursor sequences removed."""
    data = data.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _ANSI.sub("", data)


def _cells(cells: list[str], title: str = "") -> str:
    spans = []
    for (_, width), cell in zip(_COLUMNS, cells, strict=True):
        flex = "1 1 auto" if width == "auto" else f"0 0 {width}"
        tip = f' title="{escape(title)}"' if width == "auto" and title else ""
        spans.append(
            f'<span style="flex:{flex};overflow:hidden;text-overflow:ellipsis;'
            f'white-space:nowrap;padding-right:6px"{tip}>{cell}</span>'
        )
    return "".join(spans)


def header_row_html() -> str:
    """The column titles above the step rows."""
    cells = _cells([f"<b>{h}</b>" for h, _ in _COLUMNS])
    return f'<div class="stax-step-head" style="{_ROW_CSS}">{cells}</div>'


def step_row_html(s: StepRun, row: list[str]) -> str:
    """One step's line; its ``data-*`` attributes carry the values for readers of the state."""
    reason = row[-1]
    cells = _step_cells(s, row)
    attrs = f'data-step="{escape(s.name)}" data-state="{s.state.value}" '
    attrs += f'data-attempt="{s.attempt}" data-job="{escape(s.native_id or "")}" '
    attrs += f'data-exit="{"" if s.exit_code is None else s.exit_code}"'
    return f'<div class="stax-step-row" {attrs} style="{_ROW_CSS}">{_cells(cells, reason)}</div>'


def log_pane_html(step: str, stream: str, content: str, *, cut: bool, done: bool) -> str:
    """A scrolling ``<pre>`` of a log's tail that stays scrolled to the newest line."""
    body = escape(content)
    if cut:
        body = f"[… earlier output cut: this pane keeps the last {LOG_KEEP} characters]\n{body}"
    if not content:
        empty = "(no output)" if done else "(no output yet)"
        body = f'<span style="color:#868e96">{empty}</span>'
    # column-reverse keeps the view scrolled to the bottom, like tail -f
    return (
        f'<div class="stax-log" data-step="{escape(step)}" data-stream="{escape(stream)}" '
        'style="display:flex;flex-direction:column-reverse;max-height:240px;overflow:auto;'
        'border:1px solid #dee2e6;background:#f8f9fa">'
        '<pre style="margin:0;padding:4px 6px;font-size:12px;white-space:pre-wrap;'
        f'word-break:break-all">{body}</pre></div>'
    )


@dataclass(frozen=True)
class ImageEntry:
    """One StaX image variant as the picker shows it, judged for one cluster."""

    name: str
    family: str
    reference: str
    fits: bool
    reason: str


def image_entries(listing: ImageList) -> list[ImageEntry]:
    """The variants of a listing for one cluster, with the failed rules as the reason."""
    return [
        ImageEntry(
            name=i.name,
            family=i.family,
            reference=i.reference,
            fits=bool(i.fits),
            reason="; ".join(r.message for r in i.rules if r.outcome == "fail") or "fits",
        )
        for i in listing.images
    ]
