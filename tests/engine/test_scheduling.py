"""Which steps start and which are skipped after a change: a pure function of the DAG and the
steps' states, tested table-driven (no asyncio, no scheduler)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jupyter_stax.core.models import Workflow
from jupyter_stax.core.states import StepState
from jupyter_stax.engine.scheduling import Graph, Start, next_moves

S = StepState
P, Q, R, C, F, L, X = S.PENDING, S.QUEUED, S.RUNNING, S.COMPLETED, S.FAILED, S.LOST, S.CANCELED


@dataclass
class V:
    state: StepState
    native_id: str | None = None


def graph(edges: dict[str, list[str]]) -> Graph:
    wf = Workflow.model_validate(
        {"name": "t", "steps": [{"name": n, "run": "true", "after": a} for n, a in edges.items()]}
    )
    return Graph.of(wf)


DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
CHAIN = {"a": [], "b": ["a"], "c": ["b"], "e": []}

CASES = [
    # (name, edges, states, changed, options, expected skips, expected starts)
    ("roots start", DIAMOND, "PPPP", None, {}, [], [Start("a")]),
    ("both children of a done root", DIAMOND, "CPPP", ["a"], {}, [], [Start("b"), Start("c")]),
    ("join waits for both", DIAMOND, "CCRP", ["b"], {}, [], []),
    ("join starts when both done", DIAMOND, "CCCP", ["c"], {}, [], [Start("d")]),
    (
        "a failure skips its dependants, cascading",
        DIAMOND,
        "FPPP",
        ["a"],
        {},
        [
            ("b", "not run: upstream step 'a' failed"),
            ("c", "not run: upstream step 'a' failed"),
            ("d", "not run: upstream step 'b' skipped"),
        ],
        [],
    ),
    (
        "lost and canceled upstream steps skip too",
        CHAIN,
        "LPPP",
        ["a"],
        {},
        [("b", "not run: upstream step 'a' lost"), ("c", "not run: upstream step 'b' skipped")],
        [],  # 'e' is not downstream of the change
    ),
    (
        "only the changed step's dependants are looked at",
        CHAIN,
        "CPPP",
        ["a"],
        {},
        [],
        [Start("b")],
    ),
    (
        "on_failure stop skips every pending step",
        CHAIN,
        "FPPP",
        ["a"],
        {"stop_on_failure": True},
        [  # in topological order (roots first)
            ("e", "not run: step 'a' failed and on_failure is 'stop'"),
            ("b", "not run: upstream step 'a' failed"),
            ("c", "not run: upstream step 'b' skipped"),
        ],
        [],
    ),
    (
        "on_failure stop with no failure changes nothing",
        CHAIN,
        "CPPP",
        ["a"],
        {"stop_on_failure": True},
        [],
        [Start("b")],
    ),
    (
        "detached: a child is queued behind its active parent's job",
        DIAMOND,
        "QPPP",
        ["a"],
        {"detached": True},
        [],
        [Start("b", ("j-a",)), Start("c", ("j-a",))],
    ),
    (
        "detached: the join waits for its active parents' jobs only",
        DIAMOND,
        "CQRP",
        ["b", "c"],
        {"detached": True},
        [],
        [Start("d", ("j-b", "j-c"))],
    ),
    ("not detached: an active parent holds its child", DIAMOND, "QPPP", ["a"], {}, [], []),
    (
        "steps under submission are not started twice",
        DIAMOND,
        "CPPP",
        ["a"],
        {"submitting": {"b"}},
        [],
        [Start("c")],
    ),
    (
        "canceled roots are not pending",
        CHAIN,
        "XPPC",
        None,
        {},
        [
            ("b", "not run: upstream step 'a' canceled"),
            ("c", "not run: upstream step 'b' skipped"),
        ],
        [],
    ),
]

CODES = {"P": P, "Q": Q, "R": R, "C": C, "F": F, "L": L, "X": X}


@pytest.mark.parametrize(
    ("edges", "states", "changed", "options", "skips", "starts"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_next_moves(
    edges: dict[str, list[str]],
    states: str,
    changed: list[str] | None,
    options: dict[str, object],
    skips: list[tuple[str, str]],
    starts: list[Start],
) -> None:
    g = graph(edges)
    steps = {
        n: V(CODES[c], f"j-{n}" if CODES[c].active else None)
        for n, c in zip(edges, states, strict=True)
    }
    moves = next_moves(g, steps, changed, **options)  # type: ignore[arg-type]
    assert moves.skip == skips
    assert moves.start == starts


def test_a_skip_that_reaches_a_step_outside_the_change_cascades_into_it() -> None:
    # 'x' changed; its dependant 'y' is skipped; 'z' (only reached through 'y') follows
    g = graph({"x": [], "y": ["x"], "z": ["y"], "w": []})
    steps = {"x": V(F), "y": V(P), "z": V(P), "w": V(P)}
    moves = next_moves(g, steps, ["x"])
    assert [n for n, _ in moves.skip] == ["y", "z"]
    assert moves.start == []  # 'w' was not part of the change


def test_graph_of_a_workflow() -> None:
    g = graph(DIAMOND)
    assert g.order[0] == "a" and g.order[-1] == "d"
    assert g.children["a"] == ("b", "c") and g.after["d"] == ("b", "c")
    assert [g.position[n] for n in g.order] == [0, 1, 2, 3]
