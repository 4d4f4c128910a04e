"""A step's files for the sidebar: the listing (path, size) and one file's download, through
the step's cluster (its transport on a remote cluster; this machine's files otherwise).

The same rules as the log reader (:mod:`.logs`): only a regular file inside the step directory
recorded in the store is ever served. A path that is absolute or has ``..`` is a BadRequest; a
symbolic link (or a path through one) is Forbidden: on this machine the real path must stay
inside the real step directory (:func:`.logs.open_step_file`); on a remote cluster the path must
be a regular file of the directory's ``find -P`` listing (links are never followed there), and
the file then comes through the transport's tar stream (which skips anything but a regular
file) into a private temporary directory, streamed, never whole in memory.

Blocking (file IO, commands through a transport): the server calls these on worker threads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from ..core.errors import NotFound
from ..core.staging import list_local_tree
from ..core.stepfiles import StepFileList, clean_path, downloadable, listing
from .logs import open_step_file

if TYPE_CHECKING:
    from . import Operations


@dataclass
class Download:
    """One file to send: open for reading, its size and its base name; :meth:`close` it."""

    file: BinaryIO
    size: int
    name: str
    _tmp: str | None = field(default=None, repr=False)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def list_files(ops: Operations, execution_id: str, step: str) -> StepFileList:
    """The regular files of the step's directory with their sizes ([] before it exists)."""
    ex, s = ops.step(execution_id, step)
    remote = ops._remote_cluster(ex, s)
    if remote is None:
        tree = list_local_tree(Path(s.directory))
    else:
        tree = ops.transport(remote).list_tree(s.directory)
    return listing(ex.id, s.name, s.cluster or ex.cluster, s.directory, tree)


def open_download(ops: Operations, execution_id: str, step: str, path: str | None) -> Download:
    """One regular file of the step's directory, ready to be sent (see the module)."""
    rel = clean_path(path)
    ex, s = ops.step(execution_id, step)
    name = PurePosixPath(rel).name
    label = f"{rel!r} of step {s.name!r}"
    remote = ops._remote_cluster(ex, s)
    if remote is None:
        fd = open_step_file(s.directory, rel, label)
        if fd is None:
            raise NotFound(f"step {s.name!r} has no file {rel!r} in its directory")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
        return Download(f, os.fstat(f.fileno()).st_size, name)
    tr = ops.transport(remote)
    downloadable(rel, s.name, tr.list_tree(s.directory))
    tmp = tempfile.mkdtemp(prefix="stax-download-")
    try:
        got = tr.get_files(s.directory, [rel], Path(tmp))
        if rel not in got:
            raise NotFound(f"{label} is gone (or is no longer a regular file)")
        f = open(got[rel].path, "rb")  # noqa: SIM115 (closed by Download.close)
        return Download(f, got[rel].size, name, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
