"""``stax.export(func)`` / ``%stax export FILE --task NAME``: a function task as a standalone
unit, a workflow file that holds the serialized function (base64 in its one Python step) and
takes the function's arguments as workflow parameters. ``jupyter stax run FILE --param x=3``,
the REST API (``POST executions`` with the file's text and ``params``) and the notebook all
run it with new arguments; ``Execution.attach(id).result(STEP)`` reads the value.

Arguments are parameters, so they are scalars (str, int, float, bool): a parameter of the
function with such a default gives the workflow parameter's default, one without a default is
required (a run without it is refused before anything is submitted), one with another default
(None, a list ...) keeps it and is not a workflow parameter.
"""

from __future__ import annotations

import inspect
import io
import pickle
from pathlib import Path
from typing import Any

from ..core.errors import InvalidWorkflow
from ..core.functask import call_header, task_source
from .tasks import WORKFLOW_NAME, TaskFunction

__all__ = ["export"]

_SCALARS = (str, int, float, bool)


def export(
    func: TaskFunction[Any, Any],
    path: str | Path | None = None,
    *,
    params: dict[str, Any] | None = None,
) -> Path:
    """Write ``func`` (a ``@stax.task`` function) as a workflow file (default
    ``<name>.stax.yaml`` here); ``params``: defaults that replace the signature's. The path."""
    if not isinstance(func, TaskFunction):
        raise TypeError(f"stax.export takes a @stax.task function, not {type(func).__name__}")
    import cloudpickle

    name = func.step_name
    sig = inspect.signature(func.func)
    names: list[str] = []
    defaults: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise InvalidWorkflow(
                f"task {name!r}: parameter {p.name!r} is {p.kind.description}; an exported "
                "task takes its arguments by name (workflow parameters)"
            )
        if p.default is p.empty:
            names.append(p.name)
        elif isinstance(p.default, _SCALARS):
            names.append(p.name)
            defaults[p.name] = p.default
    for k, v in (params or {}).items():
        if k not in names:
            raise InvalidWorkflow(
                f"task {name!r} has no parameter {k!r} to export (it takes: {', '.join(names)})"
            )
        defaults[k] = v
    buf = io.BytesIO()
    cloudpickle.CloudPickler(buf, protocol=pickle.DEFAULT_PROTOCOL).dump((func.func, []))
    try:
        source = task_source(call_header(name, None) + buf.getvalue(), names)
    except ValueError as e:
        raise InvalidWorkflow(f"task {name!r}: {e}") from None
    step = func.step_model(name, [], None, source=source)
    from .api import Workflow

    wf = Workflow(f"{WORKFLOW_NAME}-{name}"[:64], params=defaults)
    wf._steps[name] = step
    wf.description = f"the function task {name!r} exported from a notebook (jupyter_stax)"
    out = Path(path) if path is not None else Path(f"{name}.stax.yaml")
    return wf.export(out)
