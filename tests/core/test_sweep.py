"""Sweeps as data: expansion (grid, zip, ranges), the text form of ``--sweep``, validation with
clear errors, packing arithmetic, and hostile values that stay values (table-driven, pure)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import yaml

from jupyter_stax.core import sweep as sw
from jupyter_stax.core.dag import check
from jupyter_stax.core.documents import load_workflow
from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.models import Step, Workflow
from jupyter_stax.core.params import param_env

HOSTILE = ["$(touch /tmp/pwned)", "`id`", "a b", "'; rm -rf ~ #", '"', "\\", "\n", "*", "-n", ""]

EXPANSIONS: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("one list", {"n": [1, 2, 3]}, [{"n": 1}, {"n": 2}, {"n": 3}]),
    (
        "grid, first name slowest",
        {"a": [1, 2], "b": ["x", "y"]},
        [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}],
    ),
    (
        "zip pairs",
        {"a": [1, 2], "b": ["x", "y"], "zip": True},
        [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
    ),
    ("range stop excluded", {"s": {"range": [0, 3]}}, [{"s": 0}, {"s": 1}, {"s": 2}]),
    ("range with a step", {"s": {"range": [0, 10, 4]}}, [{"s": 0}, {"s": 4}, {"s": 8}]),
    ("a single value", {"n": 7}, [{"n": 7}]),
    ("null, bools, floats", {"v": [None, True, 1.5]}, [{"v": None}, {"v": True}, {"v": 1.5}]),
    ("hostile values are values", {"v": HOSTILE}, [{"v": h} for h in HOSTILE]),
]


@pytest.mark.parametrize(
    "raw,expected", [c[1:] for c in EXPANSIONS], ids=[c[0] for c in EXPANSIONS]
)
def test_expansion(raw: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    s = sw.spec(sw.normalize(raw))
    assert len(s) == len(expected)
    assert list(sw.instances(s)) == expected


def test_grid_order_matches_itertools_product_and_random_access() -> None:
    raw = {"a": [1, 2, 4, 8], "b": {"range": [0, 25]}, "c": ["x", "y", "z"]}
    s = sw.spec(sw.normalize(raw))
    want = [
        {"a": a, "b": b, "c": c}
        for a, b, c in itertools.product([1, 2, 4, 8], range(25), ["x", "y", "z"])
    ]
    assert len(s) == 300
    assert list(sw.instances(s)) == want
    assert sw.instance(s, 299) == want[299]
    with pytest.raises(IndexError):
        sw.instance(s, 300)


def test_the_issue_example_counts_10000_without_building_them() -> None:
    s = sw.spec(sw.normalize({"n": [1, 2, 4, 8], "seed": {"range": [0, 2500]}}))
    assert len(s) == 10_000
    assert sw.instance(s, 9_999) == {"n": 8, "seed": 2499}
    assert s.describe() == "n: 4 x seed: 2,500"


ERRORS = [
    ("zip of unequal lengths", {"a": [1, 2], "b": [1], "zip": True}, "a has 2, b has 1"),
    ("too many", {"a": {"range": [0, 1000]}, "b": {"range": [0, 1000]}}, "1,000,000 instances"),
    ("empty list", {"a": []}, "empty"),
    ("empty range", {"a": {"range": [5, 5]}}, "is empty"),
    ("negative step", {"a": {"range": [0, 5, -1]}}, "must be positive"),
    ("range of text", {"a": {"range": ["0", "5"]}}, "2 or 3 integers"),
    ("unknown mapping", {"a": {"from": 1}}, "{range: [start, stop]}"),
    ("nested list value", {"a": [[1, 2]]}, "text, numbers"),
    ("bad name", {"1a": [1]}, "not an identifier"),
    ("zip not a bool", {"a": [1], "zip": "yes"}, "zip must be true or false"),
    ("no names", {"zip": True}, "names no parameter"),
    ("not a mapping", [1, 2], "must be a mapping"),
    ("infinite float", {"a": [float("inf")]}, "text, numbers"),
]


@pytest.mark.parametrize("raw,message", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors_say_what_to_change(raw: Any, message: str) -> None:
    with pytest.raises(sw.SweepError) as e:
        sw.normalize(raw)
    assert message in str(e.value)


OPTIONS = [
    (["n=1,2,4"], {"n": [1, 2, 4], "zip": False}),
    (["seed=0..2499"], {"seed": {"range": [0, 2500, 1]}, "zip": False}),
    (["seed=0..10:5"], {"seed": {"range": [0, 11, 5]}, "zip": False}),
    (['msg=["a,b", "$(id)"]'], {"msg": ["a,b", "$(id)"], "zip": False}),
    (["x=a b,$(id),`id`"], {"x": ["a b", "$(id)", "`id`"], "zip": False}),
    (['n="10",1.5,true'], {"n": ["10", 1.5, True], "zip": False}),
    (["a=1,2", "b=3,4", "zip"], {"a": [1, 2], "b": [3, 4], "zip": True}),
]


@pytest.mark.parametrize("items,expected", OPTIONS, ids=[" ".join(o[0]) for o in OPTIONS])
def test_sweep_option(items: list[str], expected: dict[str, Any]) -> None:
    assert sw.parse_sweep_option(items) == expected
    assert sw.parse_sweep_option(sw.to_option(expected)) == expected  # round trip


@pytest.mark.parametrize(
    "items,message",
    [
        (["n"], "expects NAME=VALUES"),
        (["n=1", "n=2"], "given twice"),
        (["n=5..1"], "comes before its start"),
        (["n=[1"], "not a JSON list"),
        (["a=1,2", "b=1", "zip"], "a has 2, b has 1"),
    ],
)
def test_sweep_option_errors(items: list[str], message: str) -> None:
    with pytest.raises(sw.SweepError) as e:
        sw.parse_sweep_option(items)
    assert message in str(e.value)


def test_workflow_file_form() -> None:
    doc = yaml.safe_load(
        """
        steps:
          - name: sim
            sweep:
              n: [1, 2, 4, 8]
              seed: {range: [0, 2500]}
            max_parallel: 200
            pack: auto
            run: ./sim --n {{n}} --seed {{seed}} > out.txt
          - name: collect
            after: [sim]
            run: cat ../sim/*/out.txt
        """
    )
    wf = load_workflow(doc)
    sim = wf.step("sim")
    assert sim.max_parallel == 200 and sim.pack == "auto"
    assert len(sw.spec(sim.sweep or {})) == 10_000
    check(wf)  # placeholders bound by the sweep
    # the stored form round-trips (the store keeps model_dump of the workflow)
    again = Workflow.model_validate(wf.model_dump(mode="json"))
    assert again.step("sim").sweep == sim.sweep


@pytest.mark.parametrize(
    "step,message",
    [
        ({"run": "x", "max_parallel": 2}, "apply to a sweep"),
        ({"run": "x", "pack": 4}, "apply to a sweep"),
        ({"run": "x", "expected_seconds": 2}, "apply to a sweep"),
        ({"run": "x", "sweep": {"n": [1]}, "params": {"n": 1}}, "both in 'params' and 'sweep'"),
        ({"run": "x", "sweep": {"n": [1]}, "pack": 0}, "greater than or equal to 1"),
        ({"run": "x", "sweep": {"a": [1, 2], "b": [1], "zip": True}}, "a has 2, b has 1"),
    ],
)
def test_step_validation(step: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as e:
        Step.model_validate({"name": "sim", **step})
    assert message in str(e.value)


def test_check_finds_hostile_sweep_values_in_arithmetic_and_nul_bytes() -> None:
    wf = Workflow.model_validate(
        {
            "steps": [
                {
                    "name": "sim",
                    "run": "echo $(( {{n}} + 1 )) {{msg}}",
                    "sweep": {"n": ["1", "a[$(id)]"], "msg": ["ok", "nul\x00byte"]},
                }
            ]
        }
    )
    with pytest.raises(InvalidWorkflow) as e:
        check(wf)
    details = "\n".join(e.value.details)
    assert "'a[$(id)]'" in details and "a value of its sweep" in details
    assert "NUL" in details


def test_check_passes_hostile_values_outside_arithmetic() -> None:
    wf = Workflow.model_validate(
        {"steps": [{"name": "sim", "run": 'echo "{{v}}" {{v}}', "sweep": {"v": HOSTILE}}]}
    )
    check(wf)
    for v in HOSTILE:  # each value becomes exactly one environment variable, as data
        assert param_env({"v": v}) == {"STAX_PARAM_v": v}


def test_a_placeholder_without_a_value_is_still_reported() -> None:
    wf = Workflow.model_validate(
        {"steps": [{"name": "sim", "run": "echo {{n}} {{missing}}", "sweep": {"n": [1]}}]}
    )
    with pytest.raises(InvalidWorkflow) as e:
        check(wf)
    assert any("{{missing}}" in d for d in e.value.details)
    assert not any("{{n}}" in d for d in e.value.details)


PACKS = [
    (100, None, 12),  # 60 s jobs of 5 s tasks
    (10, None, 10),  # never more than the instances
    (10_000, 0.01, 6000),  # 60 s jobs of 10 ms tasks
    (10_000, 30.0, 10),  # 1,000 elements at most
    (100_000, 1.0, 100),
    (3, None, 3),  # never more than the instances
    (500, 600.0, 1),  # long tasks: one per job
    (0, None, 1),
]


@pytest.mark.parametrize("count,expected_seconds,pack", PACKS)
def test_auto_pack(count: int, expected_seconds: float | None, pack: int) -> None:
    assert sw.auto_pack(count, expected_seconds) == pack


def test_plan_elements_and_caps() -> None:
    assert sw.plan_elements([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]
    assert sw.plan_elements([3, 7, 9], 1) == [[3], [7], [9]]
    with pytest.raises(sw.SweepError):
        sw.plan_elements([1], 0)
    assert sw.element_cap(None, 4) is None
    assert sw.element_cap(200, 1) == 200
    assert sw.element_cap(200, 8) == 25
    assert sw.element_cap(3, 8) == 1  # at least one element runs


@pytest.mark.parametrize(
    "elements,text",
    [
        ([[0, 1, 2, 3, 4]], "0-4\n"),
        ([[0, 1], [2, 3], [4]], "0-1\n2-3\n4\n"),
        ([[5, 17, 33]], "5 17 33\n"),
        ([[1, 2, 3, 7, 9, 10], []], "1-3 7 9-10\n\n"),
        ([[10_000, 10_001, 99_999]], "10000-10001 99999\n"),
    ],
)
def test_elements_file_round_trip(elements: list[list[int]], text: str) -> None:
    assert sw.elements_text(elements) == text
    assert sw.parse_elements(text) == elements


@pytest.mark.parametrize("text", ["1 x\n", "1-\n", "a-3\n", "1.5\n"])
def test_elements_file_refuses_what_is_not_an_index(text: str) -> None:
    with pytest.raises(ValueError):
        sw.parse_elements(text)


@pytest.mark.parametrize(
    "count,pack,balanced",
    [(10_000, 6000, 5000), (10_000, 100, 100), (10, 3, 3), (10, 4, 4), (7, 5, 4), (5, 10, 5),
     (1, 1, 1), (0, 3, 3)],
)
def test_balanced_pack(count: int, pack: int, balanced: int) -> None:
    got = sw.balanced(count, pack)
    assert got == balanced
    if count:  # never more elements than the pack asked for
        assert -(-count // got) == -(-count // pack)
