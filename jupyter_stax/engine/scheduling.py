"""Which steps can start and which can never run, after a change: a pure function of the DAG and
the steps' states (no event loop, no scheduler), tested table-driven.

A step starts when every step it comes after completed; in detached mode also when each of them
completed or is active at the scheduler with a native id and its submission is over (every array
of a sweep submitted; the scheduler orders them then). A
pending step whose upstream step ended in anything but ``completed`` is skipped, and the skip
cascades to its dependants; with ``on_failure: stop`` every pending step is skipped once a step
failed or was lost.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..core.dag import topological_order
from ..core.models import Workflow
from ..core.states import StepState


class StepView(Protocol):
    """What scheduling reads of a step (a :class:`~jupyter_stax.core.models.StepRun` is one)."""

    @property
    def state(self) -> StepState: ...

    @property
    def native_id(self) -> str | None: ...


@dataclass(frozen=True)
class Graph:
    """The DAG of an execution, computed once per run."""

    order: tuple[str, ...]
    """steps in topological order"""
    after: Mapping[str, tuple[str, ...]]
    """step -> the steps it comes after"""
    children: Mapping[str, tuple[str, ...]]
    """step -> the steps that come after it"""
    position: Mapping[str, int]
    """step -> its index in ``order``"""

    @classmethod
    def of(cls, workflow: Workflow) -> Graph:
        order = topological_order(workflow)
        children: dict[str, list[str]] = {s.name: [] for s in workflow.steps}
        for step in workflow.steps:
            for dep in step.after:
                children[dep].append(step.name)
        return cls(
            order=tuple(order),
            after={s.name: tuple(s.after) for s in workflow.steps},
            children={k: tuple(v) for k, v in children.items()},
            position={n: i for i, n in enumerate(order)},
        )


@dataclass(frozen=True)
class Start:
    step: str
    after: tuple[str, ...] = ()
    """native ids of active upstream jobs the scheduler must wait for (detached mode)"""


@dataclass
class Moves:
    """What to do, in this order: skip these steps (with their reasons), then start these."""

    skip: list[tuple[str, str]] = field(default_factory=list)
    start: list[Start] = field(default_factory=list)


def next_moves(
    graph: Graph,
    steps: Mapping[str, StepView],
    changed: Iterable[str] | None = None,
    *,
    submitting: Collection[str] = (),
    stop_on_failure: bool = False,
    detached: bool = False,
) -> Moves:
    """The steps to skip and to start after ``changed`` steps changed state (None: look at all).

    Only the changed steps and their dependants are looked at, so an event costs O(dependants),
    not O(steps). ``submitting``: steps whose submission is under way (never started twice).
    """
    moves = Moves()
    stop_after = None
    if stop_on_failure:
        stop_after = next(
            (n for n in graph.order if steps[n].state in (StepState.FAILED, StepState.LOST)),
            None,
        )
        if stop_after is not None:
            changed = None
    if changed is None:
        todo = [(graph.position[n], n) for n in graph.order]
    else:
        names = set(changed)
        for n in list(names):
            names.update(graph.children[n])
        todo = [(graph.position[n], n) for n in names]
    heapq.heapify(todo)
    seen = {n for _, n in todo}
    skipped: dict[str, str] = {}

    def state(name: str) -> StepState:
        return StepState.SKIPPED if name in skipped else steps[name].state

    while todo:
        _, name = heapq.heappop(todo)
        if state(name) is not StepState.PENDING or name in submitting:
            continue
        deps = graph.after[name]
        bad = next(
            (d for d in deps if state(d).final and state(d) is not StepState.COMPLETED), None
        )
        if bad is not None or stop_after is not None:
            reason = (
                f"not run: upstream step {bad!r} {state(bad).value}"
                if bad is not None
                else f"not run: step {stop_after!r} failed and on_failure is 'stop'"
            )
            skipped[name] = reason
            moves.skip.append((name, reason))
            for child in graph.children[name]:  # the skip cascades
                if child not in seen:
                    seen.add(child)
                    heapq.heappush(todo, (graph.position[child], child))
            continue
        if all(state(d) is StepState.COMPLETED for d in deps):
            moves.start.append(Start(name))
        elif detached and all(
            state(d) is StepState.COMPLETED
            or (state(d).active and steps[d].native_id and d not in submitting)
            for d in deps
        ):
            # a sweep's native id lists its arrays (``123,124``): the step waits for each
            active = tuple(
                part
                for d in deps
                if state(d).active and (nid := steps[d].native_id) is not None
                for part in nid.split(",")
                if part
            )
            moves.start.append(Start(name, active))
    return moves
