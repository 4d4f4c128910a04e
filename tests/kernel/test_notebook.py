"""A REAL kernel (ipykernel through nbclient) runs a notebook that uses the Python API: it
submits a 3-step DAG on ``local`` with ``LocalService``, displays a ``Monitor``, lets the kernel's
event loop drive it, waits for the end and displays ``execution_html``. The saved widget state
and the outputs are then checked as a reader of the notebook would see them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


CELLS = [
    """\
import sys
from jupyter_stax.service import LocalService
from jupyter_stax.kernel import Monitor

import os
GO = os.path.abspath("go")
svc = LocalService()  # the store of $JUPYTER_STAX_STORE, inherited from the test
workflow = {
    "name": "nb-demo",
    "steps": [
        # after its first line, talk waits until the third cell has looked (the file GO): the run is
        # never over before the monitor showed it running, however slow the kernel is
        {"name": "talk", "run": f"echo line 1; for _g in $(seq 2400); do [ -e {GO} ] && break; "
         "sleep 0.05; done; for i in $(seq 2 8); do sleep 0.25; echo line $i; done"},
        {"name": "count", "after": ["talk"], "run": "wc -l < ../talk/stax.out"},
        {"name": "report", "after": ["count"], "run": "echo total $(cat ../count/stax.out)"},
    ],
}
ex = svc.submit(workflow, cluster="local")
print(ex.id, sys.executable)""",
    """\
monitor = Monitor(svc, ex.id, interval=0.2)
monitor""",
    """\
# the kernel's event loop runs the monitor's task while this cell awaits (no refresh() here)
import asyncio
for _ in range(600):
    if monitor.log_text:
        break
    await asyncio.sleep(0.05)
print(type(monitor._task).__name__, monitor._thread, monitor.progress.value,
      repr(monitor.log_text))
open(GO, "w").close()""",
    """\
final = monitor.wait(60)
print(final.state.value, monitor.progress.value, monitor.progress.bar_style)""",
    """\
from IPython.display import HTML
from jupyter_stax.kernel import execution_html
HTML(execution_html(final))""",
    """\
print(monitor.mermaid)""",
]


@pytest.fixture
def executed(store: Path, kernelspec: str) -> Iterator[Any]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name=kernelspec,
        store_widget_state=True,
        resources={"metadata": {"path": str(store.parents[1])}},  # the kernel's working directory
    )
    try:
        client.execute()
    finally:
        (store.parents[1] / "monitor.ipynb").write_text(nbformat.writes(nb))  # to look at
    yield nb


def stream_text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_monitor_in_a_real_kernel(executed: Any) -> None:
    nb = executed
    eid, kernel_python = stream_text(nb.cells[0]).split()
    assert Path(kernel_python).resolve() == Path(sys.executable).resolve()

    # the monitor was polled by an asyncio task on the kernel's loop, and tailed the log live
    task, thread, done, partial = stream_text(nb.cells[2]).strip().split(" ", 3)
    assert (task, thread) == ("Task", "None")
    assert int(done) < 3 and partial.startswith("'line 1\\n")

    assert stream_text(nb.cells[3]).split() == ["completed", "3", "success"]

    # the display: a widget view, with the status text as the plain-text fallback
    (shown,) = [o for o in nb.cells[1].outputs if o.output_type == "execute_result"]
    view = shown.data["application/vnd.jupyter.widget-view+json"]
    assert shown.data["text/plain"].startswith(f"execution  {eid}\n")

    # the widget state saved in the notebook, as nbconvert or a reader sees it
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    assert view["model_id"] in state
    models = list(state.values())
    (bar,) = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    assert (bar["value"], bar["max"], bar["bar_style"]) == (3, 3, "success")
    assert bar["description"] == "3/3 steps done"
    html = [m["state"]["value"] for m in models if m["model_name"] == "HTMLModel"]
    for step in ("talk", "count", "report"):
        assert any(f'data-step="{step}" data-state="completed"' in v for v in html), step
    assert any(eid in v and "<b>nb-demo</b>" in v for v in html)  # the title
    assert any("<svg" in v and v.count("<rect") == 3 for v in html)  # the DAG
    assert any("line 8" in v and 'class="stax-log"' in v for v in html)  # the log pane
    buttons = {
        m["state"]["description"]: m["state"] for m in models if m["model_name"] == "ButtonModel"
    }
    assert buttons["Cancel"]["disabled"] and buttons["Retry failed"]["disabled"]

    # execution_html: a static summary with the DAG as SVG
    (static,) = [o for o in nb.cells[4].outputs if o.output_type == "execute_result"]
    page = static.data["text/html"]
    assert page.count("<svg") == 1 and page.count("<rect") == 3
    assert f'data-id="{eid}"' in page and "3/3 steps done" in page

    assert "  class s2 completed" in stream_text(nb.cells[5])
