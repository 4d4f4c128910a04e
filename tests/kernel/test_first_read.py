"""Issue 21 in a real kernel (nbclient) on the real Slurm: after a detached run whose jobs all
ended while no engine was alive, the FIRST ``%stax status`` and the FIRST ``%stax list`` show
the final states; when the scheduler does not answer, they say the states are being checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.models import UNVERIFIED_WARNING

from ..detached import canceled_before_start, failing_chain_ended, unreachable_conf

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


def run_cells(where: Path, kernelspec: str, *cells: str, **env: str) -> list[str]:
    """The cells run in a new kernel (in ``where``, with ``env`` added); each one's text."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("%load_ext jupyter_stax")]
        + [nbformat.v4.new_code_cell(c) for c in cells]
    )
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name=kernelspec, resources={"metadata": {"path": str(where)}}
    )
    try:
        client.execute(env={**os.environ, **env})
    finally:
        nbformat.write(nb, where / "executed-first-read.ipynb")
    return [_text(c) for c in nb.cells[1:]]


def _text(cell: Any) -> str:
    parts = []
    for o in cell.outputs:
        assert o.output_type != "error", "\n".join(o.get("traceback", []))
        if o.output_type == "stream":
            parts.append(o.text)
        elif "text/plain" in o.get("data", {}):
            parts.append(o.data["text/plain"])
    return "".join(parts)


def rows(table: str, first: str) -> list[list[str]]:
    return [ln.split() for ln in table.splitlines() if ln.split()[:1] == [first]]


def test_first_stax_status_after_detach_shows_the_final_states(
    store: Path, kernelspec: str, tmp_path: Path, slurm: str
) -> None:
    eid = failing_chain_ended(tmp_path, store)
    (status,) = run_cells(tmp_path, kernelspec, f"%stax status {eid}")
    assert "state      failed (3/3 steps done)" in status, status
    steps = {r[0]: r[1] for r in (rows(status, "s1") + rows(status, "s2") + rows(status, "s3"))}
    assert steps == {"s1": "completed", "s2": "failed", "s3": "skipped"}, status
    assert UNVERIFIED_WARNING not in status


def test_first_stax_list_after_detach_shows_the_final_states(
    store: Path, kernelspec: str, tmp_path: Path, slurm: str
) -> None:
    eid = failing_chain_ended(tmp_path, store)
    (listed,) = run_cells(tmp_path, kernelspec, "%stax list")
    (row,) = rows(listed, eid[:8])
    assert row[:5] == [eid[:8], "failing", "slurm", "failed", "3/3"], listed
    assert "being checked" not in listed


def test_stax_status_and_list_without_the_scheduler_say_being_checked(
    store: Path, kernelspec: str, tmp_path: Path, slurm: str
) -> None:
    """The job was scancelled before it started (no exit record) and the kernel's scheduler
    (and so its engine's) does not answer: the states are the submission's, and said so."""
    eid = canceled_before_start(tmp_path, store, tmp_path / "clusters.yaml")
    status, listed = run_cells(
        tmp_path,
        kernelspec,
        f"%stax status {eid}",
        "%stax list",
        SLURM_CONF=str(unreachable_conf(tmp_path)),
    )
    assert f"warning    {UNVERIFIED_WARNING}" in status, status
    assert rows(status, "a")[0][1] == "queued", status
    assert rows(listed, eid[:8])[0][3:6] == ["running", "(being", "checked)"], listed
