"""Whole-workflow checks and graph helpers. Every problem is reported at once, before submission."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

from .errors import InvalidWorkflow
from .models import ParamValue, Step, Workflow
from .params import (
    ParamError,
    arithmetic_placeholders,
    check_arithmetic_values,
    param_env,
    placeholders,
    render_script,
)
from .pystep import python_placeholders
from .sweepspec import SweepError
from .sweepspec import spec as sweep_spec


def graph(workflow: Workflow) -> dict[str, list[str]]:
    """step name -> names of the steps it waits for."""
    return {s.name: list(s.after) for s in workflow.steps}


def topological_order(workflow: Workflow) -> list[str]:
    """Step names, dependencies first; ties keep the order of the workflow document."""
    position = {s.name: i for i, s in enumerate(workflow.steps)}
    ts = TopologicalSorter(graph(workflow))
    ts.prepare()
    out: list[str] = []
    while ts.is_active():
        ready = sorted(ts.get_ready(), key=position.__getitem__)
        out.extend(ready)
        ts.done(*ready)
    return out


def downstream(workflow: Workflow, names: Iterable[str]) -> set[str]:
    """All steps that depend, directly or not, on any of ``names`` (not including them)."""
    children: dict[str, list[str]] = {s.name: [] for s in workflow.steps}
    for s in workflow.steps:
        for dep in s.after:
            children[dep].append(s.name)
    seen: set[str] = set()
    todo = [c for n in names for c in children.get(n, [])]
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(children[n])
    return seen


def select(workflow: Workflow, names: Iterable[str] | None) -> Workflow:
    """The workflow cut down to ``names`` and everything they depend on (all of it when
    ``names`` is empty or None); InvalidWorkflow naming the steps it does not have."""
    wanted = list(names or ())
    if not wanted:
        return workflow
    have = [s.name for s in workflow.steps]
    unknown = [n for n in wanted if n not in have]
    if unknown:
        raise InvalidWorkflow(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(have)}")
    keep = upstream(workflow, wanted)
    return workflow.model_copy(update={"steps": [s for s in workflow.steps if s.name in keep]})


def upstream(workflow: Workflow, names: Iterable[str]) -> set[str]:
    """``names`` and everything they depend on."""
    deps = graph(workflow)
    seen: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(deps.get(n, ()))
    return seen


def bound_params(
    workflow: Workflow, params: Mapping[str, ParamValue], step: Step
) -> dict[str, ParamValue]:
    """Parameter values a step sees: workflow defaults < submission values < step bindings."""
    out: dict[str, ParamValue] = dict(workflow.params)
    out.update(params)
    out.update(step.params)
    return out


def check(workflow: Workflow, params: Mapping[str, ParamValue] | None = None) -> None:
    """Raise :class:`InvalidWorkflow` listing every structural problem of ``workflow``.

    Checks: duplicate step names, unknown or self dependencies, cycles (naming the cycle),
    placeholders without a value, parameter values bash cannot carry, placeholders in places
    where they cannot be substituted safely.
    """
    params = dict(params or {})
    problems: list[str] = []
    names = [s.name for s in workflow.steps]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            problems.append(f"step name {n!r} is used more than once; step names must be unique")
        seen.add(n)
    known = set(names)
    structure_ok = len(known) == len(names)
    for s in workflow.steps:
        for dep in s.after:
            if dep == s.name:
                problems.append(f"step {s.name!r} depends on itself")
                structure_ok = False
            elif dep not in known:
                hint = _closest(dep, known)
                problems.append(
                    f"step {s.name!r} depends on unknown step {dep!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; known steps: {', '.join(names)}"
                )
                structure_ok = False
    if structure_ok:
        try:
            TopologicalSorter(graph(workflow)).prepare()
        except CycleError as e:
            cycle = list(e.args[1])
            # graphlib reports the cycle as [a, b, ..., a] in "depends on" direction; show it as
            # the order in which steps would have to run
            cycle.reverse()
            problems.append(
                "the steps form a cycle: " + " -> ".join(cycle) + "; remove one of these "
                "dependencies ('after')"
            )
    for s in workflow.steps:
        where = f"step {s.name!r}"
        values = {**workflow.params, **params, **s.params}
        swept = _sweep_values(s, problems)
        values.update({k: v[0] for k, v in swept.items() if len(v)})
        try:
            script = step_text(s)
        except InvalidWorkflow as e:
            problems.append(str(e))
            continue
        missing = [p for p in placeholders(script) if p not in values]
        for p in missing:
            problems.append(
                f"{where} uses {{{{{p}}}}} but no value is given: add '{p}' to the workflow's "
                f"params or pass --param {p}=VALUE"
            )
        if s.notebook is not None:  # no script: its values go in as Python literals
            from .notebooks import notebook_problems

            problems += notebook_problems(s.name, values)
            continue
        if s.language == "python":
            try:
                python_placeholders(s.run, where=where)
            except ParamError as e:
                problems.append(str(e))
            continue
        try:
            render_script(script, where=where)
        except ParamError as e:
            problems.append(str(e))
        problems += check_arithmetic_values(script, values, where=where)
        problems += _sweep_arithmetic(script, swept, where)
    try:
        param_env({**workflow.params, **params})
        for s in workflow.steps:
            param_env(s.params)
    except ParamError as e:
        problems.append(str(e))
    if problems:
        raise InvalidWorkflow(f"workflow {workflow.name!r} is not valid", details=problems)


def _sweep_values(s: Step, problems: list[str]) -> dict[str, Sequence[ParamValue]]:
    """Each swept name's values (every value is checked once, not once per instance)."""
    if s.sweep is None:
        return {}
    where = f"step {s.name!r}"
    try:
        values = sweep_spec(s.sweep, where=f"{where}: sweep").distinct()
    except SweepError as e:
        problems.append(str(e))
        return {}
    for name, vals in values.items():
        if isinstance(vals, range):
            continue  # integers
        for v in vals:
            try:
                param_env({name: v})
            except ParamError as e:
                problems.append(f"{where}: sweep: {e}")
                break
    return values


def _sweep_arithmetic(
    script: str, swept: Mapping[str, Sequence[ParamValue]], where: str
) -> list[str]:
    """The first value of each swept name that bash arithmetic would evaluate as code."""
    problems: list[str] = []
    used = arithmetic_placeholders(script) if swept else {}
    for name, vals in swept.items():
        if isinstance(vals, range) or name not in used:
            continue
        for v in vals:
            if isinstance(v, int) and not isinstance(v, bool):
                continue
            found = check_arithmetic_values(script, {name: v}, where=where)
            if found:
                problems.append(found[0] + " (a value of its sweep)")
                break
    return problems


def step_text(step: Step) -> str:
    """The script text of a step before placeholder substitution: its ``run``, or what its
    software description renders to (without container wrapping)."""
    if step.software is None:
        return step.run
    from .software import load_software, render

    return render(load_software(step.software, where=f"step {step.name!r}"))


def _closest(word: str, candidates: Iterable[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, list(candidates), n=1)
    return m[0] if m else None
