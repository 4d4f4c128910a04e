"""jupyter_stax: HPC workflows of StaX container steps from JupyterLab, notebooks and the shell.

Heavy modules (PSI/J, Jupyter server, IPython, widgets) are imported lazily, so importing this
package or :mod:`jupyter_stax.core` stays cheap.
"""

from ._version import __version__

__all__ = ["__version__"]
