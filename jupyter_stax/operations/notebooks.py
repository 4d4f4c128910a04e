"""Reading a notebook's parameters (its cell tagged ``parameters``, see
:mod:`jupyter_stax.core.nbparams`) for the kernel API and ``GET notebook-parameters`` (the
"Run on a cluster..." form of JupyterLab). Over the network the path is one of the server's
root directory (the tree the same user reads through Jupyter's contents API): anything outside
it is refused, as for every file named in a request (:mod:`.requests`)."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import BadRequest, NotFound
from ..core.nbparams import NotebookParameters, parameters_of
from .requests import check_inside

#: a notebook larger than this is not read for its parameters
MAX_NOTEBOOK_BYTES = 64 << 20


def read_parameters(path: Path, shown: str | None = None) -> NotebookParameters:
    """The parameters of the notebook at ``path`` (``shown``: its name in answers and
    messages). NotFound when missing; BadRequest when not a readable notebook."""
    name = shown if shown is not None else str(path)
    try:
        if not path.is_file():
            if path.exists():
                raise BadRequest(f"notebook {name!r} is not a file")
            raise NotFound(f"notebook {name!r}: no such file")
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise BadRequest(f"notebook {name!r} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB")
        data = path.read_bytes()
    except (OSError, ValueError) as e:  # unreadable, or not a path (a NUL byte)
        raise BadRequest(f"notebook {name!r} cannot be read: {e}") from None
    try:
        return parameters_of(data, name)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadRequest(f"{name!r} is not a Jupyter notebook: {e}") from None


def parameters_in_root(text: str | None, root: str | None) -> NotebookParameters:
    """``GET notebook-parameters?path=TEXT``: TEXT relative to ``root`` (as the contents API
    names files), or absolute inside it; Forbidden outside it."""
    if not text or not text.strip():
        raise BadRequest("path is required: the notebook's path (relative to the server's root)")
    if not text.endswith(".ipynb"):
        raise BadRequest(f"path {text!r} is not an .ipynb file")
    if "\0" in text:
        raise BadRequest("path contains a NUL byte")
    base = Path(root) if root else Path.cwd()
    given = Path(text).expanduser() if root is None else Path(text)
    path = given if given.is_absolute() else base / given
    if root is not None:
        check_inside(root, [("path", path)])
    return read_parameters(path, text)
