"""The parameters of a notebook: the assignments of its cell tagged ``parameters`` (papermill's
convention), with their defaults, types and the comment beside each. Pure: parses the
notebook's JSON with :mod:`ast`; never runs anything.

``year = 2024  # the season`` -> ``NotebookParameter(name="year", value=2024, type="int",
help="the season")``. A default that is not a literal a parameter can carry (a list, a call,
an expression) is listed with its source text and ``settable: false``: papermill can still
replace it, but not from a form field.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from .models import ParamValue

__all__ = ["NotebookParameter", "NotebookParameters", "parameters_of", "parse_parameters"]

PARAMETERS_TAG = "parameters"
ParamType = Literal["int", "float", "bool", "str", "None", "other"]


class NotebookParameter(BaseModel):
    """One assignment of the ``parameters`` cell."""

    name: str
    value: ParamValue = Field(None, description="the default (None when not a simple literal)")
    type: ParamType = Field(description="the default's type (or the annotation's)")
    text: str = Field(description="the default as written in the cell")
    help: str | None = Field(None, description="the comment on the assignment's line")
    settable: bool = Field(
        True, description="the default is a literal a parameter can carry (str/int/float/bool/None)"
    )


class NotebookParameters(BaseModel):
    """What ``GET notebook-parameters`` answers (and :func:`jupyter_stax.notebook_parameters`
    returns)."""

    path: str
    tagged: bool = Field(description="the notebook has a cell tagged 'parameters'")
    cell: int | None = Field(None, description="that cell's number, counted from 1")
    parameters: list[NotebookParameter] = Field(default_factory=list)
    kernel: str | None = Field(None, description="the notebook's kernel (kernelspec name)")
    problems: list[str] = Field(
        default_factory=list, description="what could not be read (the cell's syntax error)"
    )


_TYPES: Mapping[type, ParamType] = {bool: "bool", int: "int", float: "float", str: "str"}


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment ending that line."""
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                if text:
                    out[tok.start[0]] = text
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def parse_parameters(source: str) -> tuple[list[NotebookParameter], list[str]]:
    """The top-level assignments ``name = default`` / ``name: T = default`` of ``source``
    (later ones win), and problems (a syntax error)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [], [f"the parameters cell is not valid Python (line {e.lineno}): {e.msg}"]
    comments = _comments(source)
    found: dict[str, NotebookParameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        text = ast.get_source_segment(source, node.value) or ""
        value: Any = None
        settable = True
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            settable = False
        if settable and value is not None and type(value) not in _TYPES:
            settable, value = False, None
        kind: ParamType = "None" if value is None and settable else _TYPES.get(type(value), "other")
        if isinstance(annotation, ast.Name) and annotation.id in ("int", "float", "bool", "str"):
            kind = annotation.id  # type: ignore[assignment]
        elif not settable:
            kind = "other"
        found.pop(target.id, None)
        found[target.id] = NotebookParameter(
            name=target.id,
            value=value if settable else None,
            type=kind,
            text=text,
            help=comments.get(node.end_lineno or node.lineno),
            settable=settable,
        )
    return list(found.values()), []


def _tags(cell: Mapping[str, Any]) -> list[str]:
    tags = (cell.get("metadata") or {}).get("tags") or []
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _source(cell: Mapping[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def parameters_of(notebook: Mapping[str, Any] | str | bytes, path: str = "") -> NotebookParameters:
    """The parameters of a notebook (its JSON, parsed or as text). ValueError when it is not
    a notebook."""
    nb = json.loads(notebook) if isinstance(notebook, (str, bytes)) else notebook
    if not isinstance(nb, Mapping) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{path or 'this file'} is not a Jupyter notebook (no 'cells' list)")
    kernel = ((nb.get("metadata") or {}).get("kernelspec") or {}).get("name")
    out = NotebookParameters(
        path=path, tagged=False, kernel=kernel if isinstance(kernel, str) else None
    )
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        if PARAMETERS_TAG in _tags(cell):
            out.tagged, out.cell = True, i + 1
            out.parameters, out.problems = parse_parameters(_source(cell))
            break
    return out
