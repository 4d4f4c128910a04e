"""Notebooks as steps from Python (issue 16; the step itself: :mod:`jupyter_stax.core.notebooks`):

>>> import jupyter_stax as stax
>>> stax.notebook_parameters("analysis.ipynb").parameters   # the cell tagged `parameters`
[NotebookParameter(name='year', value=2023, type='int', ...)]
>>> run = stax.run_notebook("analysis.ipynb", cluster="slurm", params={"year": 2024})
>>> run.wait().executed_notebook()          # beside the original, outputs and errors in place
PosixPath('/home/me/analysis.3fa2b1c4.ipynb')

``%stax_submit --notebook analysis.ipynb --param year=2024`` is the magic of the same call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..core.errors import NotFound
from ..core.models import ParamValue
from ..core.nbparams import NotebookParameters
from ..service import StaxService
from .api import Execution, Workflow, _resolve

__all__ = ["notebook_parameters", "run_notebook"]


def notebook_parameters(path: str | Path) -> NotebookParameters:
    """The parameters of the notebook ``path`` (its cell tagged ``parameters``): names,
    defaults, types and the comment beside each. NotFound / BadRequest when the file is
    missing or not a notebook."""
    from ..operations.notebooks import read_parameters

    return read_parameters(Path(path).expanduser(), str(path))


def step_name(path: str | Path) -> str:
    """A step (and workflow) name from a notebook's file name: ``My analysis.ipynb`` ->
    ``My-analysis``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-._")[:64]
    return stem or "notebook"


def run_notebook(
    notebook: str | Path,
    *,
    cluster: str | None = None,
    params: Mapping[str, ParamValue] | None = None,
    image: str | None = None,
    name: str | None = None,
    inputs: Iterable[str | Mapping[str, str]] = (),
    outputs: Iterable[str] = (),
    retries: int = 0,
    env: Mapping[str, str] | None = None,
    nodes: int | None = None,
    cpus_per_task: int | None = None,
    gpus: int | None = None,
    memory: str | None = None,
    time: str | None = None,
    service: StaxService | None = None,
) -> Execution:
    """Run the notebook ``notebook`` (a path here; relative: to the current directory) on
    ``cluster`` as a one-step workflow, ``params`` injected after its cell tagged
    ``parameters``; returns the Execution at once. When it ends, its executed copy (outputs,
    errors in place) is :meth:`Execution.executed_notebook`. Parameters the notebook does not
    declare are injected too (papermill warns in the step's log)."""
    spec = str(notebook)
    if not Path(spec).expanduser().is_file():
        raise NotFound(f"notebook {spec!r}: no such file (relative paths start at {Path.cwd()})")
    step = name or step_name(spec)
    wf = Workflow(step)
    wf.step(  # InvalidWorkflow naming every bad argument
        step,
        notebook=spec,
        params=dict(params or {}),
        image=image,
        inputs=inputs,
        outputs=outputs,
        retries=retries,
        env=env,
        nodes=nodes,
        cpus_per_task=cpus_per_task,
        gpus=gpus,
        memory=memory,
        time=time,
    )
    return wf.submit(cluster, service=_resolve(service))
