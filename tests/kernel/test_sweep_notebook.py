"""A sweep cell in a notebook, run by nbclient in a REAL kernel on the test's isolated store:
``%%stax_task --sweep``, a collecting step, ``%stax_submit``, the wait, ``%stax status`` with
the sweep's one row of counts, the monitor's saved widget state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.timeout(300)

CELLS = [
    "%load_ext jupyter_stax",
    "%%stax_task sim --sweep n=1,2,3 --sweep seed=0..9 --max-parallel 4\n"
    "echo $(( {{n}} * 100 + {{seed}} )) > out.txt\n"
    "[ {{seed}} != 7 ] || [ {{n}} != 2 ] || exit 6\n",
    "%%stax_task collect --after sim\ncat ../sim/*/out.txt | wc -l\n",
    "run = %stax_submit --cluster local --on-failure continue",
    "final = await run.wait_async(200, check=False)\nprint(final.state)",
    "%stax status",
]


@pytest.fixture
def executed(store: Path, kernelspec: str) -> Iterator[Any]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = nbclient.NotebookClient(
        nb,
        timeout=200,
        kernel_name=kernelspec,
        store_widget_state=True,
        resources={"metadata": {"path": str(store.parents[1])}},
    )
    try:
        client.execute()
    finally:
        (store.parents[1] / "sweep.ipynb").write_text(nbformat.writes(nb))
    yield nb


def text(cell: Any) -> str:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif "text/plain" in o.get("data", {}):
            out.append(o.data["text/plain"])
    return "".join(out)


def test_sweep_cell_runs_and_shows_one_row_of_counts(executed: Any) -> None:
    nb = executed
    assert "sweep n: 3 x seed: 10 = 30 instances" in text(nb.cells[1])
    assert text(nb.cells[4]).strip() == "failed"
    status = text(nb.cells[5])
    (row,) = [line for line in status.splitlines() if line.startswith("sim ")]
    assert "29/30 done, 1 failed; 1 of 30 instances did not complete: 17 (exit 6)" in row
    (collect,) = [line for line in status.splitlines() if line.startswith("collect ")]
    assert "skipped" in collect
    # the monitor's saved widget state shows the step as one row with its counts
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    html = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    assert any('data-step="sim" data-state="failed"' in v and "29/30 done" in v for v in html)
