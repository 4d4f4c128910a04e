"""The sidebar's entry of a remote cluster: the remote Slurm's live numbers (asked over the real
sshd) and the connection's state, connected or refused with the host key problem named; and the
log viewer tailing a step that ran there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..ssh.remote_config import add_clusters, remote_entry
from ..ssh.sshd import REMOTE_USER, Sshd
from .conftest import screenshot

pytestmark = [pytest.mark.slow, pytest.mark.ssh]

REMOTE_HELLO = """\
name: ui-remote
steps:
  - name: greet
    run: |
      echo "hello from $(id -un)"
      mkdir -p res && printf 'x,y\\n1,2\\n' > res/out.csv
      echo "the end of greet"
"""


@pytest.fixture
def remote_clusters(stax_env: Path, sshd: Sshd, slurm: str) -> None:
    client = sshd.client("root")
    empty = stax_env / "empty_known_hosts"
    empty.write_text("")
    add_clusters(stax_env / "clusters.yaml", far=remote_entry(sshd, client),
                 unknown_key=remote_entry(sshd, client, known_hosts=str(empty)))


def test_a_remote_cluster_its_connection_and_a_remote_step_log(
    remote_clusters: None, page: Any, lab: Any, sshd: Sshd, tmp_path: Path
) -> None:
    """One Lab for all (a Lab start is the cost): the sidebar entries, then a step that ran on
    the remote Slurm, its log read on the cluster over SSH, in the execution's detail view, and
    one of its files listed with its size and downloaded through the transport."""
    from .test_lab import open_detail, row

    panel = page.locator("#jupyter-stax-panel")
    far = panel.locator('.jp-StaxCluster[data-cluster="far"]')
    far.locator('.jp-StaxCluster-connection[data-connection="connected"]').wait_for(
        timeout=60_000
    )
    assert f"connected to {REMOTE_USER}@127.0.0.1" in far.inner_text()
    summary = far.locator(".jp-StaxCluster-summary").inner_text()
    assert "debug:" in summary and "nodes" in summary and "my jobs" in summary
    bad = panel.locator('.jp-StaxCluster[data-cluster="unknown_key"]')
    refused = bad.locator('.jp-StaxCluster-connection[data-connection="refused"]')
    refused.wait_for(timeout=60_000)
    text = refused.inner_text()
    assert "host key unknown" in text and "ssh-keyscan" in text, text
    screenshot(panel, "panel-remote-clusters")

    ex = lab.api("POST", "executions", {"workflow": REMOTE_HELLO, "cluster": "far"})
    eid = str(ex["id"])
    row(page, eid, "completed").wait_for(timeout=180_000)
    detail = open_detail(page, eid)
    detail.locator('.jp-StaxSteps tr[data-step="greet"]').click()
    log = detail.locator('.jp-StaxLogViewer[data-step="greet"] .jp-StaxLog')
    page.wait_for_function(
        "el => el.textContent.includes('the end of greet')", arg=log.element_handle()
    )
    assert f"hello from {REMOTE_USER}" in log.inner_text()
    screenshot(page, "detail-remote-log")

    files = detail.locator('.jp-StaxStepFiles[data-step="greet"]')
    item = files.locator('tr[data-path="res/out.csv"]')
    item.wait_for(timeout=60_000)
    assert "8 B" in item.inner_text()
    screenshot(detail, "detail-step-files")
    with page.expect_download(timeout=60_000) as info:
        item.locator(".jp-StaxStepFiles-download").click()
    download = info.value
    assert download.suggested_filename == "out.csv"
    saved = tmp_path / "out.csv"
    download.save_as(saved)
    assert saved.read_text() == "x,y\n1,2\n"
