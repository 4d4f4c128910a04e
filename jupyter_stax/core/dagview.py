"""Pictures of an execution's DAG: Mermaid text and a small standalone SVG.

Pure: strings in, strings out. Mermaid is for frontends that render it (JupyterLab 4.1+, GitHub);
the SVG needs nothing but a browser, so it works in nbconvert HTML, VS Code and ipywidgets' HTML.
Both colour every step by its state with the same palette (:data:`STATE_STYLES`), which the
notebook displays reuse for their state badges.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from .models import Execution
from .states import StepState

__all__ = [
    "STATE_STYLES",
    "StateStyle",
    "layers",
    "mermaid",
    "node_ids",
    "svg",
]


@dataclass(frozen=True)
class StateStyle:
    """How a state is drawn: box fill, border, text colour, dashed border."""

    fill: str
    stroke: str
    color: str
    dashed: bool = False

    def css(self) -> str:
        """Inline CSS for an HTML badge of this state."""
        border = "dashed" if self.dashed else "solid"
        return f"background:{self.fill};color:{self.color};border:1px {border} {self.stroke}"


_PENDING = StateStyle("#e9ecef", "#adb5bd", "#495057")
_QUEUED = StateStyle("#d0ebff", "#74c0fc", "#1864ab")
_RUNNING = StateStyle("#228be6", "#1864ab", "#ffffff")
_COMPLETED = StateStyle("#b2f2bb", "#2f9e44", "#0b4d1a")
_FAILED = StateStyle("#ffc9c9", "#e03131", "#7d1212")
_ENDED = StateStyle("#868e96", "#343a40", "#ffffff", dashed=True)

#: pending grey, submitted/queued light blue, running blue, completed green, failed/lost red,
#: canceled/skipped dark grey with a dashed border
STATE_STYLES: dict[StepState, StateStyle] = {
    StepState.PENDING: _PENDING,
    StepState.SUBMITTED: _QUEUED,
    StepState.QUEUED: _QUEUED,
    StepState.RUNNING: _RUNNING,
    StepState.COMPLETED: _COMPLETED,
    StepState.FAILED: _FAILED,
    StepState.LOST: _FAILED,
    StepState.CANCELED: _ENDED,
    StepState.SKIPPED: _ENDED,
}


def node_ids(ex: Execution) -> dict[str, str]:
    """Step name -> a node id safe in Mermaid and XML whatever the name (``s0``, ``s1``...)."""
    return {s.name: f"s{i}" for i, s in enumerate(ex.steps)}


def _deps(ex: Execution) -> dict[str, list[str]]:
    """Step name -> the steps of this execution it waits for (in the order of ``after``)."""
    names = {s.name for s in ex.steps}
    after = {s.name: s.after for s in ex.workflow.steps}
    return {s.name: [d for d in after.get(s.name, []) if d in names] for s in ex.steps}


def mermaid(ex: Execution) -> str:
    """``flowchart LR`` with one node per step (``name<br/>state``), an edge per dependency and a
    ``classDef`` per state."""
    ids = node_ids(ex)
    lines = ["flowchart LR"]
    for s in ex.steps:
        label = f"{s.name}<br/>{s.state.value}".replace('"', "#quot;")
        lines.append(f'  {ids[s.name]}["{label}"]')
    for name, deps in _deps(ex).items():
        lines += [f"  {ids[d]} --> {ids[name]}" for d in deps]
    for state, st in STATE_STYLES.items():
        style = f"fill:{st.fill},stroke:{st.stroke},color:{st.color}"
        style += ",stroke-dasharray:5 5" if st.dashed else ""
        lines.append(f"  classDef {state.value} {style}")
    for s in ex.steps:
        lines.append(f"  class {ids[s.name]} {s.state.value}")
    return "\n".join(lines) + "\n"


def layers(ex: Execution) -> list[list[str]]:
    """Steps by topological depth (a step sits one layer right of its deepest dependency; one
    that waits for nothing, one layer left of its first dependant).

    Within a layer, steps are ordered by the mean position of their dependencies (fewer crossing
    edges), ties by their order in the execution. A cycle (never stored: workflows are checked)
    would not hang: its steps are put in the last layer.
    """
    deps = _deps(ex)
    depth: dict[str, int] = {}
    todo = [s.name for s in ex.steps]
    while todo:
        ready = [n for n in todo if all(d in depth for d in deps[n])]
        if not ready:  # a cycle: place what is left and stop
            top = max(depth.values(), default=-1) + 1
            depth.update(dict.fromkeys(todo, top))
            break
        for n in ready:
            depth[n] = 1 + max((depth[d] for d in deps[n]), default=-1)
        done = set(ready)
        todo = [n for n in todo if n not in done]
    # a step that waits for nothing sits just left of its first dependant (short edges)
    for n, d in list(depth.items()):
        children = [depth[c] for c, ds in deps.items() if n in ds]
        if not deps[n] and children:
            depth[n] = max(d, min(children) - 1)
    position = {s.name: i for i, s in enumerate(ex.steps)}
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    row: dict[str, float] = {}

    def key(n: str) -> tuple[float, int]:
        parents = [row[d] for d in deps[n] if d in row]
        return (sum(parents) / len(parents) if parents else -1.0, position[n])

    for k, layer in enumerate(out):
        layer.extend(sorted((n for n in depth if depth[n] == k), key=key))
        row.update((n, float(i)) for i, n in enumerate(layer))
    return out


# geometry of the SVG, in pixels
_CHAR = 7.0  # width of a character at font-size 12 (sans-serif, generous)
_BOX_H = 40
_HGAP = 48
_VGAP = 16
_PAD = 10
_MIN_W = 96
_MAX_CHARS = 28


def _short(name: str) -> str:
    return name if len(name) <= _MAX_CHARS else name[: _MAX_CHARS - 1] + "…"


def svg(ex: Execution) -> str:
    """A standalone ``<svg>``: layers left to right, one rounded box per step coloured by its
    state (name and state inside, details in a tooltip), an arrow per dependency."""
    cols = layers(ex)
    steps = {s.name: s for s in ex.steps}
    chars = max((max(len(_short(n)), 9) for n in steps), default=9)
    box_w = max(_MIN_W, int(chars * _CHAR) + 20)
    tallest = max((len(c) for c in cols), default=0)
    width = 2 * _PAD + len(cols) * box_w + max(0, len(cols) - 1) * _HGAP
    height = 2 * _PAD + tallest * _BOX_H + max(0, tallest - 1) * _VGAP
    pos: dict[str, tuple[float, float]] = {}
    for c, names in enumerate(cols):
        top = _PAD + (tallest - len(names)) * (_BOX_H + _VGAP) / 2
        for r, n in enumerate(names):
            pos[n] = (_PAD + c * (box_w + _HGAP), top + r * (_BOX_H + _VGAP))

    title = f"DAG of execution {ex.id} ({ex.workflow.name}): {len(steps)} steps"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
    ]
    for name, deps in _deps(ex).items():
        x2, y2 = pos[name]
        y2 += _BOX_H / 2
        for d in deps:
            x1, y1 = pos[d]
            x1 += box_w
            y1 += _BOX_H / 2
            bend = max(_HGAP / 2, (x2 - x1) / 2)
            out.append(
                f'<path class="stax-edge" d="M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} '
                f'{x2 - bend:g},{y2:g} {x2 - 6:g},{y2:g}" fill="none" stroke="#868e96" '
                'stroke-width="1.5"/>'
            )
            out.append(
                f'<polygon points="{x2:g},{y2:g} {x2 - 7:g},{y2 - 4:g} {x2 - 7:g},{y2 + 4:g}" '
                'fill="#868e96"/>'
            )
    for name, (x, y) in pos.items():
        s = steps[name]
        st = STATE_STYLES[s.state]
        dash = ' stroke-dasharray="4 3"' if st.dashed else ""
        tip = f"{s.name}: {s.state.value}"
        if s.native_id:
            tip += f", job {s.native_id}"
        if s.exit_code is not None:
            tip += f", exit {s.exit_code}"
        if s.reason:
            tip += f" ({s.reason})"
        cx = x + box_w / 2
        out += [
            f'<g class="stax-step" data-step="{escape(s.name)}" data-state="{s.state.value}">',
            f"<title>{escape(tip)}</title>",
            f'<rect x="{x:g}" y="{y:g}" width="{box_w}" height="{_BOX_H}" rx="6" '
            f'fill="{st.fill}" stroke="{st.stroke}" stroke-width="1.5"{dash}/>',
            f'<text x="{cx:g}" y="{y + 16:g}" text-anchor="middle" fill="{st.color}" '
            f'font-weight="600">{escape(_short(s.name))}</text>',
            f'<text x="{cx:g}" y="{y + 31:g}" text-anchor="middle" fill="{st.color}">'
            f"{s.state.value}</text>",
            "</g>",
        ]
    out.append("</svg>")
    return "\n".join(out)
