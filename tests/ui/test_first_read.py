"""Issue 21 in the StaX sidebar (a real JupyterLab, a real browser, the real Slurm): after two
detached runs ended while no engine was alive, the first listing shows the one whose jobs left
their exit records with its final states, and marks the one only the scheduler could settle,
whose scheduler does not answer the Lab's engine, as "being checked" (list and detail view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import UNVERIFIED_WARNING

from ..detached import canceled_before_start, failing_chain_ended, unreachable_conf
from .conftest import screenshot, show_panel
from .lab import LabServer
from .test_lab import row

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.timeout(300)]


def test_sidebar_marks_states_being_checked_and_shows_settled_ones_as_final(
    browser: Any, stax_env: Path, slurm: str
) -> None:
    store = stax_env / "state" / "stax.sqlite"
    ended = failing_chain_ended(stax_env, store)  # every job left its exit record
    held = canceled_before_start(stax_env, store, stax_env / "clusters.yaml")  # none left
    lab = LabServer(
        stax_env / "lab",
        store=store,
        work_dir=stax_env / "runs",
        clusters_file=stax_env / "clusters.yaml",
    )
    lab.start(SLURM_CONF=str(unreachable_conf(stax_env)))
    pg = browser.new_page()
    try:
        pg.goto(f"{lab.url}lab?token={lab.token}", wait_until="domcontentloaded")
        pg.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        show_panel(pg)
        checking = row(pg, held, "running")
        checking.wait_for(timeout=60_000)
        assert checking.get_attribute("data-unverified") == "true"
        assert checking.locator(".jp-StaxUnverified").inner_text() == "being checked"
        assert UNVERIFIED_WARNING in (checking.get_attribute("title") or "")  # all warnings
        settled = row(pg, ended, "failed")
        settled.wait_for(timeout=30_000)
        assert settled.get_attribute("data-unverified") is None
        assert settled.locator(".jp-StaxUnverified").count() == 0
        assert "3/3" in settled.inner_text()
        screenshot(pg.locator("#jupyter-stax-panel"), "panel-being-checked")
        checking.locator(".jp-StaxExecution-open").click()
        detail = pg.locator(f'.jp-StaxDetail[data-execution-id="{held}"]')
        detail.wait_for(timeout=30_000)
        assert detail.locator(".jp-StaxDetail-header .jp-StaxUnverified").count() == 1
        assert UNVERIFIED_WARNING in detail.locator(".jp-StaxDetail-header").inner_text()
    finally:
        pg.close()
        lab.stop()
