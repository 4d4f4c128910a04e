"""Which transport reaches a cluster: the factory the engine calls once per cluster.

Apart from :mod:`.transport` (the interface and the local implementation) so that the SSH
implementation (:mod:`.remote.transport`), which builds on that interface, is not imported by it:
no import cycle inside the engine package (import-linter checks it).
"""

from __future__ import annotations

from pathlib import Path

from ..core.models import Cluster
from .transport import LocalTransport, Transport


def transport_for(cluster: Cluster, state_dir: Path) -> Transport:
    """The transport of ``cluster``. ``state_dir``: jupyter_stax's state directory for it on the
    Jupyter side (a local cluster keeps the scheduler's helper files where PSI/J keeps them:
    ``state_dir/<executor name>``).

    A cluster with a ``host`` is remote: its transport is the SSH one
    (:class:`.remote.transport.SSHTransport`; ``state_dir`` keeps what it remembers of the
    cluster, e.g. the remote home)."""
    if cluster.remote:
        from .remote.transport import SSHTransport

        return SSHTransport(cluster, state_dir)
    return LocalTransport(aux_dir=state_dir / cluster.scheduler)
