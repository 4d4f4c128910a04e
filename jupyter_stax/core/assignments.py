"""``KEY=VALUE`` assignments as every surface takes them: ``--param`` (and ``--env``) of
``jupyter stax`` and of the magics, and the parameter lines of the picker. One parser, so a
value binds with the same type wherever it was typed (a Python step sees the difference).

The rule for a value (the text after the first ``=``), :func:`parse_value`:

* a JSON number (``10``, ``-3``, ``1.5``, ``2e3``) is an int or a float, ``true``/``false`` a
  bool;
* a JSON string in double quotes (``"10"``) is its content, as text: the way to pass text that
  looks like a number (on a shell line: ``--param 'n="10"'``);
* anything else is the text as written, never evaluated: ``null``, ``[1, 2]``, ``{}``, ``NaN``,
  ``1e999`` (not a finite number), ``x y``, ``$(id)``.

Whitespace around the value does not change its type (`` 10`` is 10); text keeps it as typed.
The REST API takes parameters as a JSON object, so there the JSON type is the type.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

from .models import ParamValue

__all__ = [
    "AssignmentError",
    "parse_assignments",
    "parse_value",
    "split_assignment",
    "text_assignments",
]

#: JSON's number grammar (RFC 8259), nothing more (no ``+1``, ``.5``, ``0x10``, ``1_000``)
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS: dict[str, bool] = {"true": True, "false": False}


class AssignmentError(ValueError):
    """``item`` is not ``KEY=VALUE`` (no ``=``, or nothing before it)."""

    def __init__(self, item: str) -> None:
        super().__init__(f"expected NAME=VALUE, got {item!r}")
        self.item = item


def parse_value(text: str) -> ParamValue:
    """The typed value of ``text`` by the rule of this module (never evaluated)."""
    s = text.strip()
    if s in _LITERALS:
        return _LITERALS[s]
    if _NUMBER_RE.fullmatch(s):
        if re.fullmatch(r"-?[0-9]+", s):
            return int(s)
        number = float(s)
        return number if math.isfinite(number) else text
    if len(s) >= 2 and s[0] == s[-1] == '"':
        try:
            value = json.loads(s)
        except ValueError:
            return text
        if isinstance(value, str):
            return value
    return text


def split_assignment(item: str) -> tuple[str, str]:
    """``("KEY", "VALUE")`` of ``KEY=VALUE``: the key without surrounding whitespace, the value
    as given (it may hold ``=``). AssignmentError when there is no ``=`` or no key."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise AssignmentError(item)
    return key.strip(), value


def parse_assignments(items: Iterable[str]) -> dict[str, ParamValue]:
    """``{KEY: value}`` of ``KEY=VALUE`` items, a later KEY winning, values typed by
    :func:`parse_value`. AssignmentError on the first item that is not an assignment."""
    return {key: parse_value(value) for key, value in map(split_assignment, items)}


def text_assignments(items: Iterable[str]) -> dict[str, str]:
    """:func:`parse_assignments` with every value kept as text (environment variables)."""
    return dict(map(split_assignment, items))
