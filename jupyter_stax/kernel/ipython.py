"""Typed doors to IPython (its functions carry no annotations): the current shell, display."""

from __future__ import annotations

from typing import Any


def shell() -> Any:
    """The running IPython shell, or None outside IPython."""
    from IPython.core import getipython

    get: Any = getipython.get_ipython  # typed in IPython 9, not in 8
    return get()


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (a frontend that may render widgets)."""
    sh = shell()
    return sh is not None and getattr(sh, "kernel", None) is not None


def show(*objs: Any, raw: bool = False) -> None:
    from IPython import display as ipd

    display: Any = ipd.display
    display(*objs, raw=raw)
