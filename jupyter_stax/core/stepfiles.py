"""A step directory's files as the sidebar lists them (path, size), and the rule that says which
one may be downloaded. Pure: the listing comes from a transport's ``list_tree`` (links never
followed); nothing here reads a file.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from .errors import BadRequest, Forbidden, NotFound
from .staging import TreeEntry

#: the most files one listing answers with (``truncated`` says when there were more)
LIST_LIMIT = 2000


class StepFile(BaseModel):
    """One regular file of a step directory."""

    path: str = Field(description="relative path in the step directory")
    size: int = Field(description="bytes")


class StepFileList(BaseModel):
    """The regular files of a step's directory (links and other entries are left out)."""

    execution_id: str
    step: str
    cluster: str
    directory: str = Field(description="the step directory on its cluster")
    files: list[StepFile] = Field(default_factory=list)
    truncated: bool = Field(False, description="more files than the listing answers with")
    links: int = Field(0, description="symbolic links left out (never followed or served)")


def listing(
    execution_id: str, step: str, cluster: str, directory: str, tree: Sequence[TreeEntry],
    limit: int = LIST_LIMIT,
) -> StepFileList:
    """The answer for a step directory whose entries are ``tree``: regular files sorted by
    path, at most ``limit`` of them."""
    regular = sorted((e for e in tree if e.kind == "f"), key=lambda e: e.path)
    return StepFileList(
        execution_id=execution_id, step=step, cluster=cluster, directory=directory,
        files=[StepFile(path=e.path, size=e.size) for e in regular[:limit]],
        truncated=len(regular) > limit,
        links=sum(1 for e in tree if e.kind == "l"),
    )


def clean_path(path: str | None) -> str:
    """The relative path asked for, checked: BadRequest when it is empty, absolute, has a
    ``..`` component or a NUL byte (it could leave the step directory)."""
    if not path or "\0" in path:
        raise BadRequest("name a file of the step directory: ?path=RELATIVE/PATH")
    if path.startswith("/"):
        raise BadRequest(f"{path!r} is absolute: paths are relative to the step directory")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise BadRequest(f"{path!r} leaves the step directory ('..' is refused)")
    return "/".join(parts)


def downloadable(path: str, step: str, tree: Sequence[TreeEntry]) -> TreeEntry:
    """The entry of ``path`` when it is a regular file of the listing (whose parents are real
    directories: ``find -P`` never descends through a link); Forbidden for a link or a path
    through one, NotFound when there is no such file."""
    by = {e.path: e for e in tree}
    e = by.get(path)
    if e is not None and e.kind == "f":
        return e
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        above = by.get("/".join(parts[:i]))
        if above is not None and above.kind == "l":
            raise Forbidden(
                f"{path!r} of step {step!r} is (or passes through) a symbolic link; jupyter_stax "
                "serves only the step's own regular files"
            )
    if e is not None:
        raise Forbidden(f"{path!r} of step {step!r} is not a regular file")
    raise NotFound(f"step {step!r} has no file {path!r} in its directory")
