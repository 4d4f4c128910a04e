"""Data in and out of steps (issue 14): stage-in before a step's job is submitted, outputs kept
and fetched back when it completes, fetch on request. Everything moves through the clusters'
transports (:meth:`~.transport.Transport.put_files`, ``get_files``, ``copy_files``,
``list_tree``), so a local cluster, a Slurm sharing this file system and a remote cluster over
SSH take the same code path.

Decisions:

* Stage-in (:func:`stage_in`) runs with the writing of the attempt's scripts, on a worker
  thread, before the job is submitted. A notebook-side input that is missing or unreadable fails
  that step only (``stage-in failed: input 'config.json': no such file (...)``) and nothing is
  submitted for it; :func:`input_problems` already refuses the submission when that is known
  before anything is stored. A connection that drops is a TransportError: the engine retries the
  whole stage-in with backoff (the step says "not yet submitted: ..."), never fails for it.
* ``{from: STEP, path: GLOB}`` takes the upstream step's regular files from its directory
  (links never followed) onto the same relative paths: on one cluster a copy there, between
  clusters through this machine (``get_files`` then ``put_files``: clusters need not reach each
  other). A detached execution cannot do that (nothing runs between the jobs): refused.
* Outputs (:func:`stage_out`) are gathered when the attempt's outcome is ``completed`` and
  BEFORE it is committed: a client that sees the step completed finds its outputs here (and an
  engine that stops half-way fetches again after adoption). On a cluster that shares this file
  system they are already in place: they are hashed where they are, not copied (``in place``).
  On a remote cluster (``fetch: auto``) they are fetched to ``<outputs dir>/<execution
  id>/<step>/``. A fetch that fails keeps the step completed, with the reason and the command
  that fetches again on the step (``files.warning``) and on the execution's warnings.
* Local files are written by :func:`.landing.land` only: never outside the destination, never
  through a link, never over an existing different file unless asked (``--overwrite``).

Threading: :func:`stage_in`, :func:`collect` and :func:`fetch` block (worker threads);
:func:`stage_out` is the event loop's.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import jobscript as js
from ..core.errors import StaxError
from ..core.models import Cluster, Execution, Step, StepRun, SubmitOptions, Workflow
from ..core.progress import Meter
from ..core.staging import (
    OUTPUTS_DIR,
    FileRecord,
    FromStep,
    InputError,
    StepFiles,
    TreeEntry,
    base_for,
    check_destinations,
    local_inputs,
    outputs_of,
    unmatched,
)
from . import landing
from .transport import Transport, TransportError

if TYPE_CHECKING:
    from .engine import Engine
    from .runstate import Run

log = logging.getLogger("jupyter_stax.engine")

#: tries of a fetch whose connection drops, and the waits between them (seconds)
FETCH_BACKOFF = (1.0, 3.0, 9.0)

#: seconds between two progress lines of a transfer (each is committed on the step)
PROGRESS_EVERY = 1.0

#: told ``(line, bytes done, total bytes or None)`` while a transfer goes
Report = Callable[[str, int, "int | None"], None]


class StageInFailed(StaxError):
    """A step's inputs could not be staged (the step fails; no job is submitted for it)."""

    http_status = 400


# ---------------------------------------------------------------------- before submission
def with_defaults(options: SubmitOptions, source: object) -> SubmitOptions:
    """``options`` with an absolute ``base_dir``: the workflow file's directory when the
    workflow came from one, else the current directory."""
    base = Path(options.base_dir or base_for(source)).expanduser()
    update: dict[str, Any] = {"base_dir": str(base.absolute())}
    if options.outputs_dir:
        out = Path(options.outputs_dir).expanduser()
        update["outputs_dir"] = str(out if out.is_absolute() else base.absolute() / out)
    return options.model_copy(update=update)


def input_problems(wf: Workflow, options: SubmitOptions) -> list[str]:
    """Every notebook-side input that names nothing (checked before anything is stored), two
    inputs onto one path, and ``from`` inputs of a detached execution."""
    base = Path(options.base_dir or ".")
    problems: list[str] = []
    for s in wf.steps:
        dests: list[tuple[str, str]] = []
        for i in s.inputs:
            if isinstance(i, FromStep):
                if options.detached:
                    problems.append(
                        f"step {s.name!r} takes files from step {i.step!r}, which a detached "
                        "execution cannot move (nothing runs between its jobs); submit without "
                        "--detach"
                    )
                continue
            try:
                dests += [(f.dest, i) for f in local_inputs(i, base)]
            except (InputError, OSError) as e:
                problems.append(f"step {s.name!r}: {e}")
        problems += check_destinations(s.name, dests)
    return problems


def is_engine_file(rel: str) -> bool:
    """The engine's own files of a step directory (scripts, records, logs, earlier attempts'
    ones): never outputs."""
    if "/" in rel:
        return False
    name, _, suffix = rel.rpartition(".")
    own = (js.STEP_SCRIPT, js.JOB_SCRIPT, *js.ATTEMPT_FILES)
    return rel in own or (suffix.isdigit() and name in js.ATTEMPT_FILES)


