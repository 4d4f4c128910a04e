"""The StaX sidebar in a real JupyterLab and a real browser, against the real Slurm."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import screenshot
from .lab import LabServer

pytestmark = pytest.mark.slow

HELLO = """\
name: ui-hello
steps:
  - name: greet
    run: |
      for i in 1 2 3; do echo "line $i from $(hostname)"; done
      echo "the end of greet"
  - name: count
    after: [greet]
    run: seq 1 5 | paste -sd+ | bc || echo 15
"""

LONG = """\
name: ui-long
steps:
  - name: sleeper
    run: echo started; sleep 600
"""


def submit(lab: LabServer, workflow: str, cluster: str = "slurm") -> str:
    ex = lab.api("POST", "executions", {"workflow": workflow, "cluster": cluster})
    return str(ex["id"])


def row(page: Any, eid: str, state: str | None = None) -> Any:
    sel = f'#jupyter-stax-panel .jp-StaxExecution[data-execution-id="{eid}"]'
    if state:
        sel += f'[data-state="{state}"]'
    return page.locator(sel)


def test_sidebar_shows_clusters_and_status(page: Any, lab: LabServer) -> None:
    panel = page.locator("#jupyter-stax-panel")
    for name, scheduler in (("local", "local"), ("slurm", "slurm")):
        item = panel.locator(f'.jp-StaxCluster[data-cluster="{name}"]')
        item.wait_for()
        assert scheduler in item.inner_text()
    # the live summaries arrive (sinfo/squeue for slurm, CPUs and load for local)
    page.wait_for_function(
        """() => [...document.querySelectorAll('#jupyter-stax-panel .jp-StaxCluster-summary')]
                 .every(e => e.textContent.trim().length > 0)""",
        timeout=30_000,
    )
    assert "queue debug" in panel.locator('.jp-StaxCluster[data-cluster="slurm"]').inner_text()
    status = page.locator(".jp-StaxStatus")
    assert status.inner_text().startswith("StaX:")
    screenshot(panel, "panel-clusters")
