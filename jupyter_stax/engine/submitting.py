"""Writing the files of many step attempts on their cluster in one call (the first half of a
submission; the second is ``Backend.submit_many``).

:func:`write_attempts` is what the engine's write :class:`~.coalesce.Batcher` of a cluster runs
for the attempts that became ready together: each attempt's scripts are rendered here
(:func:`.planning.attempt_files`), then ONE :meth:`~.transport.Transport.write_steps` makes every
step directory, keeps the files of earlier attempts (``<name>.<attempt>``) and writes the
scripts. A step with inputs is staged after that (:func:`.staging.stage_in`, its own transfers)
and its scripts are written after its inputs (one more call for all such steps), as before:
an input never replaces a script.

Blocking: runs on a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import jobscript as js
from ..core.models import Cluster, StepRun
from ..core.staging import StepFiles
from . import planning, staging
from .runstate import Run
from .transport import ClusterPath, FileSpec

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True)
class Attempt:
    """An attempt to write: the step ``s`` of ``run`` as attempt ``attempt`` on ``cluster``
    (``guarded``: its job script checks its upstream steps' exit records, detached mode)."""

    run: Run
    s: StepRun
    cluster: Cluster
    attempt: int
    guarded: bool


@dataclass(frozen=True)
class Written:
    """What an attempt's submission needs: its job script (on the cluster), the container
    runtime's scheduler directives, and the record of its inputs (None: no inputs/outputs)."""

    job_script: Path
    directives: dict[str, str]
    staged: StepFiles | None
    task_env: dict[str, str] | None = None
    """a function task the engine may hand to the warm task worker (see
    :func:`~..core.jobscript.direct_task_env`)"""


def write_attempts(engine: Engine, items: list[Attempt]) -> list[Written | Exception]:
    """Write the attempts' files (see the module docstring); for each, what its submission
    needs, or the exception that is its own (a TransportError: the cluster did not answer,
    try again; StageInFailed; a broken cluster set-up). All attempts are on ONE cluster."""
    out: list[Written | Exception] = []
    dirs: list[ClusterPath] = []
    moves: list[tuple[ClusterPath, ClusterPath]] = []
    files: dict[ClusterPath, FileSpec] = {}
    after_inputs: dict[int, dict[ClusterPath, FileSpec]] = {}
    if not items:
        return out
    cluster = items[0].cluster
    transport = engine._transport(cluster)
    for i, a in enumerate(items):
        try:
            d = Path(a.s.directory)
            step = a.run.defs[a.s.name]
            plan = planning.container_plan(
                a.run.ex, step, a.s, a.cluster,
                planning.cluster_work_dir(engine.clusters, a.cluster, engine.store),
            )
            required = planning.required_upstream(a.run.ex, step) if a.guarded else ()
            mine = planning.attempt_files(a.run.ex, step, a.s, a.cluster, a.attempt, plan,
                                          required)
            direct = planning.direct_task_env(a.run.ex, step, a.cluster, a.attempt, plan,
                                              required, d)
            out.append(Written(d / js.JOB_SCRIPT, planning.directives(plan, step), None,
                               direct))
        except Exception as e:  # this step's set-up is broken: its own failure
            out.append(e)
            continue
        dirs.append(d)
        moves += planning.earlier_attempt_moves(d, a.attempt)
        if step.inputs:
            after_inputs[i] = mine
        else:
            files.update(mine)
    if not dirs:
        return out
    ok = [i for i, w in enumerate(out) if isinstance(w, Written)]
    try:
        transport.write_steps(dirs, moves, files)
    except Exception as e:  # every attempt of the call: the cluster did not answer, or refused
        for i in ok:
            out[i] = e
        return out
    later: dict[ClusterPath, FileSpec] = {}
    staged: list[int] = []
    for i in ok:
        a = items[i]
        try:
            record = staging.stage_in(a.run.ex, a.run.defs[a.s.name], a.s, a.cluster, a.attempt,
                                      engine._cluster_transport,
                                      engine._transfer_progress(a.run, a.s))
        except Exception as e:
            out[i] = e
            continue
        w = out[i]
        assert isinstance(w, Written)
        out[i] = replace(w, staged=record)
        if i in after_inputs:
            later.update(after_inputs[i])
            staged.append(i)
    if later:
        try:
            transport.write_files(later)
        except Exception as e:
            for i in staged:
                out[i] = e
    return out
