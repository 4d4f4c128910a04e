"""Remote cluster entries of the test login node in a clusters file (for tests that start a
real Jupyter server, Lab or the CLI, which read the clusters from a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .sshd import REMOTE_USER, Client, Sshd


def remote_entry(sshd: Sshd, client: Client, **kw: Any) -> dict[str, Any]:
    """A ``scheduler: slurm`` entry for ``stax-remote@127.0.0.1`` on ``sshd`` (``kw`` wins)."""
    return {
        "scheduler": "slurm", "host": f"{REMOTE_USER}@127.0.0.1", "port": sshd.port,
        "identity_file": client.identity, "known_hosts": client.known_hosts,
        "queue": "debug", "walltime": "00:05:00", "poll_interval": 1, **kw,
    }


def add_clusters(clusters_file: Path, **entries: dict[str, Any]) -> None:
    """Add (or replace) entries of ``clusters_file``."""
    conf = yaml.safe_load(clusters_file.read_text()) if clusters_file.exists() else None
    conf = conf or {}
    conf.setdefault("clusters", {}).update(entries)
    clusters_file.write_text(yaml.safe_dump(conf))
