"""The SQLite store: the only module that talks to the database.

One file (WAL mode) shared by every engine and client on a machine. Rules it enforces:

* every write of an execution's state is fenced by ownership: it only happens while the writing
  engine still owns the execution (``executions.owner``), so two engines never drive one
  execution, even when one of them was paused and another adopted its work;
* a step's submission intent (state ``submitted`` without native id) is committed BEFORE the
  scheduler is called and the native id right after, so a crash in between is detected on
  recovery and never leads to a second submission of the same attempt;
* the execution state column is derived from the steps in the same transaction;
* the owning engine commits the changes of one event-loop turn together
  (:meth:`Store.save_steps`: one transaction for every step that changed, fenced once per
  execution), so a reader sees all of a turn's changes or none of them.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.errors import NotFound, StaxError
from ..core.images import ResolvedImage
from ..core.jobscript import STDERR, STDOUT, STEP_SCRIPT
from ..core.models import (
    AttemptRecord,
    Execution,
    Origin,
    StepRun,
    SubmitOptions,
    Workflow,
)
from ..core.staging import StepFiles
from ..core.states import ExecutionState, StepState, execution_state
from ..core.sweep import fill_summaries

SCHEMA_VERSION = 3
#: what each schema version added, applied in order to an older store when it is opened
_MIGRATIONS = {
    2: ("ALTER TABLE steps ADD COLUMN resolved_image TEXT",),  # StaX image provenance
    # when the owning engine last knew the states to be current (see Store.unverified); NULL
    # between an adoption and the adopting engine's first reconcile pass
    3: ("ALTER TABLE executions ADD COLUMN checked REAL",),
}
ENV_STORE = "JUPYTER_STAX_STORE"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS engines (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT,
    started REAL NOT NULL, heartbeat REAL NOT NULL, stopped REAL);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, cluster TEXT NOT NULL, state TEXT NOT NULL,
    created REAL NOT NULL, finished REAL, updated REAL NOT NULL, doc TEXT NOT NULL,
    owner TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0, warnings TEXT NOT NULL DEFAULT '[]',
    checked REAL);
CREATE INDEX IF NOT EXISTS executions_state ON executions (state);
CREATE INDEX IF NOT EXISTS executions_created ON executions (created);
CREATE TABLE IF NOT EXISTS steps (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    name TEXT NOT NULL, pos INTEGER NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL,
    cluster TEXT NOT NULL, native_id TEXT, job_name TEXT, exit_code INTEGER, reason TEXT,
    submitted REAL, started REAL, finished REAL, directory TEXT NOT NULL, image TEXT,
    history TEXT NOT NULL DEFAULT '[]', resolved_image TEXT,
    PRIMARY KEY (execution_id, name));
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL, kind TEXT NOT NULL,
    created REAL NOT NULL, done REAL, result TEXT);
CREATE INDEX IF NOT EXISTS requests_open ON requests (done, execution_id);
-- published workflows (issue 17): a table of its own, so older stores need no migration
CREATE TABLE IF NOT EXISTS workflows (
    name TEXT NOT NULL, version TEXT NOT NULL, created REAL NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS step_files (
    execution_id TEXT NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    name TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (execution_id, name));
"""
#: a step row with its files record (issue 14: a table of its own, so older stores need no
#: migration: CREATE TABLE IF NOT EXISTS adds it)
_STEPS = (
    "SELECT steps.*, step_files.doc AS files FROM steps LEFT JOIN step_files"
    " USING (execution_id, name) WHERE execution_id=? ORDER BY pos"
)

_UNFINISHED = ("pending", "running")


class LostOwnership(StaxError):
    """This engine no longer owns the execution (another engine adopted it)."""

    http_status = 409


def default_store_path() -> Path:
    if os.environ.get(ENV_STORE):
        return Path(os.environ[ENV_STORE]).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "stax" / "stax.sqlite"


