"""Browser tests: a real ``jupyter lab`` (with jupyter_stax and the built extension) driven by
Python Playwright through Debian's chromium (``/usr/bin/chromium``; never ``playwright
install``). Outside CI they are skipped when chromium or playwright is missing.

Screenshots go to ``$STAX_SCREENSHOTS`` (default ``/tmp/stax-screenshots``); the test summary
names the folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import LabServer

CHROMIUM = os.environ.get("STAX_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("STAX_SCREENSHOTS", "/tmp/stax-screenshots"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

_saved: list[Path] = []


def _need(problem: str | None) -> None:
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright is not installed (pip install -e '.[test]')")
        raise
    _need(None if Path(CHROMIUM).exists() else f"{CHROMIUM} is missing (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def lab(stax_env: Path) -> Iterator[LabServer]:
    """A real ``jupyter lab`` on the isolated store, work directory and clusters file of
    ``stax_env`` (clusters ``local`` and ``slurm``)."""
    server = LabServer(
        stax_env / "lab",
        store=stax_env / "state" / "stax.sqlite",
        work_dir=stax_env / "runs",
        clusters_file=stax_env / "clusters.yaml",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if os.environ.get("STAX_UI_LOG"):
            print(server.log())


def show_panel(pg: Any) -> None:
    """Show the StaX sidebar. Its tab toggles the panel, and a page that JupyterLab restores
    from the saved workspace may have it open already (whether the layout was saved before a
    navigation depends on timing: seen in CI), so the tab is clicked only while it is hidden."""
    panel = pg.locator("#jupyter-stax-panel")
    if not panel.is_visible():
        pg.locator('.jp-SideBar [data-id="jupyter-stax-panel"]').click()
    panel.wait_for(state="visible", timeout=30_000)


@pytest.fixture
def page(browser: Any, lab: LabServer) -> Iterator[Any]:
    """JupyterLab open in a fresh tab, the StaX sidebar shown."""
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(f"{lab.url}lab?token={lab.token}", wait_until="domcontentloaded")
    pg.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    show_panel(pg)
    pg.wait_for_selector("#jupyter-stax-panel .jp-StaxCluster", timeout=30_000)
    try:
        yield pg
    finally:
        pg.close()
    assert not [e for e in errors if "stax" in e.lower()], errors


def screenshot(target: Any, name: str) -> Path:
    """Save a PNG of a page or an element under the screenshots folder."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    target.screenshot(path=str(path))
    _saved.append(path)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _saved:
        terminalreporter.write_line(
            f"StaX screenshots in {SCREENSHOTS}: " + ", ".join(p.name for p in _saved)
        )


@pytest.fixture(scope="session", autouse=True)
def _fresh_screenshots() -> None:
    if SCREENSHOTS.exists():
        for p in SCREENSHOTS.glob("*.png"):
            p.unlink()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
