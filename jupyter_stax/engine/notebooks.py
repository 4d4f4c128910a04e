"""The executed notebook of a notebook step comes back (issue 16; see
:mod:`jupyter_stax.core.notebooks` for the step itself).

When the step's attempt ends (completed, failed or canceled: a failed notebook is the one worth
reading) the copy papermill wrote in the step directory, ``analysis.<execution id>.ipynb``,
is copied through the cluster's transport (a local cluster, Slurm on a shared file system
and a remote cluster over SSH alike) to:

* beside the original notebook, under the same name (it names the execution, so it never
  replaces a file of another run; a retry of the same execution replaces its own);
* ``<outputs dir>/<execution id>/<step>/`` when the original's directory is not writable (a
  shared, read-only notebook); ``files.warning`` says so.

The local path is recorded as the step's ``files.notebook`` before the final state is
committed, so whoever hears the step ended can open it. A copy that cannot be made (the
cluster does not answer, the notebook never started) keeps the step's state and says why in
``files.warning``. Blocking parts run on a worker thread.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..core.errors import StaxError
from ..core.models import Cluster, Execution, Step, StepRun
from ..core.notebooks import executed_path_in_step, original_path
from ..core.staging import StepFiles
from . import landing
from .staging import outputs_root
from .transport import Transport, TransportError

if TYPE_CHECKING:
    from .engine import Engine
    from .runstate import Run

log = logging.getLogger("jupyter_stax.engine")


def destination(ex: Execution, step: Step, s: StepRun) -> tuple[Path, str | None]:
    """Where the executed copy goes here, and a note when that is not beside the original."""
    assert step.notebook is not None
    beside = original_path(step.notebook, ex.options.base_dir).parent
    if beside.is_dir() and os.access(beside, os.W_OK | os.X_OK):
        return beside, None
    fallback = outputs_root(ex) / s.name
    return fallback, (
        f"the notebook's directory {beside} is gone or not writable: its executed copy is in "
        f"{fallback}"
    )


def collect(
    ex: Execution,
    step: Step,
    s: StepRun,
    cluster: Cluster,
    transport: Transport,
    base: StepFiles | None = None,
) -> StepFiles:
    """The step's files record (``base``, else the step's) with ``notebook`` set to the
    executed copy here (copied from the step directory), or a warning saying why it is not.
    Never raises. Blocking."""
    assert step.notebook is not None
    base = base if base is not None else s.files
    record = (
        base.model_copy(deep=True)
        if base is not None and base.attempt == s.attempt
        else StepFiles(attempt=s.attempt)
    )
    rel = PurePosixPath(executed_path_in_step(step.notebook, ex.id))
    src_dir = str(PurePosixPath(s.directory) / rel.parent)
    dest, note = destination(ex, step, s)
    why = None
    try:
        # asked for only when there (the SSH transport fails on a missing name)
        there = any(e.path == rel.name and e.kind == "f" for e in transport.list_tree(src_dir))
        landed = transport.get_files(src_dir, [rel.name], dest, overwrite=True) if there else {}
        got = landed.get(rel.name)
        if got is None:
            why = (
                f"the executed notebook {rel} is not in the step directory on {cluster.name} "
                "(the notebook did not start: see the step's stderr)"
            )
        else:
            record.notebook = str(got.path)
    except (TransportError, OSError, landing.UnsafePath, StaxError) as e:
        why = f"the executed notebook {rel} was not copied from {cluster.name}: {e}"
    notes = [n for n in (record.warning, note if why is None else None, why) if n]
    record.warning = "; ".join(notes) or None
    return record


async def bring_back(
    engine: Engine, run: Run, name: str, base: StepFiles | None = None
) -> StepFiles | None:
    """:func:`collect` for the step ``name`` of ``run`` (event loop side; ``base``: the files
    record its outputs made). Never raises."""
    s, step = run.steps[name], run.defs[name]
    try:
        cluster = engine.clusters.get(s.cluster)
        transport = engine._transport(cluster)
        files: StepFiles = await engine._blocking(
            collect, run.ex, step, s, cluster, transport, base
        )
        return files
    except Exception:  # a bug must not keep the step from ending
        log.exception("executed notebook of %s/%s", run.id, name)
        return base if base is not None else s.files
