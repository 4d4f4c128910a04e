"""jupyter_stax in the kernel: the Python API (``stax.connect``, :mod:`.api`), the magics
(:mod:`.magics`, loaded by ``%load_ext jupyter_stax``), displays of executions, and the monitor
and picker widgets. All of them talk to a :class:`~jupyter_stax.service.StaxService`: the Jupyter
server's REST API when a server serves the store, else the local store.

Import-light: importing this package imports neither IPython nor ipywidgets; the names below
load their module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .display import execution_html, execution_text
    from .monitor import Monitor

__all__ = ["Monitor", "execution_html", "execution_text"]

_LAZY = {
    "Monitor": "monitor",
    "execution_html": "display",
    "execution_text": "display",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
