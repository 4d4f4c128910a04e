"""A remote Grid Engine's live detail: ``qstat -g c``, ``qhost -q`` and ``qstat -xml`` run on
the cluster in ONE SSH command (the same batch as Slurm's), with the connection's state; and
``doctor`` finds Grid Engine's commands on the remote PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_stax.core.api import SgeSummary
from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.engine.store import Store
from jupyter_stax.operations import Operations

from .remote_config import add_clusters, remote_entry
from .sshd import Client, Sshd
from .test_remote_sge import sge_cluster

pytestmark = [pytest.mark.ssh, pytest.mark.sge]


def test_a_remote_grid_engine_detail_in_one_command(
    sshd: Sshd, client: Client, sge: str, tmp_path: Path
) -> None:
    far = sge_cluster(sshd, client)
    store = Store(tmp_path / "stax.sqlite")
    ops = Operations(store=lambda: store, registry=lambda: ClusterRegistry([far]))
    try:
        d = ops.cluster("far")
        assert isinstance(d.summary, SgeSummary), d.note
        assert d.summary.queue == "all.q" and d.summary.slots.total > 0
        assert d.connection and d.connection.state == "connected"
        tr = ops.transport(far)
        before = tr.connection.stats.execs  # type: ignore[attr-defined]
        ops.cluster("far")
        assert tr.connection.stats.execs == before + 1  # type: ignore[attr-defined]
    finally:
        ops.close()
        store.close()


def test_doctor_finds_grid_engine_on_the_remote(
    sshd: Sshd, client: Client, sge: str, tmp_path: Path
) -> None:
    clusters = tmp_path / "clusters.yaml"
    add_clusters(clusters, gridfar=remote_entry(sshd, client, scheduler="sge", queue="all.q"))
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "--clusters", str(clusters), "--store",
         str(tmp_path / "stax.sqlite"), "doctor"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "JUPYTER_STAX_NO_SERVER": "1"},
    )
    mine = [ln for ln in done.stdout.splitlines() if "cluster gridfar (" in ln]
    assert mine and all(ln.startswith(("ok  ", "WARN")) for ln in mine), done.stdout
    assert any("scheduler commands: found on" in ln and "qsub" in ln for ln in mine), mine