@functools.cache
def software_versions() -> dict[str, str]:
    """The versions of jupyter_stax and PSI/J in this process (recorded with executions)."""
    from importlib import metadata

    from .._version import __version__

    out = {"jupyter_stax": __version__}
    try:
        out["psij"] = metadata.version("psij-python")
    except metadata.PackageNotFoundError:
        pass
    return out


def _ts(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt else None


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, timezone.utc) if ts is not None else None


def now() -> datetime:
    return datetime.now(timezone.utc)


def process_start_time(pid: int) -> str | None:
    """Start time of a process (field 22 of /proc/PID/stat), to tell a reused PID apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":
        return None  # zombie: dead
    return fields[19] if len(fields) > 19 else None


class Store:
    """Thread-safe (one connection guarded by a lock); all calls are short."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the crash of any process (kill -9 included);
        # only an OS crash or power loss can lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                self._db.execute(stmt)
        self._migrate()

    def _migrate(self) -> None:
        """Stamp a new store with the current schema; bring an older one up to it (each step
        in one transaction); refuse a newer one."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                return
            version = int(row[0])
            if version > SCHEMA_VERSION:
                raise StaxError(
                    f"store {self.path} was written by a newer jupyter_stax (schema {version}); "
                    "upgrade jupyter-stax or point JUPYTER_STAX_STORE elsewhere"
                )
            columns = {
                table: {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                for table in ("steps", "executions")
            }
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in _MIGRATIONS.get(v, ()):
                    words = stmt.split()
                    if words[3] == "ADD" and words[5] in columns.get(words[2], set()):
                        continue  # a fresh table already has it
                    db.execute(stmt)
            if version < SCHEMA_VERSION:
                db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    # ------------------------------------------------------------------ engines
    def register_engine(self, engine_id: str) -> None:
        pid = os.getpid()
        t = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO engines VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (engine_id, socket.gethostname(), pid, process_start_time(pid), t, t),
            )

    def heartbeat(self, engine_id: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE engines SET heartbeat=? WHERE id=?", (time.time(), engine_id))

    def engine_stopped(self, engine_id: str) -> None:
        """Clean stop: release owned unfinished executions so another engine adopts them now."""
        with self.transaction() as db:
            db.execute("UPDATE engines SET stopped=? WHERE id=?", (time.time(), engine_id))
            db.execute("UPDATE executions SET owner=NULL WHERE owner=?", (engine_id,))

    def live_engines(self, lease_timeout: float) -> list[dict[str, Any]]:
        """Engines that are not known to be gone."""
        out = []
        host = socket.gethostname()
        limit = time.time() - lease_timeout
        with self._lock:
            rows = self._db.execute("SELECT * FROM engines WHERE stopped IS NULL").fetchall()
        for r in rows:
            if r["host"] == host:
                # same machine: the process itself tells (kill -9 is seen at once)
                if process_start_time(r["pid"]) != r["pid_start"]:
                    continue
            elif r["heartbeat"] < limit:
                continue
            out.append(dict(r))
        return out

    def claim_orphans(self, engine_id: str, lease_timeout: float) -> list[str]:
        """Take ownership of unfinished executions whose owner is gone (or that have none)."""
        live = {e["id"] for e in self.live_engines(lease_timeout)} | {engine_id}
        claimed = []
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id, owner FROM executions WHERE state IN (?, ?)", _UNFINISHED
            ).fetchall()
            for r in rows:
                if r["owner"] not in live:
                    db.execute(
                        "UPDATE executions SET owner=?, checked=NULL WHERE id=? AND owner IS ?",
                        (engine_id, r["id"], r["owner"]),
                    )
                    claimed.append(r["id"])
        return claimed

    def unowned_unfinished(self, lease_timeout: float) -> int:
        live = {e["id"] for e in self.live_engines(lease_timeout)}
        with self._lock:
            rows = self._db.execute(
                "SELECT owner FROM executions WHERE state IN (?, ?)", _UNFINISHED
            ).fetchall()
        return sum(1 for r in rows if r["owner"] not in live)

    def unverified(self, lease_timeout: float, ids: Sequence[str] | None = None) -> set[str]:
        """The unfinished executions (of ``ids``, or all) whose stored states may be stale: no
        live engine owns them, or the engine that adopted them has not finished its first
        reconcile pass yet (:meth:`mark_checked`)."""
        live = {e["id"] for e in self.live_engines(lease_timeout)}
        q = "SELECT id, owner, checked FROM executions WHERE state IN (?, ?)"
        args: list[object] = list(_UNFINISHED)
        if ids is not None:
            if not ids:
                return set()
            q += f" AND id IN ({','.join('?' * len(ids))})"
            args += list(ids)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return {r["id"] for r in rows if r["owner"] not in live or r["checked"] is None}

    def mark_checked(self, execution_id: str, owner: str) -> None:
        """The owning engine knows the states to be current (fenced by ownership)."""
        with self.transaction() as db:
            self._owned(db, execution_id, owner)
            db.execute("UPDATE executions SET checked=? WHERE id=?", (time.time(), execution_id))

    # ------------------------------------------------------------------ executions
    def insert_execution(self, ex: Execution) -> None:
        doc = json.dumps(
            {
                "workflow": ex.workflow.model_dump(mode="json"),
                "params": ex.params,
                "options": ex.options.model_dump(mode="json"),
                "work_dir": ex.work_dir,
                "software": software_versions(),  # for provenance (the RO-Crate export)
                # the published workflow / the run it came from (``list(workflow=)`` reads it)
                "origin": ex.origin.model_dump(mode="json") if ex.origin else None,
            }
        )
        t = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO executions (id, name, cluster, state, created, finished, updated,"
                " doc, owner, cancel_requested, warnings, checked)"
                " VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, 0, '[]', ?)",
                (
                    ex.id,
                    ex.workflow.name,
                    ex.cluster,
                    ex.state.value,
                    _ts(ex.created_at),
                    t,
                    doc,
                    ex.owner,
                    t,  # nothing has run yet: the states are current
                ),
            )
            db.executemany(
                "INSERT INTO steps (execution_id, name, pos, state, attempt, cluster, native_id,"
                " job_name, exit_code, reason, submitted, started, finished, directory, image,"
                " history, resolved_image) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL,"
                " NULL, NULL, ?, ?, '[]', ?)",
                [
                    (
                        ex.id,
                        s.name,
                        i,
                        s.state.value,
                        s.attempt,
                        s.cluster,
                        s.directory,
                        s.image,
                        _resolved_json(s),
                    )
                    for i, s in enumerate(ex.steps)
                ],
            )

    def _owned(self, db: sqlite3.Connection, execution_id: str, owner: str) -> None:
        row = db.execute("SELECT owner FROM executions WHERE id=?", (execution_id,)).fetchone()
        if row is None:
            raise NotFound(f"execution {execution_id!r} not found")
        if row["owner"] != owner:
            raise LostOwnership(
                f"execution {execution_id} is now driven by engine {row['owner']}, not {owner}"
            )

    def save_step(
        self, execution_id: str, step: StepRun, owner: str, state: ExecutionState | None = None
    ) -> ExecutionState:
        """Commit one step (fenced) and the execution state: ``state`` when the caller derived
        it already (the owning engine keeps counts), else derived here from every step."""
        with self.transaction() as db:
            if state is not None:
                self._set_state(db, execution_id, owner, state)
            else:
                self._owned(db, execution_id, owner)
            db.execute(_UPDATE_STEP, step_row(execution_id, step))
            if step.files is not None:
                _save_files(db, execution_id, step)
            if state is None:
                return self._derive(db, execution_id)
            return state

    def save_steps(self, owner: str, changes: Mapping[str, Changes]) -> set[str]:
        """Commit the changes of several executions (execution id -> its :class:`Changes`) in
        ONE transaction: the owning engine's changes of one event-loop turn. Each execution is
        fenced by ownership; the changes of one that ``owner`` no longer owns (or that is gone)
        are not written, and its id is returned. Four statements however many steps changed
        (BEGIN, the fence, the steps' rows, COMMIT; their files and the execution's row
        when they changed)."""
        lost: set[str] = set()
        if not changes:
            return lost
        with self.transaction() as db:
            for eid, ch in changes.items():
                if not self._set_state(db, eid, owner, ch.state, check=False):
                    lost.add(eid)
                    continue
                db.executemany(_UPDATE_STEP, ch.steps.values())
                if ch.files:
                    db.executemany(_UPSERT_FILES, ch.files.values())
        return lost

    def _set_state(
        self, db: sqlite3.Connection, execution_id: str, owner: str, state: ExecutionState,
        *, check: bool = True,
    ) -> bool:
        """The fence and the execution's state: True if ``owner`` owns the execution, whose
        state is then written if it changed (only then: the row holds the workflow document,
        hundreds of KB for a workflow of a thousand steps, which every update of the row
        rewrites). Not owned: LostOwnership / NotFound (``check``), or False."""
        row = db.execute(
            "SELECT owner, state FROM executions WHERE id=?", (execution_id,)
        ).fetchone()
        if row is None or row["owner"] != owner:
            if check:
                self._owned(db, execution_id, owner)  # raises: say why
            return False
        if row["state"] != state.value:
            t = time.time()
            db.execute(
                "UPDATE executions SET state=?, updated=?, finished=CASE WHEN ? THEN"
                " COALESCE(finished, ?) ELSE NULL END WHERE id=?",
                (state.value, t, state.final, t, execution_id),
            )
        return True

    def _derive(self, db: sqlite3.Connection, execution_id: str) -> ExecutionState:
        row = db.execute(
            "SELECT cancel_requested, finished FROM executions WHERE id=?", (execution_id,)
        ).fetchone()
        states = [
            StepState(r[0])
            for r in db.execute("SELECT state FROM steps WHERE execution_id=?", (execution_id,))
        ]
        st = execution_state(states, cancel_requested=bool(row["cancel_requested"]))
        t = time.time()
        finished = row["finished"] if row["finished"] is not None else (t if st.final else None)
        if not st.final:
            finished = None
        db.execute(
            "UPDATE executions SET state=?, finished=?, updated=? WHERE id=?",
            (st.value, finished, t, execution_id),
        )
        return st

    def set_step_files(self, execution_id: str, step: StepRun) -> None:
        """Record a step's files (outputs fetched on request): not fenced, as it changes no
        state and a client that fetched them is not the execution's owner."""
        with self.transaction() as db:
            _save_files(db, execution_id, step)

    def set_cancel_requested(self, execution_id: str, owner: str | None) -> None:
        with self.transaction() as db:
            if owner is not None:
                self._owned(db, execution_id, owner)
            db.execute("UPDATE executions SET cancel_requested=1 WHERE id=?", (execution_id,))
            self._derive(db, execution_id)

    def reopen(self, execution_id: str, owner: str) -> None:
        """Before a retry: clear cancel and finish marks (the steps are reset one by one)."""
        with self.transaction() as db:
            self._owned(db, execution_id, owner)
            db.execute(
                "UPDATE executions SET cancel_requested=0, finished=NULL, checked=? WHERE id=?",
                (time.time(), execution_id),
            )

    def set_warnings(self, execution_id: str, warnings: Sequence[str], owner: str) -> None:
        with self.transaction() as db:
            self._owned(db, execution_id, owner)
            db.execute(
                "UPDATE executions SET warnings=?, updated=? WHERE id=?",
                (json.dumps(list(warnings)), time.time(), execution_id),
            )

    def take_ownership(self, execution_id: str, owner: str) -> bool:
        """Own an execution that nobody owns (a client created it). True on success."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE executions SET owner=?, checked=NULL WHERE id=? AND owner IS NULL",
                (owner, execution_id),
            )
            return cur.rowcount == 1

    def set_owner(self, execution_id: str, owner: str) -> None:
        """Own an execution whatever its owner (a final one being retried keeps its last)."""
        with self.transaction() as db:
            db.execute("UPDATE executions SET owner=? WHERE id=?", (owner, execution_id))

    def resolve_id(self, ref: str) -> str:
        """A full execution id from an id or a unique prefix of one."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM executions WHERE id=? OR id LIKE ? ESCAPE '\\' LIMIT 3",
                (ref, ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
            ).fetchall()
        ids = [r[0] for r in rows]
        if ref in ids:
            return ref
        if len(ids) == 1:
            return str(ids[0])
        if not ids:
            raise NotFound(f"no execution {ref!r}; see `jupyter stax list`")
        raise NotFound(
            f"execution id {ref!r} is ambiguous ({', '.join(ids)}, ...); give more of it"
        )

    def software(self, execution_id: str) -> dict[str, str]:
        """The versions of jupyter_stax and PSI/J that stored the execution ({} when it was
        stored by a version that did not record them)."""
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM executions WHERE id=?", (execution_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no execution {execution_id!r}; see `jupyter stax list`")
        got = json.loads(row["doc"]).get("software")
        return {str(k): str(v) for k, v in got.items()} if isinstance(got, dict) else {}

    def get(self, execution_id: str) -> Execution:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM executions WHERE id=?", (execution_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no execution {execution_id!r}; see `jupyter stax list`")
            steps = self._db.execute(_STEPS, (execution_id,)).fetchall()
        return _execution(row, steps)

    def list_executions(
        self,
        *,
        state: str | None = None,
        limit: int = 50,
        before: float | None = None,
        workflow: str | None = None,
        version: str | None = None,
    ) -> list[Execution]:
        """Newest first. ``before`` is the ``created`` time of the last item of a previous page;
        ``workflow`` (and ``version``): only those triggered from that published workflow."""
        q = "SELECT * FROM executions"
        cond: list[str] = []
        args: list[object] = []
        if state:
            cond.append("state=?")
            args.append(state)
        if workflow is not None:
            cond.append("json_extract(doc, '$.origin.workflow')=?")
            args.append(workflow)
        if version is not None:
            cond.append("json_extract(doc, '$.origin.version')=?")
            args.append(version)
        if before is not None:
            cond.append("created<?")
            args.append(before)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        q += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
            out = []
            for r in rows:
                steps = self._db.execute(_STEPS, (r["id"],)).fetchall()
                out.append(_execution(r, steps))
        return out

    # ------------------------------------------------------------------ published workflows
    def publish(self, name: str, version: str, doc: str, created: float) -> bool:
        """Store version ``version`` of the published workflow ``name``; False when that
        version exists already (it is never replaced)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO workflows (name, version, created, doc) VALUES (?, ?, ?, ?)",
                (name, version, created, doc),
            )
            return cur.rowcount == 1

    def published(self, name: str | None = None) -> list[tuple[str, str, str]]:
        """``(name, version, doc)`` of every published version (of ``name``), oldest first."""
        q = "SELECT name, version, doc FROM workflows"
        args: tuple[str, ...] = ()
        if name is not None:
            q, args = q + " WHERE name=?", (name,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY created, rowid", args).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # ------------------------------------------------------------------ requests
    def add_request(self, execution_id: str, kind: str) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO requests (execution_id, kind, created) VALUES (?, ?, ?)",
                (execution_id, kind, time.time()),
            )
            return int(cur.lastrowid or 0)

    def open_requests(self, owner: str) -> list[tuple[int, str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT r.id, r.execution_id, r.kind FROM requests r JOIN executions e"
                " ON e.id = r.execution_id WHERE r.done IS NULL AND e.owner=? ORDER BY r.id",
                (owner,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def finish_request(self, request_id: int, result: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE requests SET done=?, result=? WHERE id=?", (time.time(), result, request_id)
            )

    #: the same as :meth:`list_executions` (kept last: a method named ``list`` shadows the
    #: builtin for annotations that follow it in the class body)
    list = list_executions


def _execution(row: sqlite3.Row, steps: Sequence[sqlite3.Row]) -> Execution:
    doc = json.loads(row["doc"])
    ex = Execution(
        id=row["id"],
        workflow=Workflow.model_validate(doc["workflow"]),
        cluster=row["cluster"],
        params=doc["params"],
        options=SubmitOptions.model_validate(doc["options"]),
        state=ExecutionState(row["state"]),
        created_at=_dt(row["created"]),
        finished_at=_dt(row["finished"]),
        work_dir=doc["work_dir"],
        owner=row["owner"],
        cancel_requested=bool(row["cancel_requested"]),
        warnings=json.loads(row["warnings"]),
        steps=[_step(s) for s in steps],
        origin=Origin.model_validate(doc["origin"]) if doc.get("origin") else None,
    )
    return fill_summaries(ex)  # a sweep step's counts, from its stax.sweep.json


_UPDATE_STEP = (
    "UPDATE steps SET state=?, attempt=?, native_id=?, job_name=?, exit_code=?, reason=?,"
    " submitted=?, started=?, finished=?, image=?, history=?, resolved_image=?"
    " WHERE execution_id=? AND name=?"
)
_UPSERT_FILES = (
    "INSERT INTO step_files (execution_id, name, doc) VALUES (?, ?, ?) ON CONFLICT"
    " (execution_id, name) DO UPDATE SET doc=excluded.doc"
)


def step_row(execution_id: str, step: StepRun) -> tuple[Any, ...]:
    """The parameters of a step's row update (a snapshot of the step as it is now)."""
    return (
        step.state.value,
        step.attempt,
        step.native_id,
        step.job_name,
        step.exit_code,
        step.reason,
        _ts(step.submitted_at),
        _ts(step.started_at),
        _ts(step.finished_at),
        step.image,
        json.dumps([h.model_dump(mode="json") for h in step.history]) if step.history else "[]",
        _resolved_json(step),
        execution_id,
        step.name,
    )