def stage_in(
    ex: Execution,
    step: Step,
    s: StepRun,
    cluster: Cluster,
    attempt: int,
    transport_of: Callable[[str], tuple[Cluster, Transport]],
    progress: Report | None = None,
) -> StepFiles | None:
    """Copy the step's inputs into its directory on ``cluster`` (made already); the record of
    what was copied (None: the step has no inputs and no outputs). Blocking. StageInFailed
    when an input names nothing; TransportError when a cluster does not answer.
    ``progress(line, bytes done, total)``: told how it goes (see :class:`.progress.Meter`)."""
    if not step.inputs and not step.outputs:
        return None
    record = StepFiles(attempt=attempt, fetch="manual" if step.fetch == "manual" else None)
    _, transport = transport_of(cluster.name)
    base = Path(ex.options.base_dir or ".")
    meter = None if progress is None or not step.inputs else Meter(
        "staging inputs", _local_total(step, base), progress, every=PROGRESS_EVERY
    )
    for spec in step.inputs:
        if isinstance(spec, FromStep):
            try:
                record.inputs += _from_step(
                    ex, spec, s, cluster, transport, transport_of, meter
                )
            except (TransportError, StageInFailed):
                raise
            except (OSError, StaxError, landing.UnsafePath) as e:
                raise StageInFailed(
                    f"stage-in failed: {{from: {spec.step}, path: {spec.path!r}}}: {e}"
                ) from None
            continue
        try:
            files = local_inputs(spec, base)
        except (InputError, OSError) as e:
            raise StageInFailed(f"stage-in failed: {e}") from None
        try:
            sent = transport.put_files(
                [(f.source, f.dest) for f in files], s.directory, progress=meter
            )
        except TransportError:
            raise  # the cluster did not answer: tried again
        except (OSError, StaxError, landing.UnsafePath) as e:
            raise StageInFailed(f"stage-in failed: input {spec!r}: {e}") from None
        record.inputs += [
            FileRecord(
                path=f.dest, size=sent[f.dest][0], sha256=sent[f.dest][1], source=str(f.source)
            )
            for f in files
        ]
    if meter is not None:
        meter.finish()
    return record


def _local_total(step: Step, base: Path) -> int | None:
    """The bytes of the step's notebook-side inputs (None when it takes an upstream step's
    files too: their size is known only once listed)."""
    if any(isinstance(i, FromStep) for i in step.inputs):
        return None
    total = 0
    for spec in step.inputs:
        with contextlib.suppress(InputError, OSError):
            total += sum(f.source.stat().st_size for f in local_inputs(str(spec), base))
    return total


def _from_step(
    ex: Execution,
    spec: FromStep,
    s: StepRun,
    cluster: Cluster,
    transport: Transport,
    transport_of: Callable[[str], tuple[Cluster, Transport]],
    meter: Meter | None = None,
) -> list[FileRecord]:
    up = ex.step(spec.step)
    src_cluster, src = transport_of(up.cluster)
    found, _ = outputs_of([spec.path], src.list_tree(up.directory))
    names = [e.path for e in found if not is_engine_file(e.path)]
    if not names:
        raise StageInFailed(
            f"stage-in failed: {{from: {spec.step}, path: {spec.path!r}}} matches no file in "
            f"step {spec.step!r}'s directory ({up.directory} on {src_cluster.name})"
        )
    if src_cluster.name == cluster.name or not (src_cluster.remote or cluster.remote):
        got = transport.copy_files(up.directory, names, s.directory)
    elif not cluster.remote:  # from a remote cluster into a directory of this machine
        landed = src.get_files(
            up.directory, names, Path(s.directory), overwrite=True, progress=meter
        )
        got = {n: (x.size, x.sha256) for n, x in landed.items()}
    elif not src_cluster.remote:  # from this machine onto a remote cluster
        got = transport.put_files(
            [(Path(up.directory) / n, n) for n in names], s.directory, progress=meter
        )
    else:  # two remote clusters: through this machine
        with tempfile.TemporaryDirectory(prefix="stax-relay-") as tmp:
            landed = src.get_files(up.directory, names, Path(tmp), overwrite=True)
            got = transport.put_files(
                [(x.path, n) for n, x in landed.items()], s.directory, progress=meter
            )
    return [
        FileRecord(path=n, size=size, sha256=digest, source=f"{spec.step}:{n}")
        for n, (size, digest) in sorted(got.items())
    ]


# ---------------------------------------------------------------------- after completion
def outputs_root(ex: Execution) -> Path:
    """Where fetched outputs of ``ex`` go by default: ``<outputs dir>/<execution id>``."""
    root = ex.options.outputs_dir or os.path.join(ex.options.base_dir or ".", OUTPUTS_DIR)
    return Path(root) / ex.id


def fetch_command(ex: Execution, step: str) -> str:
    return f"jupyter stax fetch {ex.id} {shlex.quote(step)}"


