"""notebooks/07_data_in_out.ipynb, executed by nbclient in a real kernel on the local cluster
(the remote run of the same notebook is tests/ssh/test_staging_notebook.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_notebooks import execute, outputs

pytestmark = pytest.mark.timeout(600)


def check(nb: Any, where: Path, fetched: str) -> str:
    assert outputs(nb, "run = %stax_submit").strip() == "completed"
    lines = outputs(nb, "import csv").splitlines()
    assert lines[0].startswith(f"{fetched} [('results/table.csv', ")
    assert lines[1] == "sha True"
    assert lines[2] == "['config.json', 'mesh.sha']"
    return outputs(nb, "%stax fetch")


def test_data_notebook_on_local(store: Path, kernelspec: str, tmp_path: Path) -> None:
    nb = execute("07_data_in_out.ipynb", tmp_path, kernelspec)
    text = check(nb, tmp_path, "in place")
    assert "step first (local): 2 file(s)" in text and "in place (not copied)" in text
    assert not (tmp_path / "stax-outputs").exists()  # nothing copied on a local cluster
