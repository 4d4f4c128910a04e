"""``jupyter stax rerun``: a run on the real Slurm in a StaX image (Charliecloud), exported as a
crate, re-run from that crate by a store that never saw it (another machine's view) on another
cluster entry, where the family's other variant is chosen and the run says why; and a re-run by
id with a parameter changed, pinned to the same variant.

The two cluster entries share the test Slurm: ``slurm-arm`` says its nodes are aarch64 (traits),
so the x86_64 variant does not fit there. Both variants hold the same busybox; each has its own
marker file, which the step prints, so the log proves which image ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..images import LABELS, busybox_available, charliecloud_image
from ..proc import kill
from .test_cli import Stax
from .test_cli import cli as cli  # the store-direct `jupyter stax` fixture

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]

WORKFLOW = """\
name: md
params: {n: 3, msg: hi}
steps:
  - name: md
    image: busy
    run: cat /etc/stax-marker; echo "n={{n}} msg={{msg}}"
"""


def busy_variants(stax_env: Path) -> tuple[Path, Path]:
    """Two real Charliecloud images of the `busy` family under ``stax_env/images``: busy-x86
    (the fitting one here) and busy-arm (labelled aarch64); skips (fails in CI) without
    ch-run and busybox-static."""
    if not busybox_available():
        if os.environ.get("CI"):
            pytest.fail("CI needs ch-run and busybox-static")
        pytest.skip("needs ch-run and busybox-static")
    x86 = charliecloud_image(stax_env / "images" / "busy-x86", marker="marker-x86")
    arm_labels = {**LABELS, "org.hpe.staxs.cpu": "aarch64"}
    arm = charliecloud_image(stax_env / "images" / "busy-arm", arm_labels, marker="marker-arm")
    return x86, arm


@pytest.fixture
def stax_images(stax_env: Path, slurm: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    x86, arm = busy_variants(stax_env)
    (stax_env / "images.yaml").write_text(
        "stax:\n"
        "  busy:\n"
        "    variants:\n"
        f"      - {{name: busy-x86, image: {x86}, digest: 'sha256:{'1' * 64}'}}\n"
        f"      - {{name: busy-arm, image: {arm}, digest: 'sha256:{'2' * 64}'}}\n"
    )
    monkeypatch.setenv("JUPYTER_STAX_IMAGES", str(stax_env / "images.yaml"))
    entry = (
        "    scheduler: slurm\n    queue: debug\n    walltime: '00:10:00'\n    poll_interval: 1\n"
        "    container_runtime: charliecloud\n"
    )
    (stax_env / "clusters.yaml").write_text(
        "clusters:\n"
        f"  slurm:\n{entry}    traits: {{cpu: x86_64, mpi: none}}\n"
        f"  slurm-arm:\n{entry}    traits: {{cpu: aarch64, mpi: none}}\n"
    )
    return stax_env


class Elsewhere(Stax):
    """``jupyter stax --store OTHER ...``: another store, as on another machine."""

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return super().__call__(*args, "--store", str(self.store), timeout=timeout)


def test_rerun_a_crate_elsewhere_chooses_the_fitting_variant(
    cli: Stax, stax_images: Path
) -> None:
    cli.write("md.yaml", WORKFLOW)
    out = cli.ok("run", "md.yaml", "--cluster", "slurm", "-p", "msg=$(id) 'q'", "--wait")
    eid = out.split()[1]
    first = cli.status(eid)
    assert first["state"] == "completed", first
    assert first["steps"][0]["resolved_image"]["name"] == "busy-x86"
    assert cli.ok("logs", eid, "md") == "marker-x86\nn=3 msg=$(id) 'q'\n"

    # by id, a parameter changed: the same variant, pinned; nothing else changes
    out = cli.ok("rerun", eid, "-p", "n=5")
    assert "changed:" not in out and out.startswith("submitted ")
    by_id = out.split()[1]

    # the crate, on "another machine": a store that never saw the run
    crate = Path(cli.ok("export", eid).strip())
    elsewhere = stax_images / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / crate.name
    shutil.move(crate, moved)
    other = Elsewhere(elsewhere, elsewhere / "stax.sqlite")
    try:
        assert other.ok("list").strip() == "no executions"
        out = other.ok("rerun", moved.name, "--cluster", "slurm-arm")
        assert "changed: step 'md': busy-x86 -> busy-arm: cpu x86_64 != aarch64" in out
        arm = out.split()[1]
        # the crate's own cluster is known here: without --cluster it runs there, pinned
        pinned = other.ok("rerun", str(moved), "-q").strip()
        # no variant of the family fits: refused before anything runs, with the reason
        (stax_images / "images.yaml").write_text(
            (stax_images / "images.yaml").read_text().split("      - {name: busy-arm")[0]
        )
        r = other("rerun", str(moved), "--cluster", "slurm-arm")
        assert r.returncode == 2, r.stderr
        assert "no variant of StaX 'busy' fits cluster 'slurm-arm': cpu x86_64 != aarch64" in (
            r.stderr
        )

        ex = other.wait_final(arm, 120)
        assert ex["state"] == "completed" and ex["cluster"] == "slurm-arm", ex
        assert ex["steps"][0]["resolved_image"]["name"] == "busy-arm"
        assert ex["origin"]["rerun_of"] == f"crate {moved.name}"
        assert ex["origin"]["changes"] == ["step 'md': busy-x86 -> busy-arm: cpu x86_64 != aarch64"]
        assert ex["params"] == {"n": 3, "msg": "$(id) 'q'"}  # read from the crate
        assert other.ok("logs", arm, "md") == "marker-arm\nn=3 msg=$(id) 'q'\n"
        assert f"re-run of  crate {moved.name}" in other.ok("status", arm)
        ex = other.wait_final(pinned, 120)
        assert ex["state"] == "completed" and ex["cluster"] == "slurm", ex
        assert ex["origin"]["changes"] == [] and other.ok("logs", pinned, "md").startswith(
            "marker-x86\n"
        )
    finally:
        kill(other.daemon_pids())
    again = cli.wait_final(by_id, 120)
    assert again["state"] == "completed", again
    assert again["origin"] == {"workflow": None, "version": None, "rerun_of": eid, "changes": []}
    assert again["cluster"] == "slurm" and again["params"]["msg"] == "$(id) 'q'"
    assert again["steps"][0]["resolved_image"]["name"] == "busy-x86"
    assert cli.ok("logs", by_id, "md") == "marker-x86\nn=5 msg=$(id) 'q'\n"
    assert [x["id"] for x in json.loads(cli.ok("list", "--json"))] == [by_id, eid]
