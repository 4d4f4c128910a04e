"""Sweeps: one step over many parameter values (pure; no I/O).

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

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .assignments import parse_value
from .models import Execution, SweepSummary

__all__ = [
    "MAX_INSTANCES",
    "SweepError",
    "SweepSpec",
    "Value",
    "auto_pack",
    "instance",
    "instances",
    "normalize",
    "parse_sweep_option",
    "plan_elements",
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
_RANGE_TEXT_RE = re.compile(r"^\s*(-?[0-9]+)\s*\.\.\s*(-?[0-9]+)\s*(?::\s*([0-9]+)\s*)?$")
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


# ---------------------------------------------------------------------- text form
def parse_sweep_option(items: Sequence[str], *, where: str = "--sweep") -> dict[str, Any]:
    """``["n=1,2,4", "seed=0..2499"]`` -> a normalized sweep (SweepError when one is wrong).

    ``NAME=A,B,C``: a list, each value typed as ``--param`` values are
    (:func:`.assignments.parse_value`); ``NAME=START..END`` (or ``START..END:STEP``):
    integers from START to END *inclusive*; ``NAME=[...]``: a JSON list (for values holding a
    comma). ``zip`` (alone, or ``zip=true``) pairs the lists instead of a grid."""
    raw: dict[str, Any] = {}
    for item in items:
        name, eq, text = item.partition("=")
        name = name.strip()
        if name == "zip" and (not eq or text.strip().lower() in ("true", "1", "yes")):
            raw["zip"] = True
            continue
        if not eq or not name:
            raise SweepError(
                f"{where} expects NAME=VALUES (e.g. n=1,2,4 or seed=0..99), got {item!r}"
            )
        if name in raw:
            raise SweepError(f"{where}: {name} is given twice; put all its values in one")
        raw[name] = _values_text(name, text, where)
    return normalize(raw, where=where)


def _values_text(name: str, text: str, where: str) -> Any:
    m = _RANGE_TEXT_RE.match(text)
    if m:
        start, end = int(m[1]), int(m[2])
        step = int(m[3]) if m[3] else 1
        if end < start:
            raise SweepError(f"{where}: {name}={text}: the end of a range comes before its start")
        return {"range": [start, end + 1, step]}
    if text.strip().startswith("["):
        try:
            values = json.loads(text)
        except ValueError as e:
            raise SweepError(f"{where}: {name}: not a JSON list: {e}") from None
        if not isinstance(values, list):
            raise SweepError(f"{where}: {name}: not a JSON list")
        return values
    return [parse_value(v) for v in text.split(",")]


def to_option(normalized: Mapping[str, Any]) -> list[str]:
    """The ``--sweep`` items of a normalized sweep (the inverse of :func:`parse_sweep_option`)."""
    items = []
    for name, values in normalized.items():
        if name == "zip":
            continue
        if isinstance(values, Mapping):
            start, stop, step = values["range"]
            last = range(start, stop, step)[-1]
            items.append(f"{name}={start}..{last}" + (f":{step}" if step != 1 else ""))
        else:
            items.append(f"{name}={json.dumps(values)}")
    if normalized.get("zip"):
        items.append("zip")
    return items


# ---------------------------------------------------------------------- packing
Pack = int | Literal["auto"]


def auto_pack(
    count: int,
    expected_seconds: float | None = None,
    *,
    job_seconds: float = AUTO_PACK_JOB_SECONDS,
    max_elements: int = AUTO_PACK_MAX_ELEMENTS,
) -> int:
    """Instances per scheduler job for ``pack: auto``: enough that a job runs about
    ``job_seconds`` (short tasks do not cost a job each), and few enough jobs
    (``max_elements``); 1 for instances expected to run longer than ``job_seconds``."""
    if count <= 0:
        return 1
    per_task = expected_seconds if expected_seconds and expected_seconds > 0 else None
    by_time = math.ceil(job_seconds / (per_task or AUTO_PACK_TASK_SECONDS))
    by_count = math.ceil(count / max_elements)
    return max(1, min(count, max(by_time, by_count)))


def plan_elements(indices: Sequence[int], pack: int) -> list[list[int]]:
    """The instances each array element runs: consecutive groups of ``pack``."""
    if pack < 1:
        raise SweepError(f"pack must be at least 1, got {pack}")
    return [list(indices[k : k + pack]) for k in range(0, len(indices), pack)]


def element_cap(max_parallel: int | None, per_element: int) -> int | None:
    """The array's ``%`` limit (elements running at once) that keeps at most ``max_parallel``
    instances running when each element runs ``per_element`` of them at once."""
    if max_parallel is None:
        return None
    return max(1, max_parallel // max(1, per_element))


# ---------------------------------------------------------------------- files
#: the instances of each array element, one line per element: ``stax.elements.<attempt>``
ELEMENTS_FILE = "stax.elements"
#: the script each array element (or the one job of a sweep) runs: ``stax.array.<attempt>.sh``
RUNNER = "stax.array"
#: the sweep's summary, rewritten by the engine as instances end (read by status surfaces)
SUMMARY_FILE = "stax.sweep.json"


def elements_text(elements: Sequence[Sequence[int]]) -> str:
    """The elements file: line ``k`` lists the instance indices of element ``k``."""
    return "".join(" ".join(map(str, e)) + "\n" for e in elements)


def render_runner(
    *,
    step_dir: str,
    attempt: int,
    offset: int,
    width: int,
    cpus_per_instance: int | None,
    array: bool,
) -> str:
    """The bash script of one array element (``array``: element ``offset +
    $SLURM_ARRAY_TASK_ID``) or of the whole sweep in one job (every element in turn).

    It runs the instances listed for its element(s) in ``stax.elements.<attempt>``, each in a
    subshell (a fork, no new bash) that enters ``<i>/`` and sources its ``stax.job.sh`` (which
    writes the instance's own start and exit records; its output goes to ``<i>/stax.out``,
    ``<i>/stax.err``; its ``exit`` ends only that subshell), at most ``width`` at once
    and, unless ``cpus_per_instance`` is None (a local run), never more than the CPUs of
    the allocation allow (``cpus_per_instance`` each).
    The instance indices are integers written by the engine: no value of the sweep is in this
    script or in the elements file. It exits 0: the instances' exit records are the outcome."""
    import shlex

    q = shlex.quote
    elements = f"{ELEMENTS_FILE}.{attempt}"
    pick = (
        f'_stax_k=$(( {offset} + ${{SLURM_ARRAY_TASK_ID:?not an array element}} ))\n'
        f'sed -n "$((_stax_k + 1))p" {elements}'
        if array
        else f"cat {elements}"
    )
    parallel = f"_stax_par={width}\n"
    if cpus_per_instance is not None:
        parallel = (
            "_stax_cpus=${SLURM_CPUS_ON_NODE:-${NSLOTS:-${PBS_NCPUS:-"
            "$(nproc 2>/dev/null || echo 1)}}}\n"
            f"_stax_par=$(( _stax_cpus / {cpus_per_instance} ))\n"
            '[ "$_stax_par" -ge 1 ] || _stax_par=1\n'
            f'[ "$_stax_par" -le {width} ] || _stax_par={width}\n'
        )
    return f"""#!/bin/bash
# jupyter_stax sweep runner, attempt {attempt}: the instances of {'one array element' if array
    else 'every element'} (see {elements}), each in its own directory.
cd -P -- {q(step_dir)} || {{ echo 'jupyter_stax: cannot enter step directory' >&2; exit 126; }}
{parallel}{pick} | tr ' ' '\\n' | {{
  _stax_n=0
  while read -r _stax_i; do
    case $_stax_i in ''|*[!0-9]*) continue;; esac
    if [ "$_stax_n" -ge "$_stax_par" ]; then wait -n; _stax_n=$((_stax_n - 1)); fi
    ( cd -P -- "$_stax_i" && . ./stax.job.sh >stax.out 2>stax.err ) </dev/null &
    _stax_n=$((_stax_n + 1))
  done
  wait
}}
exit 0
"""


