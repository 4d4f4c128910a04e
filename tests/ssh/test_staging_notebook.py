"""notebooks/07_data_in_out.ipynb in a real kernel (nbclient) with its remote steps on the
remote Slurm reached through the real sshd: a 50 MB input goes from the notebook's directory
to the remote account, the middle step (local) gets the first's files, the last step's outputs
come back to stax-outputs/ and the notebook reads them (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..kernel.conftest import kernelspec, store  # noqa: F401 (fixtures)
from ..kernel.test_data_notebook import check
from ..kernel.test_notebooks import execute
from .sshd import REMOTE_USER, Client, Sshd

pytestmark = [pytest.mark.ssh, pytest.mark.slurm, pytest.mark.timeout(900)]


def test_data_notebook_with_a_remote_cluster(
    store: Path, kernelspec: str, tmp_path: Path, stax_env: Path, sshd: Sshd, client: Client,  # noqa: F811
    slurm: str,
) -> None:
    (stax_env / "clusters.yaml").write_text(
        "clusters:\n  far:\n    scheduler: slurm\n"
        f"    host: {REMOTE_USER}@127.0.0.1\n    port: {sshd.port}\n"
        f"    identity_file: {client.identity}\n    known_hosts: {client.known_hosts}\n"
        "    queue: debug\n    walltime: '00:05:00'\n    poll_interval: 1\n"
    )
    nb = execute("07_data_in_out.ipynb", tmp_path, kernelspec, STAX_DEMO_REMOTE="far")
    text = check(nb, tmp_path, "fetched")
    eid = next(p.name for p in (tmp_path / "stax-outputs").iterdir())
    out = tmp_path / "stax-outputs" / eid
    assert (out / "last" / "results" / "table.csv").read_text().startswith("kind,value\nsha,")
    assert sorted(p.name for p in (out / "first" / "parts").iterdir()) == [
        "config.json", "mesh.sha"
    ]
    assert "step first (far): 2 file(s)" in text and str(out / "first") in text
