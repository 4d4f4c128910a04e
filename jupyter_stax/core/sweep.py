"""Sweeps: one step over many parameter values. The sweep as data, its validation and its
instances are in :mod:`.sweepspec` (re-exported here); this module adds the text form of
``--sweep``, packing, the files of a sweep's attempt (its elements and runner script), its
summary and the listing of its instances.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .assignments import parse_value
from .models import Execution, SweepSummary
from .sweepspec import (
    AUTO_PACK_JOB_SECONDS,
    AUTO_PACK_MAX_ELEMENTS,
    AUTO_PACK_TASK_SECONDS,
    MAX_INSTANCES,
    Axis,
    SweepError,
    SweepSpec,
    Value,
    instance,
    instances,
    normalize,
    spec,
)

__all__ = [
    "MAX_INSTANCES",
    "Axis",
    "SweepError",
    "SweepSpec",
    "Value",
    "auto_pack",
    "instance",
    "instances",
    "normalize",
    "parse_sweep_option",
    "plan_elements",
    "spec",
]

_RANGE_TEXT_RE = re.compile(r"^\s*(-?[0-9]+)\s*\.\.\s*(-?[0-9]+)\s*(?::\s*([0-9]+)\s*)?$")


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


def balanced(count: int, pack: int) -> int:
    """The smallest pack that needs no more elements than ``pack`` does: ``count``
    instances in elements of equal size (10,000 by 6,000 is 6,000 + 4,000: the sweep ends
    with the larger one; 5,000 + 5,000 ends sooner)."""
    if count <= 0 or pack <= 0:
        return max(1, pack)
    return math.ceil(count / math.ceil(count / pack))


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
    """The elements file: line ``k`` lists the instance indices of element ``k``, a run of
    consecutive ones as ``FIRST-LAST`` (a first attempt's element is one such range: its
    runner loops over a counter, not over thousands of words)."""
    return "".join(" ".join(_runs(e)) + "\n" for e in elements)


def _runs(indices: Sequence[int]) -> list[str]:
    out: list[str] = []
    k = 0
    while k < len(indices):
        j = k
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        out.append(str(indices[k]) if j == k else f"{indices[k]}-{indices[j]}")
        k = j + 1
    return out


def parse_elements(text: str) -> list[list[int]]:
    """The elements of :func:`elements_text` (ValueError when a word is not an index or a
    range of them)."""
    out: list[list[int]] = []
    for line in text.splitlines():
        element: list[int] = []
        for word in line.split():
            first, dash, last = word.partition("-")
            if dash:
                element.extend(range(int(first), int(last) + 1))
            else:
                element.append(int(word))
        out.append(element)
    return out


#: the 0-based index of the running array element, per scheduler (bash)
SLURM_INDEX = "${SLURM_ARRAY_TASK_ID:?not an array element}"
#: Grid Engine numbers tasks from 1 (``qsub -t 1-N``)
SGE_INDEX = "$(( ${SGE_TASK_ID:?not an array element} - 1 ))"
PBS_INDEX = "${PBS_ARRAY_INDEX:?not an array element}"


def render_runner(
    *,
    step_dir: str,
    attempt: int,
    offset: int,
    width: int,
    cpus_per_instance: int | None,
    array: bool | str,
    required: Sequence[Path | tuple[Path, int]] = (),
    claims_in_step_dir: bool = False,
) -> str:
    """The bash script of one array element (``array``: element ``offset + index``, where
    ``index`` is the bash expression of the element's 0-based index, :data:`SLURM_INDEX`
    when ``array`` is True) or of the whole sweep in one job (every element in turn).

    It runs the instances listed for its element(s) in ``stax.elements.<attempt>``, at most
    ``width`` at once and, unless ``cpus_per_instance`` is None (a local run), never more
    than the CPUs of the allocation allow (``cpus_per_instance`` each). It starts that many
    *lanes* (subshells, once per element); each lane takes the next instance nobody took
    (a claim: a file created with noclobber in a private directory, removed at the end;
    instances start in list order, give or take the width), runs it as ONE process (a
    subshell, no new bash) that sources ``<i>/stax.job.sh`` (which enters ``<i>/``, writes
    the start record and sources the step's script; output to ``<i>/stax.out``,
    ``<i>/stax.err``; ``exit`` and ``exec`` end only that process), then writes the
    instance's exit record with the process's exit status (``claims_in_step_dir``: the
    claims' directory is made in the step directory, for a run on a workstation, whose
    cancel may be a kill -9; else in the job's own temporary directory under Grid Engine and
    PBS, /dev/shm or the node's temporary directory otherwise; removed on exit and on
    SIGTERM). So an instance costs one fork
    and no program start: no ``sed``, ``cat`` or ``wait -n`` per instance.
    ``required``: upstream steps that must have completed (detached mode, see
    :func:`.jobscript.upstream_check`), checked once per element; when one did not, each of
    the element's instances gets a ``skipped`` exit record and none runs.
    The instance indices are integers written by the engine: no value of the sweep is in this
    script or in the elements file. It exits 0: the instances' exit records are the outcome."""
    import shlex

    from .jobscript import EXIT_RECORD, JOB_SCRIPT, STDERR, STDOUT, upstream_check

    q = shlex.quote
    elements = f"{ELEMENTS_FILE}.{attempt}"
    index = SLURM_INDEX if array is True else array
    # the element's words (indices and FIRST-LAST ranges) into _stax_ids, with builtins only
    pick = (
        f"_stax_k=$(( {offset} + {index} ))\n"
        f'mapfile -t -s "$_stax_k" -n 1 _stax_l < {elements}\n'
        'read -r -a _stax_ids <<< "${_stax_l[0]-}"'
        if array
        else "_stax_ids=()\n"
        f'while read -r -a _stax_l; do _stax_ids+=("${{_stax_l[@]}}"); done < {elements}'
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
    # claims: a workstation run's in its step directory, hidden (``*`` in a dependant's
    # script does not match it; a kill -9 of the run leaves it there, not in /dev/shm); an
    # array element's in the job's own temporary directory where the scheduler makes one and
    # removes it after the job, even a killed one (Grid Engine, PBS: qdel kills), else in the
    # node's memory (/dev/shm; Slurm's scancel sends SIGTERM first, on which the runner
    # removes them)
    place = (
        f"mktemp -d {q(step_dir + '/.stax.claims.XXXXXX')}"
        if claims_in_step_dir
        else '_stax_t=${TMPDIR:-${TMP:-}}; '  # Grid Engine sets TMP (some builds TMPDIR too)
        'if [ -n "${SGE_TASK_ID:-}${PBS_ARRAY_INDEX:-}" ] && [ -d "$_stax_t" ]; '
        'then mktemp -d "$_stax_t/stax.claims.XXXXXX"; '
        "else mktemp -d /dev/shm/stax.claims.XXXXXX 2>/dev/null || mktemp -d; fi"
    )
    claims = (
        '[ "$_stax_par" -le "$_stax_n" ] || _stax_par=$_stax_n\n'
        '_stax_c=\n[ "$_stax_par" -le 1 ] || {\n'
        f"  _stax_c=$({place}) || "
        "{ echo 'jupyter_stax: cannot make a directory for the claims' >&2; exit 1; }\n"
        "  trap 'rm -rf -- \"$_stax_c\"' EXIT\n"
        "  trap 'exit 143' TERM HUP INT\n"
        "}\n"
    )
    count = (  # instances, to start no more lanes than there are
        "_stax_n=0\n"
        'for _stax_w in "${_stax_ids[@]}"; do case $_stax_w in\n'
        "  *[!0-9-]*|-*|*-|*-*-*|'') ;;\n"
        "  *-*) _stax_n=$(( _stax_n + 10#${_stax_w#*-} - 10#${_stax_w%-*} + 1 ));;\n"
        "  *) _stax_n=$(( _stax_n + 1 ));;\n"
        "esac; done\n"
    )
    check = ""
    if required:
        skip = _each_instance(
            f"printf '%s skipped %s\\n' {attempt} \"$EPOCHREALTIME\" > "
            f'"$_stax_i/{EXIT_RECORD}"',
            "    ",
        ).lstrip() + "\n    exit 0"
        check = "\n".join(upstream_check(required, skip)) + "\n"
    lane = _each_instance(
        'if [ -n "$_stax_c" ]; then\n'
        '  set -C; { : > "$_stax_c/$_stax_i"; } 2>/dev/null; _stax_r=$?; set +C\n'
        '  [ "$_stax_r" = 0 ] || continue\n'
        "fi\n"
        f'( . "$_stax_i/{JOB_SCRIPT}" ) >"$_stax_i/{STDOUT}" 2>"$_stax_i/{STDERR}" </dev/null\n'
        f"printf '%s %s %s\\n' {attempt} \"$?\" \"$EPOCHREALTIME\" > \"$_stax_i/{EXIT_RECORD}\"",
        "    ",
    )
    return f"""#!/bin/bash
# jupyter_stax sweep runner, attempt {attempt}: the instances of {'one array element' if array
    else 'every element'} (see {elements}), each in its own directory.
cd -P -- {q(step_dir)} || {{ echo 'jupyter_stax: cannot enter step directory' >&2; exit 126; }}
{pick}
{check}{count}{parallel}{claims}_stax_j=0
while [ "$_stax_j" -lt "$_stax_par" ]; do
  _stax_j=$((_stax_j + 1))
  {{
{lane}
  }} &
done
wait
exit 0
"""


def _each_instance(body: str, indent: str) -> str:
    """Bash: ``body`` (lines) for each instance ``$_stax_i`` of the words in ``_stax_ids``
    (an index, or a ``FIRST-LAST`` range; anything else is skipped)."""
    inner = "".join(f"{indent}    {line}\n" for line in body.splitlines())
    return (
        f'{indent}for _stax_w in "${{_stax_ids[@]}}"; do\n'
        f"{indent}  case $_stax_w in\n"
        f"{indent}    *[!0-9-]*|-*|*-|*-*-*|'') continue;;\n"
        f"{indent}    *-*) _stax_a=$((10#${{_stax_w%-*}})) _stax_b=$((10#${{_stax_w#*-}}));;\n"
        f"{indent}    *) _stax_a=$((10#$_stax_w)) _stax_b=$_stax_a;;\n"
        f"{indent}  esac\n"
        f"{indent}  for ((_stax_i = _stax_a; _stax_i <= _stax_b; _stax_i++)); do\n"
        f"{inner}"
        f"{indent}  done\n"
        f"{indent}done"
    )


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
