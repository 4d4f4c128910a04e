"""The sidebar's "Build for cluster..." in a real JupyterLab and a real browser: a StaX family
whose catalog names its build recipe gets the action; the dialog's cluster picked, the build
runs for real (ch-image, a busybox-static base, no network) through ``POST stax/api/builds``,
its status and log shown live under the family until FINISHED, and the new variant listed in
the family (added to the family's own catalog file)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..images import BUSYBOX
from ..recipes import CONTAINERFILE, make_base
from .conftest import screenshot
from .lab import IMAGES, LabServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("ch-image") and BUSYBOX.exists()) and not os.environ.get("CI"),
        reason="needs ch-image (charliecloud-builders) and busybox-static",
    ),
]

#: the family as a catalog names it: one variant already there (it cannot run on this machine's
#: 'local': no GPU) and the recipe the family is built from
SOLVER = """\
  solver:
    description: a solver, for tests
    recipe: {recipe}
    variants:
      - name: solver-x86_64-cuda
        image: /images/solver-cuda
        labels: {{cpu: x86_64, gpu: cuda, mpi: none}}
"""


@pytest.fixture
def lab(stax_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LabServer]:
    """The Lab of the browser tests, with a recipe inside its root (gpu: none or cuda) and its
    catalog naming that recipe for the family 'solver'; ch-image's storage of this test."""
    monkeypatch.setenv("CH_IMAGE_STORAGE", str(tmp_path / "ch-storage"))
    server = LabServer(
        stax_env / "lab",
        store=stax_env / "state" / "stax.sqlite",
        work_dir=stax_env / "runs",
        clusters_file=stax_env / "clusters.yaml",
    )
    d = server.root_dir / "solver"
    d.mkdir()
    make_base(d / "base")
    (d / "Containerfile").write_text(CONTAINERFILE)
    (d / "stax.yaml").write_text(
        "stax: solver\nbase: ch:base\nmatrix: {gpu: [none, cuda]}\noutput: images\n"
    )
    (server.home / "images.yaml").write_text(IMAGES + SOLVER.format(recipe=d / "stax.yaml"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_build_for_cluster_from_the_sidebar(page: Any, lab: LabServer) -> None:
    panel = page.locator("#jupyter-stax-panel")
    family = panel.locator('.jp-StaxFamily[data-family="solver"]')
    family.locator('.jp-StaxImage[data-image="solver-x86_64-cuda"]').wait_for(timeout=30_000)
    # a family without a recipe has no build action
    assert panel.locator('.jp-StaxFamily[data-family="demo"] .jp-StaxBuildFor').count() == 0
    family.locator(".jp-StaxBuildFor").click()

    dialog = page.locator(".jp-Dialog")
    picker = dialog.locator(".jp-StaxBuildDialog-cluster")
    picker.wait_for()
    assert picker.locator("option").all_inner_texts() == ["local", "slurm"]
    assert "stax.yaml" in dialog.inner_text()
    screenshot(dialog.locator(".jp-Dialog-content"), "build-dialog")
    picker.select_option("local")
    # every status the sidebar shows, in order (it is polled live, not read at the end)
    page.evaluate(
        """() => {
        window.staxBuildStates = [];
        const note = () => {
          const el = document.querySelector('.jp-StaxFamily[data-family="solver"] .jp-StaxBuild');
          const s = el && el.getAttribute('data-build-status');
          const seen = window.staxBuildStates;
          if (s && seen[seen.length - 1] !== s) { seen.push(s); }
        };
        new MutationObserver(note).observe(document.body, {subtree: true, childList: true,
          attributes: true, attributeFilter: ['data-build-status']});
      }"""
    )
    dialog.locator("button.jp-mod-accept").click()

    build = family.locator(".jp-StaxBuild")
    build.wait_for(timeout=30_000)
    assert family.locator(".jp-StaxBuildFor").is_disabled()  # one build of a family at a time
    family.locator('.jp-StaxBuild[data-build-status="FINISHED"]').wait_for(timeout=180_000)
    states = page.evaluate("window.staxBuildStates")
    assert states[-1] == "FINISHED" and len(states) >= 2, states
    assert set(states) <= {"STARTING", "PENDING", "BUILDING", "CONVERTING", "FINISHED"}, states
    assert "FINISHED for local" in build.locator(".jp-StaxBuild-message").inner_text()
    log = build.locator(".jp-StaxBuild-log").inner_text()
    assert "solver-x86_64-none: building" in log  # the progress lines
    assert "===== solver-x86_64-none =====" in log and "ch-image" in log  # the builder's log

    # the new variant is listed in its family (the sidebar refreshed its images)
    family.locator('.jp-StaxImage[data-image="solver-x86_64-none"]').wait_for(timeout=30_000)
    assert family.locator(".jp-StaxBuildFor").is_enabled()
    screenshot(panel, "panel-build-finished")

    # what the server built and catalogued, read back over REST
    bid = build.get_attribute("data-build-id")
    st = lab.api("GET", f"builds/{bid}")
    assert st["status"] == "FINISHED" and st["catalog"] == str(lab.home / "images.yaml")
    (ref,) = st["images"]
    assert (Path(ref) / "etc" / "stax-variant").read_text() == "mpi=none gpu=none\n"
    listed = {i["name"]: i for i in lab.api("GET", "images?cluster=local")["images"]}
    assert listed["solver-x86_64-none"]["fits"] is True
    assert listed["solver-x86_64-none"]["recipe"] == str(lab.root_dir / "solver" / "stax.yaml")