def read_summary(step_dir: str | Path) -> SweepSummary | None:
    """The summary the engine last wrote in a sweep step's directory (None: none yet, or the
    directory is not on this machine: a remote cluster's)."""
    try:
        return SweepSummary.model_validate_json((Path(step_dir) / SUMMARY_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def fill_summaries(ex: Execution) -> Execution:
    """Set each sweep step's :attr:`~.models.StepRun.sweep` from its summary file."""
    for s in ex.steps:
        try:
            sweep = ex.workflow.step(s.name).sweep
        except KeyError:
            continue
        if sweep is not None and s.sweep is None:
            s.sweep = read_summary(s.directory)
    return ex


# ---------------------------------------------------------------------- listing instances
_ORDER = {"failed": 0, "lost": 0, "canceled": 1, "running": 2, "waiting": 3, "completed": 4}


def instance_states(
    total: int,
    attempt: int,
    records: Sequence[tuple[Any, Any]],
    summary: SweepSummary | None,
) -> list[tuple[str, int | None, int]]:
    """``(state, exit code, attempt)`` of each instance from its ``(start, exit)`` records
    (``jobscript`` StartRecord/ExitRecord or None) and the engine's summary (which alone knows
    the instances that were lost or canceled)."""
    known = {f.index: f for f in summary.failed} if summary is not None else {}
    out: list[tuple[str, int | None, int]] = []
    for i in range(total):
        start, end = records[i]
        if end is not None:
            code = end.exit_code
            out.append(("completed" if code == 0 else "failed", code, end.attempt))
        elif i in known and known[i].state in ("lost", "canceled"):
            out.append((known[i].state, None, attempt))
        elif start is not None and start.attempt == attempt:
            out.append(("running", None, start.attempt))
        else:
            out.append(("waiting", None, start.attempt if start is not None else 0))
    return out


def page_order(states: Sequence[tuple[str, int | None, int]], state: str | None) -> list[int]:
    """The instance indices to list: those in ``state`` (all when None), the ones that did not
    complete first, then by index."""
    picked = [i for i, st in enumerate(states) if state is None or st[0] == state]
    return sorted(picked, key=lambda i: (_ORDER.get(states[i][0], 5), i))
