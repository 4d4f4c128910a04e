"""jupyter_stax: HPC workflows of StaX container steps from JupyterLab, notebooks and the shell.

Heavy modules (PSI/J, Jupyter server, IPython, widgets) are imported lazily, so importing this
package or :mod:`jupyter_stax.core` stays cheap. The public notebook/Python API
(:class:`Workflow`, :class:`Execution`, and the function tasks: :func:`task`, :func:`gather`,
:func:`futures_execution`) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .core.functask import PythonMismatch, ResultRefused
    from .kernel.api import Execution, Workflow, connect
    from .kernel.notebooks import notebook_parameters, run_notebook
    from .kernel.taskexport import export
    from .kernel.tasks import (
        TaskFailed,
        TaskFuture,
        UpstreamFailed,
        batch,
        futures_execution,
        gather,
        task,
    )

__all__ = [
    "Execution",
    "PythonMismatch",
    "ResultRefused",
    "TaskFailed",
    "TaskFuture",
    "UpstreamFailed",
    "Workflow",
    "__version__",
    "batch",
    "connect",
    "export",
    "futures_execution",
    "gather",
    "notebook_parameters",
    "run_notebook",
    "task",
]

_LAZY = {
    "Workflow": "kernel.api",
    "Execution": "kernel.api",
    "connect": "kernel.api",
    "run_notebook": "kernel.notebooks",
    "notebook_parameters": "kernel.notebooks",
    "PythonMismatch": "core.functask",
    "ResultRefused": "core.functask",
    "export": "kernel.taskexport",
    **{
        name: "kernel.tasks"
        for name in (
            "task", "TaskFuture", "TaskFailed", "UpstreamFailed", "batch",
            "futures_execution", "gather",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (enabled by ``jupyter_server_config.d/jupyter_stax.json``)."""
    from .server.app import StaxApp

    return [{"module": "jupyter_stax", "app": StaxApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension (built from the top-level ``labextension/`` sources into
    ``jupyter_stax/labextension``)."""
    return [{"src": "labextension", "dest": "jupyter-stax"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_stax``: the ``%%stax_task``, ``%stax_submit`` and ``%stax`` magics."""
    from .kernel.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .kernel.magics import unload_ipython_extension as unload

    unload(ipython)


