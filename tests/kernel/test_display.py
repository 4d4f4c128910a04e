"""Text and HTML of an execution for frontends without widgets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from jupyter_stax.core import text
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.kernel import execution_html, execution_text
from jupyter_stax.kernel.display import BAR_STYLES, OUTCOME_COLORS, state_badge

from .conftest import T0, diamond, make_execution

HOSTILE = "<script>alert('x')</script>"


class Tags(HTMLParser):
    """Every start tag of a document, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    p.close()
    return p


def test_text_is_the_cli_status_text() -> None:
    ex = diamond()
    out = execution_text(ex, now=T0)
    assert out == text.status_text(ex, T0)
    assert out.startswith("execution  0123abcd\nworkflow   diamond\ncluster    local\n")
    assert "c-y   failed" in out


def test_html_has_title_progress_steps_and_dag() -> None:
    ex = diamond(warnings=["slurm is not answering status queries since 10:02:11"])
    html = execution_html(ex, now=T0)
    doc = parse(html)
    assert "svg" in doc.tags and doc.tags.count("rect") == 4
    assert doc.tags.count("tr") == 1 + 4  # header + one row per step
    assert 'data-id="0123abcd"' in html and "<code>0123abcd</code>" in html
    assert "<b>diamond</b>" in html and "<b>local</b>" in html
    assert 'data-done="2" data-total="4"' in html and "2/4 steps done" in html
    assert "width:50.0%" in html and OUTCOME_COLORS[ExecutionState.RUNNING] in html
    assert "slurm is not answering" in html
    assert '<tr class="stax-step" data-step="c-y">' in html
    row = html.split('data-step="c-y">', 1)[1].split("</tr>", 1)[0]
    assert 'data-state="failed"' in row and "<code>1002</code>" in row and ">3<" in row
    # the SVG inside is well-formed on its own
    svg = html[html.index("<svg") : html.index("</svg>") + 6]
    ET.fromstring(svg)


def test_every_user_string_is_escaped() -> None:
    ex = diamond(
        description=f"does things {HOSTILE}",
        reasons={"c-y": f"exit code 3: {HOSTILE}", "d": 'a "quoted" & <b>bold</b> reason'},
        warnings=[f"warning {HOSTILE}"],
        params={"p": HOSTILE},
    )
    html = execution_html(ex, now=T0)
    doc = parse(html)
    assert "script" not in doc.tags and "b" in doc.tags  # <b> of the title, not of the reason
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    plain = "".join(doc.text)
    assert f"does things {HOSTILE}" in plain  # shown as text
    assert f"exit code 3: {HOSTILE}" in plain
    assert f"warning {HOSTILE}" in plain and f"p={HOSTILE}" in plain
    assert 'a "quoted" & <b>bold</b> reason' in plain


@pytest.mark.parametrize(
    ("states", "outcome", "bar"),
    [
        (["completed", "completed"], ExecutionState.COMPLETED, "success"),
        (["completed", "failed"], ExecutionState.FAILED, "danger"),
        (["completed", "canceled"], ExecutionState.CANCELED, "warning"),
        (["completed", "running"], ExecutionState.RUNNING, "info"),
    ],
)
def test_progress_colour_follows_the_outcome(
    states: list[str], outcome: ExecutionState, bar: str
) -> None:
    ex = make_execution([(f"s{i}", [], StepState(s)) for i, s in enumerate(states)])
    assert ex.state is outcome and BAR_STYLES[outcome] == bar
    html = execution_html(ex, now=T0)
    assert f"background:{OUTCOME_COLORS[outcome]}" in html
    assert f'data-state="{outcome.value}"' in html.split("stax-title", 1)[1].split("</div>")[0]


def test_state_badge_uses_the_dag_colours() -> None:
    badge = state_badge(StepState.SKIPPED)
    assert 'data-state="skipped"' in badge and "dashed" in badge and ">skipped<" in badge
    assert state_badge(ExecutionState.FAILED, label="<x>").endswith(">&lt;x&gt;</span>")


def test_unverified_states_are_said_in_the_title() -> None:
    """The title (also the monitor's) says when no engine has reconciled the stored states."""
    from jupyter_stax.core.models import UNVERIFIED_WARNING
    from jupyter_stax.kernel.display import title_html

    assert "stax-unverified" not in title_html(diamond(), T0)
    title = title_html(diamond(warnings=[UNVERIFIED_WARNING]), T0)
    assert 'class="stax-unverified"' in title and "being checked with the scheduler" in title
