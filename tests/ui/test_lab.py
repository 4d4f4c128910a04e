"""The StaX sidebar in a real JupyterLab and a real browser, against the real Slurm."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ..waiting import wait_for
from .conftest import screenshot, show_panel
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
    run: seq 1 5 | awk '{s+=$1} END {print "sum", s}'
"""

#: 60 instances, 2 failing (the CLI's sweep test uses the same)
SWEEP = """\
name: ui-sweep
steps:
  - name: sim
    sweep:
      n: [1, 2]
      seed: {range: [0, 30]}
    max_parallel: 4
    run: |
      echo {{n}} {{seed}} > out.txt
      case $STAX_SWEEP_INDEX in 4|40) exit 9;; esac
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
    # the image catalog, grouped by family, with the fit on the chosen cluster and its reason
    family = panel.locator('.jp-StaxFamily[data-family="demo"]')
    family.wait_for()
    x86 = family.locator('.jp-StaxImage[data-image="demo-x86"]')
    arm = family.locator('.jp-StaxImage[data-image="demo-arm"]')
    assert x86.locator(".jp-StaxFit-fits").count() == 1
    assert arm.locator(".jp-StaxFit-fails").count() == 1
    assert "cpu aarch64 != x86_64" in arm.inner_text()
    assert "cpu=aarch64" in arm.locator(".jp-StaxChips").inner_text()
    screenshot(panel, "panel-clusters")
    # the settings are in the settings editor (schema served by Lab)
    code, settings = lab.call("GET", "lab/api/settings/jupyter-stax:plugin")
    assert code == 200, settings
    props = settings["schema"]["properties"]
    assert props["refreshInterval"]["default"] == 30 and props["notifications"]["default"] is True
    # the commands are in the palette
    # (a key press is fire-and-forget: on a loaded machine one was lost once, and the palette
    # never opened; press again, only while it is not open, until it is)
    palette = page.locator("#command-palette")
    search = palette.locator("input")
    for _ in range(6):
        if not search.is_visible():
            page.keyboard.press("Control+Shift+C")
        try:
            search.wait_for(state="visible", timeout=10_000)
            break
        except Exception:  # playwright's TimeoutError: not open yet
            continue
    search.fill("StaX")
    # the palette renders its filtered items after the input event: wait for them (on a loaded
    # machine they were read before the first one was drawn, and the list was empty)
    item = palette.locator(".lm-CommandPalette-itemLabel", has_text="Open the StaX Sidebar")
    item.first.wait_for()
    labels = palette.locator(".lm-CommandPalette-itemLabel").all_inner_texts()
    for label in (
        "Open the StaX Sidebar",
        "Refresh StaX Clusters, Images and Executions",
        "Cancel Selected StaX Execution",
    ):
        assert label in labels, labels
    page.keyboard.press("Escape")
    # clicking the status bar item brings the sidebar back
    page.locator('.jp-SideBar [data-id="filebrowser"]').click()
    panel.wait_for(state="hidden")
    status.click()
    panel.wait_for(state="visible")


def open_detail(page: Any, eid: str) -> Any:
    row(page, eid).locator(".jp-StaxExecution-open").click()
    detail = page.locator(f'.jp-StaxDetail[data-execution-id="{eid}"]')
    detail.wait_for(timeout=30_000)
    return detail


def test_slurm_execution_appears_completes_and_shows_its_log(
    slurm: str, page: Any, lab: LabServer
) -> None:
    eid = submit(lab, HELLO)
    # the event stream brings it into the panel, then to completed (no reload, no refresh click)
    row(page, eid).wait_for(timeout=30_000)
    row(page, eid, "completed").wait_for(timeout=120_000)
    assert "2/2" in row(page, eid).inner_text()
    assert "slurm" in row(page, eid).inner_text()
    status = page.locator(".jp-StaxStatus")
    assert status.get_attribute("data-running") == "0"
    # a notification says it completed, with a button to open it
    toast = page.locator(".Toastify__toast", has_text="completed").first
    toast.wait_for(timeout=30_000)
    assert "ui-hello" in toast.inner_text()
    screenshot(page.locator("#jupyter-stax-panel"), "panel-executions")

    detail = open_detail(page, eid)
    ex = lab.api("GET", f"executions/{eid}")
    for step in ex["steps"]:
        tr = detail.locator(f'.jp-StaxSteps tr[data-step="{step["name"]}"]')
        assert tr.get_attribute("data-state") == "completed"
        text = tr.inner_text()
        assert step["native_id"] in text  # the Slurm job id
    # the DAG: both nodes, coloured by state
    assert detail.locator('.jp-StaxDag-node[data-state="completed"]').count() == 2
    # the log viewer tails the chosen step's stdout
    detail.locator('.jp-StaxSteps tr[data-step="greet"]').click()
    log = detail.locator('.jp-StaxLogViewer[data-step="greet"] .jp-StaxLog')
    page.wait_for_function(
        "el => el.textContent.includes('the end of greet')", arg=log.element_handle()
    )
    assert "line 3 from" in log.inner_text()
    screenshot(page, "detail")
    detail.locator('.jp-StaxLogViewer input[value="stderr"]').check()
    detail.locator('.jp-StaxLogViewer[data-stream="stderr"]').wait_for()
    # Retry is offered only when something failed; Cancel only while it runs
    assert detail.locator(".jp-StaxCancel").is_disabled()
    assert detail.locator(".jp-StaxRetry").is_disabled()

    # a sweep in the same detail tab: ONE row with its counts, expandable to its instances,
    # paged from the REST route, the failed ones first (60 instances, local: seconds)
    sid = submit(lab, SWEEP, "local")
    row(page, sid, "failed").wait_for(timeout=120_000)
    detail = open_detail(page, sid)
    sim = detail.locator('.jp-StaxSteps tr[data-step="sim"][data-state="failed"]')
    sim.wait_for(timeout=30_000)
    assert detail.locator('.jp-StaxSteps tr[data-step="sim"]').count() == 1  # one row
    assert "58/60 done, 2 failed; 2 of 60 instances" in sim.inner_text()
    sim.locator(".jp-StaxSweep-toggle").click()
    listed = detail.locator('.jp-StaxInstances[data-step="sim"] tbody tr')
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-StaxInstances tbody tr').length >= n", arg=50
    )
    assert listed.count() == 50  # the first page
    assert [listed.nth(i).get_attribute("data-instance") for i in range(3)] == ["4", "40", "0"]
    assert listed.nth(0).get_attribute("data-state") == "failed"
    assert "n=1 seed=4" in listed.nth(0).inner_text()
    detail.locator(".jp-StaxInstances-more").click()
    page.wait_for_function(
        "n => document.querySelectorAll('.jp-StaxInstances tbody tr').length >= n", arg=60
    )
    assert listed.count() == 60 and detail.locator(".jp-StaxInstances-more").count() == 0
    detail.locator(".jp-StaxInstances-filter").select_option("failed")
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-StaxInstances tbody tr').length === 2"
    )
    assert [listed.nth(i).get_attribute("data-instance") for i in range(2)] == ["4", "40"]
    screenshot(page, "detail-sweep")


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_cancel_from_the_detail_view_cancels_the_slurm_job(
    slurm: str, page: Any, lab: LabServer
) -> None:
    eid = submit(lab, LONG)

    def running_job() -> str | None:
        s = lab.api("GET", f"executions/{eid}")["steps"][0]
        return s["native_id"] if s["state"] == "running" and s["native_id"] else None

    job = wait_for(running_job, 90, "the sleeper step to run on Slurm")
    assert job in squeue_ids()
    row(page, eid, "running").wait_for(timeout=30_000)
    detail = open_detail(page, eid)
    log = detail.locator(".jp-StaxLog")
    page.wait_for_function("el => el.textContent.includes('started')", arg=log.element_handle())
    assert detail.locator(".jp-StaxLogViewer-status").inner_text() == "following"

    detail.locator(".jp-StaxCancel").click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for()
    assert "Cancel execution?" in dialog.inner_text()
    dialog.locator("button", has_text="Cancel execution").click()

    row(page, eid, "canceled").wait_for(timeout=60_000)
    page.locator(f'.jp-StaxDetail[data-execution-id="{eid}"][data-state="canceled"]').wait_for(
        timeout=30_000
    )
    wait_for(lambda: job not in squeue_ids(), 30, f"squeue to forget job {job}")
    assert lab.api("GET", f"executions/{eid}")["steps"][0]["state"] == "canceled"
    # the state filter lists it under canceled only
    page.locator("#jupyter-stax-panel .jp-StaxFilter").select_option("canceled")
    row(page, eid, "canceled").wait_for()
    page.locator("#jupyter-stax-panel .jp-StaxFilter").select_option("completed")
    row(page, eid).wait_for(state="detached")
    page.locator("#jupyter-stax-panel .jp-StaxFilter").select_option("")
    screenshot(page, "detail-canceled")


def notebook(*cells: str) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "cells": [
            {
                "cell_type": "code",
                "id": f"c{i}",
                "metadata": {},
                "source": src,
                "outputs": [],
                "execution_count": None,
            }
            for i, src in enumerate(cells)
        ],
    }


def test_a_notebook_cell_submits_with_the_magic_and_the_panel_follows(
    slurm: str, page: Any, lab: LabServer
) -> None:
    nb = notebook(
        "%load_ext jupyter_stax",
        '%%stax_task hello\necho "hello from a notebook cell on $(hostname)"',
        "run = %stax_submit --cluster slurm --name ui-magic\nrun.id",
    )
    code, _ = lab.call("PUT", "api/contents/magic.ipynb", {"type": "notebook", "content": nb})
    assert code in (200, 201)
    page.goto(f"{lab.url}lab/tree/magic.ipynb?token={lab.token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)

    def kernel_idle() -> bool:
        code, sessions = lab.call("GET", "api/sessions")
        return code == 200 and any(
            s["kernel"]["execution_state"] == "idle" for s in sessions if s.get("kernel")
        )

    wait_for(kernel_idle, 60, "the notebook's kernel to be idle")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    def submitted() -> str | None:
        page_ = lab.api("GET", "executions?limit=10")
        ids = [x["id"] for x in page_["executions"] if x["name"] == "ui-magic"]
        return ids[0] if ids else None

    eid = wait_for(submitted, 60, "the %stax_submit cell to submit")
    # the cell's output names the execution; the sidebar (re-opened) follows it to completed
    page.wait_for_function(
        "id => document.querySelector('.jp-Notebook').textContent.includes(id)",
        arg=eid,
        timeout=30_000,
    )
    show_panel(page)
    row(page, eid, "completed").wait_for(timeout=120_000)
    assert "ui-magic" in row(page, eid).inner_text()
    # the kernel's live monitor widget in the page catches up by itself (no cell runs now):
    # its step row and its log pane show the end
    page.wait_for_function(
        """() => {
            const nb = document.querySelector('.jp-Notebook');
            return !!nb.querySelector('[data-step="hello"][data-state="completed"]')
                && nb.textContent.includes('1/1 steps done')
                && nb.textContent.includes('hello from a notebook cell');
        }""",
        timeout=30_000,
    )
    screenshot(page, "notebook-magic")
    detail = open_detail(page, eid)
    log = detail.locator('.jp-StaxLogViewer[data-step="hello"] .jp-StaxLog')
    page.wait_for_function(
        "el => el.textContent.includes('hello from a notebook cell')", arg=log.element_handle()
    )
