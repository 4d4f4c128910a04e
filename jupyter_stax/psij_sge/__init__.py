"""A PSI/J executor for Grid Engine (Son of Grid Engine, Univa/Altair Grid Engine).

Registered with PSI/J as ``sge`` (and ``gridengine``) by ``psij-descriptors/
jupyter_stax_descriptors.py``, which the jupyter-stax wheel installs next to PSI/J's own
descriptors (an editable install exposes it from the checkout, which is on ``sys.path``)::

    import psij
    ex = psij.JobExecutor.get_instance("sge", config=SgeExecutorConfig(parallel_environment="mpi"))

Where the descriptor is not on ``sys.path`` (e.g. this package copied without it),
:func:`register` registers the executor programmatically.

:mod:`.parse` (Grid Engine's output and directive syntax) imports no PSI/J; this package
imports PSI/J only when :class:`SgeJobExecutor` or :class:`SgeExecutorConfig` is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .executor import SgeExecutorConfig, SgeJobExecutor

__all__ = ["NAMES", "SgeExecutorConfig", "SgeJobExecutor", "register"]

#: the names PSI/J knows the executor by
NAMES = ("sge", "gridengine")
#: the version the descriptor registers
VERSION = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("SgeJobExecutor", "SgeExecutorConfig"):
        from . import executor

        return getattr(executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    """Register the executor with PSI/J under :data:`NAMES` unless PSI/J knows it already (from
    the descriptor)."""
    import os

    import psij
    from packaging.version import Version
    from psij.descriptor import Descriptor

    known = set(psij.JobExecutor.get_executor_names())
    # PSI/J loads the class from <root>/jupyter_stax/psij_sge/executor.py
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name in NAMES:
        if name not in known:
            psij.JobExecutor.register_executor(
                Descriptor(
                    name=name,
                    nice_name="Grid Engine",
                    version=Version(VERSION),
                    cls="jupyter_stax.psij_sge.executor.SgeJobExecutor",
                ),
                root,
            )