def collect(
    ex: Execution,
    step: Step,
    s: StepRun,
    cluster: Cluster,
    transport: Transport,
    *,
    patterns: Sequence[str] | None = None,
    dest: Path | None = None,
    overwrite: bool = False,
    copy: bool | None = None,
    on_request: bool = False,
    backoff: Sequence[float] = FETCH_BACKOFF,
    progress: Report | None = None,
) -> StepFiles:
    """The step's outputs (``patterns``: its ``outputs``), recorded and, on a remote cluster
    (or with ``copy``), fetched to ``dest`` (default ``<outputs root>/<step>``). Blocking.
    ``on_request``: a fetch asked for (``fetch: manual`` steps too). Never raises for a fetch
    that failed: the record says so (``fetch: failed`` + warning)."""
    pats = list(step.outputs if patterns is None else patterns)
    record = (
        s.files.model_copy(deep=True)
        if s.files is not None and s.files.attempt == s.attempt
        else StepFiles(attempt=s.attempt)
    )
    if not pats:
        return record
    remote = cluster.remote
    copy = remote if copy is None else copy
    notes: list[str] = []
    tries = 0
    while True:
        try:
            tree = transport.list_tree(s.directory)
            found, skipped = outputs_of(pats, tree)
            found = [e for e in found if not is_engine_file(e.path)]
            notes = skipped + [
                f"output pattern {p!r} matched no file"
                for p in unmatched(pats, [e.path for e in tree if e.kind == "f"])
            ]
            if not copy and not remote:
                record.outputs = _in_place(s, found)
                record.fetch, record.fetched_to = "in place", s.directory
            elif step.fetch == "manual" and not on_request:
                record.outputs = [FileRecord(path=e.path, size=e.size) for e in found]
                record.fetch = "manual"
            else:
                target = dest or outputs_root(ex) / s.name
                meter = None if progress is None else Meter(
                    f"fetching outputs of {s.name}", sum(e.size for e in found), progress,
                    every=PROGRESS_EVERY,
                )
                landed = transport.get_files(
                    s.directory, [e.path for e in found], target, overwrite=overwrite,
                    progress=meter,
                )
                if meter is not None:
                    meter.finish()
                record.outputs = _merge(record.outputs, landed, target)
                kept = [n for n, x in landed.items() if x.status == "kept"]
                if kept:
                    notes.append(
                        f"kept {len(kept)} local file(s) that differ from the step's ("
                        + ", ".join(kept[:3])
                        + (", ..." if len(kept) > 3 else "")
                        + f"): `{fetch_command(ex, s.name)} --overwrite` replaces them"
                    )
                record.fetch, record.fetched_to = "fetched", str(target)
            break
        except TransportError as e:
            if tries >= len(backoff):
                return _failed(record, ex, s, f"{e}")
            time.sleep(backoff[tries])
            tries += 1
        except (OSError, landing.UnsafePath, StaxError) as e:
            return _failed(record, ex, s, f"{e}")
    record.warning = "; ".join(notes) or None
    return record


def _in_place(s: StepRun, found: Sequence[TreeEntry]) -> list[FileRecord]:
    root = Path(s.directory)
    out = []
    for e in found:
        path = landing.target(root, e.path, make_parents=False)
        size, digest = landing.sha256_of(path)
        out.append(FileRecord(path=e.path, size=size, sha256=digest, local=str(path)))
    return out


def _merge(
    old: Sequence[FileRecord], landed: Mapping[str, landing.Landed], target: Path
) -> list[FileRecord]:
    by = {r.path: r for r in old}
    for n, x in landed.items():
        by[n] = FileRecord(path=n, size=x.size, sha256=x.sha256, local=str(x.path))
    return [by[n] for n in sorted(by)]


def _failed(record: StepFiles, ex: Execution, s: StepRun, why: str) -> StepFiles:
    record.fetch = "failed"
    record.warning = (
        f"outputs of step {s.name!r} not fetched: {why}; fetch them with "
        f"`{fetch_command(ex, s.name)}`"
    )
    return record


async def stage_out(engine: Engine, run: Run, name: str) -> StepFiles | None:
    """The step's outputs gathered after its attempt completed (see :func:`collect`); None
    when it has none. Never raises (a completed step stays completed)."""
    s, step = run.steps[name], run.defs[name]
    if not step.outputs:
        return s.files
    cluster = engine.clusters.get(s.cluster)
    try:
        transport = engine._transport(cluster)
        if cluster.remote and step.fetch == "auto":  # said while it lasts (status, monitor)
            s.reason = f"fetching outputs from {cluster.name}"
            engine._commit(run, s, s.state)
        return await engine._blocking(
            functools.partial(
                collect, run.ex, step, s, cluster, transport,
                progress=engine._transfer_progress(run, s) if cluster.remote else None,
            )
        )
    except Exception as e:  # a bug must not turn a completed step into a hang
        log.exception("outputs of %s/%s", run.id, name)
        base = s.files or StepFiles(attempt=s.attempt)
        return _failed(base.model_copy(deep=True), run.ex, s, repr(e))


def warnings(steps: Sequence[StepRun]) -> list[str]:
    """The execution-level lines of the steps' file warnings."""
    return [
        f"step {s.name!r}: {s.files.warning}"
        for s in steps
        if s.files is not None and s.files.warning and s.files.attempt == s.attempt
    ]
