"""State changes as jupyter_events events (read by the frontend from the server's event stream).

Two schemas, under ``event_schemas/``: ``execution/v1`` and ``step/v1``. :class:`EventBridge`
subscribes to the engine and emits one event per committed change; the engine calls it on the
loop thread right after the commit. Emission never breaks the engine: every failure is caught
and logged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_events import EventLogger

    from ..engine.engine import Engine, Event

log = logging.getLogger("jupyter_stax.server")

SCHEMA_DIR = Path(__file__).parent / "event_schemas"
EXECUTION_SCHEMA = "https://events.jupyter.org/jupyter_stax/execution/v1"
STEP_SCHEMA = "https://events.jupyter.org/jupyter_stax/step/v1"
SCHEMA_FILES = {
    EXECUTION_SCHEMA: SCHEMA_DIR / "execution" / "v1.yaml",
    STEP_SCHEMA: SCHEMA_DIR / "step" / "v1.yaml",
}


def register_schemas(event_logger: EventLogger) -> None:
    """Register both schemas (once: a second server start in one process reuses them)."""
    known = set(event_logger.schemas.schema_ids)
    for schema_id, path in SCHEMA_FILES.items():
        if schema_id not in known:
            event_logger.register_event_schema(path)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


class EventBridge:
    """Engine events -> jupyter_events. Use ``engine.subscribe(EventBridge(engine, logger))``."""

    def __init__(self, engine: Engine, event_logger: EventLogger) -> None:
        self.engine = engine
        self.event_logger = event_logger

    def __call__(self, ev: Event) -> None:
        try:
            if ev.step is None:
                self.event_logger.emit(schema_id=EXECUTION_SCHEMA, data=self.execution_data(ev))
            else:
                self.event_logger.emit(schema_id=STEP_SCHEMA, data=self.step_data(ev))
        except Exception:
            log.exception("could not emit the jupyter_stax event %r", ev)

    def execution_data(self, ev: Event) -> dict[str, Any]:
        state = ev.execution_state
        # the engine publishes a warnings change as state "warning": state stays as it was
        previous = ev.previous if ev.state == state else state
        return {
            "id": ev.execution_id,
            "state": state,
            "previous": previous,
            "done": ev.done,
            "total": ev.total,
            "warnings": list(ev.warnings),
            "time": _iso(ev.time),
        }

    def step_data(self, ev: Event) -> dict[str, Any]:
        assert ev.step is not None and ev.step_run is not None
        s = ev.step_run
        return {
            "execution_id": ev.execution_id,
            "step": ev.step,
            "state": ev.state,
            "previous": ev.previous,
            "execution_state": ev.execution_state,
            "attempt": s.attempt,
            "native_id": s.native_id,
            "exit_code": s.exit_code,
            "reason": s.reason,
            "time": _iso(ev.time),
        }
