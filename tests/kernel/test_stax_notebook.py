"""notebooks/03_stax_images.ipynb, executed by nbclient in a real kernel: it builds a labelled
busybox image, lists the catalog with fit per cluster, runs a step inside the image with ch-run on
``local`` and on the real Slurm, and shows a refused variant."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ..images import busybox_available
from .test_notebooks import execute, outputs

pytestmark = pytest.mark.timeout(600)


@pytest.mark.slurm
def test_stax_images_notebook(
    store: Path, kernelspec: str, tmp_path: Path, slurm: str, stax_env: Path
) -> None:
    if not busybox_available():
        pytest.skip("needs ch-run and busybox-static")
    (stax_env / "clusters.yaml").write_text(
        "clusters:\n  slurm:\n    scheduler: slurm\n    queue: debug\n    poll_interval: 1\n"
        "    container_runtime: charliecloud\n    traits: {cpu: x86_64, mpi: none}\n"
    )
    nb = execute("03_stax_images.ipynb", tmp_path, kernelspec)
    listing = outputs(nb, "%load_ext jupyter_stax").splitlines()
    assert listing[0].startswith("cluster local: runtime ")  # then the header, the variants
    rows = {ln.split()[1]: ln for ln in listing[2:]}
    assert rows["busy-x86_64"].split()[0::2][:2] == ["busy", "yes"]
    assert "NO: " in rows["busy-arm"] and "cpu aarch64 != x86_64" in rows["busy-arm"]
    out = outputs(nb, "await run.wait_async(120)").splitlines()
    assert out[0] == "completed" and out[1] == "inside the busy StaX"
    assert out[2].startswith("arch x86_64, in ") and out[2].endswith("/probe")
    assert out[3] == (
        f"ran in busy-x86_64 ({tmp_path / 'stax-images-demo' / 'busy-x86'}) via charliecloud; "
        "cpu label x86_64"
    )
    refused = outputs(nb, "import jupyter_stax as stax")
    assert refused.startswith(
        "step 'a': StaX image 'busy-arm' does not fit cluster 'local': cpu aarch64 != x86_64; "
        "gpu cuda not offered"
    )
    slurm_out = outputs(nb, "from jupyter_stax.service import LocalService").splitlines()
    assert slurm_out[:3] == [
        "slurm: runtime charliecloud, cpu x86_64",
        "completed",
        "inside the busy StaX",
    ]
    assert slurm_out[3].startswith("job ") and " on node" in slurm_out[3]
    shutil.rmtree(tmp_path / "stax-images-demo", ignore_errors=True)
