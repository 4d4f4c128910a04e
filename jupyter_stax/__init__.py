"""jupyter_stax: HPC workflows of StaX container steps from JupyterLab, notebooks and the shell.

Heavy modules (PSI/J, Jupyter server, IPython, widgets) are imported lazily, so importing this
package or :mod:`jupyter_stax.core` stays cheap.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (enabled by ``jupyter_server_config.d/jupyter_stax.json``)."""
    from .server.app import StaxApp

    return [{"module": "jupyter_stax", "app": StaxApp}]
