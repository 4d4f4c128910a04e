"""The execution tab's "Export RO-Crate" in a real JupyterLab and a real browser: disabled while
the execution runs, a zip download of the Workflow Run RO-Crate once it is final."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..crates import check_crate
from .conftest import screenshot
from .lab import LabServer
from .test_lab import open_detail, row, submit

pytestmark = pytest.mark.slow

FAILS = """\
name: ui-crate
steps:
  - name: ok
    run: echo fine
  - name: bad
    after: [ok]
    run: echo broken >&2; exit 7
"""


def test_export_ro_crate_downloads_the_crate_of_a_finished_run(
    page: Any, lab: LabServer, tmp_path: Path
) -> None:
    eid = submit(lab, FAILS, cluster="local")
    row(page, eid, "failed").wait_for(timeout=60_000)
    detail = open_detail(page, eid)
    button = detail.locator(".jp-StaxExportCrate")
    button.wait_for()
    assert button.is_enabled()
    screenshot(detail, "detail-export-crate")
    with page.expect_download(timeout=30_000) as info:
        button.click()
    download = info.value
    assert download.suggested_filename == f"ui-crate-{eid}.crate.zip"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    g = check_crate(saved)
    assert g[f"#{eid}-bad-1"]["error"].startswith("failed: exit code 7")


def test_export_ro_crate_is_disabled_while_the_execution_runs(
    page: Any, lab: LabServer
) -> None:
    eid = submit(lab, "name: ui-slow\nsteps:\n  - name: s\n    run: sleep 300\n", cluster="local")
    row(page, eid, "running").wait_for(timeout=60_000)
    detail = open_detail(page, eid)
    button = detail.locator(".jp-StaxExportCrate")
    button.wait_for()
    assert button.is_disabled()
    assert "finished run" in (button.get_attribute("title") or "")
    lab.api("DELETE", f"executions/{eid}")
    page.locator(f'.jp-StaxDetail[data-execution-id="{eid}"][data-state="canceled"]').wait_for(
        timeout=60_000
    )
    assert button.is_enabled()
