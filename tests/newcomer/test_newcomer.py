"""What a newcomer does, done as a newcomer: a NEW unprivileged user (an empty home; on its PATH
only Debian's ``/usr/bin/python3``, and ``/usr/bin/node``) makes a fresh ``git clone`` of this
checkout's committed HEAD and types the README's commands:

1. ``bash scripts/demo.sh``: no venv is active, so it makes the project venv ``.venv/``, installs
   jupyter-stax there from PyPI's packages (without building the JupyterLab extension) and runs
   the demo workflows;
2. ``bash scripts/demo.sh --lab``: builds the JupyterLab extension (jlpm, from npm) into the venv
   and serves Lab; a real browser (Debian's chromium) opens the quickstart notebook and the StaX
   sidebar and runs the notebook's first cells up to the finished execution;
3. ``bash scripts/demo.sh`` again: it says there is nothing to install (the stamp).

Root only (it creates the user); required in CI. The user and its home are left for a look
afterwards; the next run deletes them first.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..proc import wait_for
from ..server.real_server import free_port
from ..ui.conftest import CHROMIUM, CHROMIUM_ARGS, screenshot
from ..unprivileged import UnprivilegedUser, require_root

ROOT = Path(__file__).resolve().parents[2]
USER = UnprivilegedUser("staxnewcomer")
CLONE = "jupyter_stax"  # the clone's directory in the user's home
IN_CLONE = f"cd ~/{CLONE} && "

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def tail(p: subprocess.CompletedProcess[str]) -> str:
    return f"exit {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    """A new user with a fresh clone of the checkout's HEAD in its home."""
    require_root("the newcomer test")
    home = USER.create(fresh=True)
    assert not any((home / d).exists() for d in (".local", ".cache", ".npm", ".yarn")), home
    dest = home / CLONE
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    assert git("rev-parse", "HEAD", cwd=dest) == git("rev-parse", "HEAD", cwd=ROOT)
    USER.chown(dest)
    yield dest
    USER.kill_all()


def test_demo_sh_in_a_fresh_clone_makes_a_venv_and_runs_the_demos(clone: Path) -> None:
    env = USER.run(
        "command -v python3 jupyter jupyter-stax; cd / && python3 -c 'import jupyter_stax'"
    )
    assert env.stdout.split() == ["/usr/bin/python3"], env.stdout  # no jupyter anywhere yet
    assert "No module named 'jupyter_stax'" in env.stderr, env.stderr

    done = USER.run(IN_CLONE + "bash scripts/demo.sh", timeout=1200)
    assert done.returncode == 0, tail(done)
    err = done.stderr
    assert "== no active venv: creating the project venv .venv/" in err, err
    assert (
        "== installing jupyter-stax from this checkout into .venv/ "
        "(without the JupyterLab extension: the CLI demo does not need it)" in err
    ), err
    # the demo workflows ran to the end with the venv's `jupyter stax`
    assert "state      completed (2/2 steps done)" in done.stdout, done.stdout
    assert "state      completed (4/4 steps done)" in done.stdout, done.stdout
    assert "total: 5050" in done.stdout
    assert "== all executions" in err
    venv = clone / ".venv"
    assert (venv / "bin" / "jupyter-stax").exists()
    # nothing went to the system Python or the user's site; the checkout stays clean (.venv/
    # is git-ignored) and the extension was not built
    assert not (USER.home / ".local" / "lib").exists()
    assert USER.run(IN_CLONE + "git status --porcelain").stdout == ""
    assert not (clone / "jupyter_stax" / "labextension").exists()
    assert not (venv / "share" / "jupyter" / "labextensions" / "jupyter-stax").exists()


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        return int(r.status)


def test_demo_sh_lab_builds_the_extension_and_the_quickstart_runs_in_a_browser(
    clone: Path, tmp_path: Path
) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing (pip install -e '.[test]')")
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
    port, token = free_port(), "newcomer-token"
    base = f"http://127.0.0.1:{port}/"
    log = tmp_path / "demo-lab.log"
    with log.open("wb") as out:
        lab = USER.start(
            IN_CLONE + f"PORT={port} JUPYTER_TOKEN={token} exec bash scripts/demo.sh --lab", out
        )

    def serving() -> bool:
        assert lab.poll() is None, log.read_text()[-4000:]
        try:
            return get(f"{base}api/status?token={token}") == 200
        except OSError:
            return False

    try:
        wait_for(serving, 1200, "demo.sh --lab to install and serve JupyterLab", interval=1)
        said = log.read_text()
        assert "== no active venv: using the project venv .venv/" in said, said
        assert (
            "== installing jupyter-stax from this checkout into .venv/ with the JupyterLab "
            "extension (built by jlpm" in said
        ), said
        assert (clone / "jupyter_stax" / "labextension" / "static" / "style.js").exists()
        installed = clone / ".venv" / "share" / "jupyter" / "labextensions" / "jupyter-stax"
        assert (installed / "package.json").exists()
        assert get(f"{base}stax/api/info?token={token}") == 200
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1400, "height": 900},
            )
            try:
                run_quickstart(browser.new_page(), base, token)
            finally:
                browser.close()
    finally:
        USER.stop(lab)


def run_quickstart(page: Any, base: str, token: str) -> None:
    """Open the quickstart and the StaX sidebar, run the notebook's cells up to the one that
    waits for the execution (Shift+Enter, as a user does), and see them finish."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}lab/tree/notebooks/01_quickstart.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.locator('.jp-SideBar [data-id="jupyter-stax-panel"]').click(timeout=60_000)
    page.wait_for_selector('#jupyter-stax-panel .jp-StaxCluster[data-cluster="local"]')

    def kernel_idle() -> bool:
        with urllib.request.urlopen(f"{base}api/sessions?token={token}", timeout=10) as r:
            sessions = json.loads(r.read())
        return any(s["kernel"]["execution_state"] == "idle" for s in sessions if s.get("kernel"))

    wait_for(kernel_idle, 120, "the quickstart's kernel to be idle", interval=0.5)
    cells = page.locator(".jp-Notebook .jp-Cell")
    # cells 0-9: the title, %load_ext + %stax clusters, three %%stax_task steps, %stax_submit
    # (its live monitor), and `await run.wait_async(120)` printing the state and the report
    assert "await run.wait_async" in cells.nth(9).inner_text()
    cells.nth(0).click()
    for _ in range(10):
        page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        """() => {
            const nb = document.querySelector('.jp-Notebook');
            return nb.textContent.includes('sum of 1..10 = 55, mean 5.5')
                && !!nb.querySelector('[data-step="report"][data-state="completed"]')
                && nb.textContent.includes('3/3 steps done');
        }""",
        timeout=180_000,
    )
    text = cells.nth(9).inner_text()
    assert "completed" in text and "sum of 1..10 = 55, mean 5.5" in text, text
    assert "local" in cells.nth(1).inner_text()  # %stax clusters printed the local cluster
    screenshot(page, "newcomer-quickstart")
    assert not [e for e in errors if "stax" in e.lower()], errors


def test_demo_sh_again_installs_nothing(clone: Path) -> None:
    for _ in range(2):  # the first run installs if this test runs alone
        done = USER.run(IN_CLONE + "bash scripts/demo.sh", timeout=1200)
        assert done.returncode == 0, tail(done)
    assert "== jupyter-stax from this checkout is up to date in .venv/: nothing to install" in (
        done.stderr
    ), done.stderr
    assert "installing" not in done.stderr, done.stderr
    assert "state      completed (4/4 steps done)" in done.stdout, done.stdout
