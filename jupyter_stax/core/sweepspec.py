"""Sweeps: one step over many parameter values: the sweep as data, its validation and its
instances (pure; imports nothing of jupyter_stax, so that the workflow model can use it).

A step with ``sweep`` runs once per *instance*: one combination of its swept values. The
workflow file writes it as a mapping of parameter name to values::

    sweep:
      n: [1, 2, 4, 8]             # a list of values
      seed: {range: [0, 2500]}    # 0..2499 (Python's range: start, stop[, step])
      zip: false                  # true: pair the lists (all of one length) instead of a grid

The other surfaces give the same with text (``--sweep n=1,2,4,8 --sweep seed=0..2499``, see
:func:`parse_sweep_option`) or a Python mapping (``wf.step(..., sweep={"n": [1, 2]})``).

Instance ``i`` binds each swept name to one value, exactly like a ``params`` binding: values
are data, exported as ``STAX_PARAM_<name>`` and referenced from the script (see
:mod:`.params`), never pasted into code. The instances are numbered in grid order, the first
name varying slowest (as :func:`itertools.product`); :func:`instance` computes one without
building the others, so a sweep of 100,000 instances costs nothing until it runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_INSTANCES",
    "Axis",
    "SweepError",
    "SweepSpec",
    "Value",
    "instance",
    "instances",
    "normalize",
    "spec",
]

Value = str | int | float | bool | None
#: at most this many instances in one sweep (the engine tracks each one)
MAX_INSTANCES = 100_000
#: ``pack: auto`` aims at array elements (scheduler jobs) that run at least this long ...
AUTO_PACK_JOB_SECONDS = 60.0
#: ... with instances expected to take this long when the step does not say (``expected``)
AUTO_PACK_TASK_SECONDS = 5.0
#: ... and at most this many elements per sweep (a scheduler's array limit is often 1,001)
AUTO_PACK_MAX_ELEMENTS = 1000
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = ("zip",)


class SweepError(ValueError):
    """A sweep that cannot run as written; the message says what to change."""


@dataclass(frozen=True)
class Axis:
    """One swept name and its values (a list, or a range kept as numbers)."""

    name: str
    values: tuple[Value, ...] | range

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: its axes in document order and how they combine."""

    axes: tuple[Axis, ...]
    zip: bool = False

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.axes]

    def __len__(self) -> int:
        if not self.axes:
            return 0
        if self.zip:
            return len(self.axes[0])
        return math.prod(len(a) for a in self.axes)

    def distinct(self) -> dict[str, Sequence[Value]]:
        """Each name's values (what validation checks once per value, not per instance)."""
        return {a.name: a.values for a in self.axes}

    def describe(self) -> str:
        """``n: 4 x seed: 2,500`` (grid) or ``zip of n, seed (4 each)``."""
        if self.zip:
            return f"zip of {', '.join(self.names)} ({len(self):,} each)"
        return " x ".join(f"{a.name}: {len(a):,}" for a in self.axes)


def normalize(raw: Any, *, where: str = "sweep") -> dict[str, Any]:
    """The canonical, JSON-able form of a sweep as written (what the workflow model stores):
    ``{name: [values...] | {"range": [start, stop, step]}, ..., "zip": bool}``. Raises
    :class:`SweepError` with every problem at once."""
    if not isinstance(raw, Mapping):
        raise SweepError(
            f"{where} must be a mapping of parameter name to values, e.g. "
            "{n: [1, 2, 4], seed: {range: [0, 100]}}"
        )
    problems: list[str] = []
    out: dict[str, Any] = {}
    zipped = raw.get("zip", False)
    if not isinstance(zipped, bool):
        problems.append(f"{where}: zip must be true or false, not {zipped!r}")
    for name, values in raw.items():
        if name == "zip":
            continue
        if not isinstance(name, str) or not _NAME_RE.match(name):
            problems.append(
                f"{where}: parameter name {name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
            )
            continue
        try:
            out[name] = _normalize_values(name, values, where)
        except SweepError as e:
            problems.append(str(e))
    if not out and not problems:
        problems.append(f"{where} names no parameter: give at least one, e.g. {{n: [1, 2]}}")
    if problems:
        raise SweepError("; ".join(problems))
    out["zip"] = bool(zipped)
    spec(out, where=where)  # counts, zip lengths
    return out


