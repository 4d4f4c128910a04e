"""'Run on a cluster...' (issue 16) in a real JupyterLab and a real browser: right-click a
notebook in the file browser, see its parameters cell in the form (cluster with its live
numbers, images with their fit), change a parameter, submit; the execution's tab opens and
follows it to completed, and its executed notebook (run by papermill on the cluster, here the
local one) opens with the injected value in its output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..engine.test_notebook_steps import make_notebook
from .conftest import screenshot
from .lab import LabServer

pytestmark = pytest.mark.slow


def test_right_click_run_on_a_cluster_then_open_the_executed_notebook(
    page: Any, lab: LabServer
) -> None:
    make_notebook(
        lab.root_dir / "work" / "analysis.ipynb",
        [
            ("markdown", "# A parametrised analysis", []),
            ("code", "year = 2023  # the season\nlabel = 'draft'", ["parameters"]),
            ("code", "print(f'analysis of {year}: {label}')", []),
        ],
    )
    page.locator('.jp-SideBar [data-id="filebrowser"]').click()
    page.locator('.jp-DirListing-item[title*="work"]').first.dblclick()
    item = page.locator('.jp-DirListing-item[data-file-type="notebook"]', has_text="analysis")
    item.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Run on a cluster…").click()

    form = page.locator(".jp-StaxRunNotebook")
    year = form.locator('input[data-param="year"]')
    year.wait_for(timeout=30_000)
    assert year.input_value() == "2023"  # prefilled from the parameters cell
    assert form.locator('input[data-param="label"]').input_value() == "draft"
    assert "the season" in form.inner_text()
    form.locator(".jp-StaxRunNotebook-cluster").select_option("local")
    # the cluster's live numbers, and the images with their fit on it
    page.wait_for_function(
        "() => /CPUs, load/.test(document.querySelector('.jp-StaxRunNotebook-live').textContent)",
        timeout=30_000,
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-StaxRunNotebook-image option')]"
        ".some(o => o.dataset.fit === 'fails' && o.textContent.includes('demo-arm'))",
        timeout=30_000,
    )
    year.fill("2024")
    form.locator('input[data-resource="time"]').fill("00:05:00")
    screenshot(page, "notebook-run-form")
    form.locator(".jp-StaxRunNotebook-submit").click()

    # the execution's tab opens and follows it to the end
    detail = page.locator('.jp-StaxDetail[data-state="completed"]')
    detail.wait_for(timeout=180_000)
    eid = detail.get_attribute("data-execution-id")
    assert eid
    ex = lab.api("GET", f"executions/{eid}")
    step = ex["steps"][0]
    assert step["state"] == "completed" and ex["workflow"]["steps"][0]["params"] == {"year": 2024}
    executed = Path(step["files"]["notebook"])
    assert executed == lab.root_dir / "work" / f"analysis.{eid}.ipynb"

    page.locator(".jp-StaxOpenExecutedNotebook").click()
    page.locator(f'.lm-TabBar-tab[title*="analysis.{eid}.ipynb"]').first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(o => o.textContent.includes('analysis of 2024: draft'))",
        timeout=60_000,
    )
    screenshot(page, "notebook-run-executed")