def files_row(execution_id: str, step: StepRun) -> tuple[str, str, str]:
    """The parameters of a step's files record upsert."""
    assert step.files is not None
    return (execution_id, step.name, step.files.model_dump_json())


@dataclass
class Changes:
    """An execution's changes not yet committed (see :meth:`Store.save_steps`): its state, and
    each changed step's row (and files record) as it was last changed."""

    state: ExecutionState
    steps: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """step name -> its :func:`step_row`"""
    files: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    """step name -> its :func:`files_row`"""

    def add(self, execution_id: str, step: StepRun, state: ExecutionState) -> None:
        """Note the step as it is now (replacing an earlier note of it) and the state."""
        self.state = state
        self.steps[step.name] = step_row(execution_id, step)
        if step.files is not None:
            self.files[step.name] = files_row(execution_id, step)


def _save_files(db: sqlite3.Connection, execution_id: str, step: StepRun) -> None:
    db.execute(_UPSERT_FILES, files_row(execution_id, step))


def _resolved_json(s: StepRun) -> str | None:
    return s.resolved_image.model_dump_json() if s.resolved_image else None


def _step(r: sqlite3.Row) -> StepRun:
    d = Path(r["directory"])
    return StepRun(
        name=r["name"],
        state=StepState(r["state"]),
        attempt=r["attempt"],
        cluster=r["cluster"],
        native_id=r["native_id"],
        job_name=r["job_name"],
        exit_code=r["exit_code"],
        reason=r["reason"],
        submitted_at=_dt(r["submitted"]),
        started_at=_dt(r["started"]),
        finished_at=_dt(r["finished"]),
        directory=str(d),
        script=str(d / STEP_SCRIPT),
        stdout=str(d / STDOUT),
        stderr=str(d / STDERR),
        image=r["image"],
        resolved_image=(
            ResolvedImage.model_validate_json(r["resolved_image"]) if r["resolved_image"] else None
        ),
        history=[AttemptRecord.model_validate(h) for h in json.loads(r["history"])],
        files=StepFiles.model_validate_json(r["files"]) if r["files"] else None,
    )
