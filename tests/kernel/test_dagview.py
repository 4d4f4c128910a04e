"""The DAG pictures: Mermaid text (golden) and the standalone SVG (parsed as XML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from jupyter_stax.core import dagview
from jupyter_stax.core.states import StepState

from .conftest import diamond, make_execution

SVG = "{http://www.w3.org/2000/svg}"

GOLDEN_DIAMOND = """\
flowchart LR
  s0["a<br/>completed"]
  s1["b.x<br/>running"]
  s2["c-y<br/>failed"]
  s3["d<br/>pending"]
  s0 --> s1
  s0 --> s2
  s1 --> s3
  s2 --> s3
  classDef pending fill:#e9ecef,stroke:#adb5bd,color:#495057
  classDef submitted fill:#d0ebff,stroke:#74c0fc,color:#1864ab
  classDef queued fill:#d0ebff,stroke:#74c0fc,color:#1864ab
  classDef running fill:#228be6,stroke:#1864ab,color:#ffffff
  classDef completed fill:#b2f2bb,stroke:#2f9e44,color:#0b4d1a
  classDef failed fill:#ffc9c9,stroke:#e03131,color:#7d1212
  classDef lost fill:#ffc9c9,stroke:#e03131,color:#7d1212
  classDef canceled fill:#868e96,stroke:#343a40,color:#ffffff,stroke-dasharray:5 5
  classDef skipped fill:#868e96,stroke:#343a40,color:#ffffff,stroke-dasharray:5 5
  class s0 completed
  class s1 running
  class s2 failed
  class s3 pending
"""


def test_mermaid_of_a_diamond_is_the_golden_text() -> None:
    assert dagview.mermaid(diamond()) == GOLDEN_DIAMOND


def test_every_state_has_a_style_and_a_class() -> None:
    assert set(dagview.STATE_STYLES) == set(StepState)
    text = dagview.mermaid(diamond())
    for state in StepState:
        assert f"  classDef {state.value} " in text
    assert dagview.STATE_STYLES[StepState.SKIPPED].dashed
    assert not dagview.STATE_STYLES[StepState.FAILED].dashed


def test_node_ids_are_safe_whatever_the_step_names() -> None:
    ex = make_execution(
        [
            ("x.y-z", [], StepState.COMPLETED),
            ("end", ["x.y-z"], StepState.RUNNING),
            ("9.-_", ["end"], StepState.PENDING),
        ]
    )
    ids = dagview.node_ids(ex)
    assert ids == {"x.y-z": "s0", "end": "s1", "9.-_": "s2"}
    text = dagview.mermaid(ex)
    assert '  s0["x.y-z<br/>completed"]' in text and "  s1 --> s2" in text
    assert "end -->" not in text  # a Mermaid keyword as a step name stays a label


def test_layers_follow_topological_depth() -> None:
    ex = make_execution(
        [
            ("a", [], StepState.COMPLETED),
            ("b", ["a"], StepState.COMPLETED),
            ("c", ["a"], StepState.COMPLETED),
            ("side", [], StepState.PENDING),
            ("d", ["b", "c"], StepState.PENDING),
            ("e", ["d", "side"], StepState.PENDING),
        ]
    )
    # a source sits just left of its first dependant: 'side' beside 'd', not beside 'a'
    assert dagview.layers(ex) == [["a"], ["b", "c"], ["side", "d"], ["e"]]


def test_layers_of_a_partial_execution_ignore_steps_that_are_not_in_it() -> None:
    ex = diamond()
    ex.steps = [s for s in ex.steps if s.name != "b.x"]  # as with `--step`: only what runs
    assert dagview.layers(ex) == [["a"], ["c-y"], ["d"]]
    edges = [line for line in dagview.mermaid(ex).splitlines() if "-->" in line]
    assert edges == ["  s0 --> s1", "  s1 --> s2"]  # a -> c-y -> d; nothing from b.x


def test_svg_parses_and_has_one_box_per_step() -> None:
    ex = diamond(reasons={"c-y": "exit code 3: <script>alert(1)</script> & more"})
    root = ET.fromstring(dagview.svg(ex))
    assert root.tag == f"{SVG}svg"
    rects = root.findall(f".//{SVG}rect")
    assert len(rects) == 4
    groups = root.findall(f".//{SVG}g")
    assert [(g.get("data-step"), g.get("data-state")) for g in groups] == [
        ("a", "completed"),
        ("b.x", "running"),
        ("c-y", "failed"),
        ("d", "pending"),
    ]
    # one edge per dependency, each with an arrow head
    assert len(root.findall(f".//{SVG}path")) == 4
    assert len(root.findall(f".//{SVG}polygon")) == 4
    fills = {g.get("data-step"): rect.get("fill") for g, rect in zip(groups, rects, strict=True)}
    assert fills["a"] == dagview.STATE_STYLES[StepState.COMPLETED].fill
    assert fills["c-y"] == dagview.STATE_STYLES[StepState.FAILED].fill
    tips = [g.findtext(f"{SVG}title") for g in groups]
    assert "c-y: failed, job 1002, exit 3 (exit code 3: <script>alert(1)</script> & more)" in tips
    assert root.findall(f".//{SVG}script") == []


def test_svg_lays_out_left_to_right_and_cuts_long_names() -> None:
    long = "n" * 64
    ex = make_execution([("a", [], StepState.CANCELED), (long, ["a"], StepState.SKIPPED)])
    root = ET.fromstring(dagview.svg(ex))
    a, b = root.findall(f".//{SVG}rect")
    assert float(b.get("x", 0)) > float(a.get("x", 0)) + float(a.get("width", 0))
    assert a.get("stroke-dasharray") and b.get("stroke-dasharray")
    labels = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert any(t.endswith("…") and len(t) <= 28 for t in labels)
    assert float(root.get("width", 0)) < 800