def _normalize_values(name: str, values: Any, where: str) -> Any:
    if isinstance(values, Mapping):
        if set(values) != {"range"}:
            raise SweepError(
                f"{where}: {name}: a mapping of values must be {{range: [start, stop]}} "
                f"(optionally [start, stop, step]), got keys {sorted(map(str, values))}"
            )
        r = values["range"]
        if (
            not isinstance(r, Sequence)
            or isinstance(r, str)
            or len(r) not in (2, 3)
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
        ):
            raise SweepError(
                f"{where}: {name}: range takes 2 or 3 integers [start, stop, step], got {r!r}"
            )
        start, stop, step = [*r, 1][:3]
        if step <= 0:
            raise SweepError(f"{where}: {name}: the step of a range must be positive, got {step}")
        if len(range(start, stop, step)) == 0:
            raise SweepError(
                f"{where}: {name}: range [{start}, {stop}] is empty (stop is excluded: "
                f"[0, 10] gives 0..9)"
            )
        return {"range": [start, stop, step]}
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        if _scalar(values):
            return [values]  # a single value: one instance along this name
        raise SweepError(
            f"{where}: {name}: values must be a list or {{range: [start, stop]}}, got "
            f"{type(values).__name__}"
        )
    if not values:
        raise SweepError(f"{where}: {name}: the list of values is empty")
    bad = [v for v in values if not _scalar(v)]
    if bad:
        raise SweepError(
            f"{where}: {name}: values must be text, numbers, true/false or null; got "
            f"{bad[0]!r}"
        )
    return list(values)


def _scalar(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return v is None or isinstance(v, (str, int, bool))


def spec(normalized: Mapping[str, Any], *, where: str = "sweep") -> SweepSpec:
    """The :class:`SweepSpec` of a normalized sweep; SweepError when the instances do not
    combine (zip of unequal lengths) or are too many."""
    axes = []
    for name, values in normalized.items():
        if name == "zip":
            continue
        if isinstance(values, Mapping):
            axes.append(Axis(name, range(*values["range"])))
        else:
            axes.append(Axis(name, tuple(values)))
    s = SweepSpec(tuple(axes), bool(normalized.get("zip", False)))
    if s.zip:
        lengths = {a.name: len(a) for a in axes}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n} has {k:,}" for n, k in lengths.items())
            raise SweepError(
                f"{where}: zip: true pairs the i-th values of every name, so all need the "
                f"same number of values, but {shown}; make them equal or drop zip for a grid"
            )
    total = len(s)
    if total > MAX_INSTANCES:
        raise SweepError(
            f"{where} has {total:,} instances ({s.describe()}); at most {MAX_INSTANCES:,} are "
            "allowed: use fewer values, or split it into several steps"
        )
    return s


def instance(s: SweepSpec, i: int) -> dict[str, Value]:
    """The values of instance ``i`` (0-based, grid order: the first name varies slowest)."""
    n = len(s)
    if not 0 <= i < n:
        raise IndexError(f"instance {i} of a sweep of {n}")
    if s.zip:
        return {a.name: a.values[i] for a in s.axes}
    out: dict[str, Value] = {}
    for a in reversed(s.axes):
        i, k = divmod(i, len(a))
        out[a.name] = a.values[k]
    return {a.name: out[a.name] for a in s.axes}


def instances(s: SweepSpec) -> Iterator[dict[str, Value]]:
    """Every instance, in index order."""
    for i in range(len(s)):
        yield instance(s, i)


