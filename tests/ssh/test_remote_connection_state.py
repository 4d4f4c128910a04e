"""A remote cluster's connection state as ``GET clusters/{name}`` (the operations) says it, on a
PRIVATE sshd that the test stops and whose host key it changes: connected; reconnecting since
when and why while sshd is down (and a log read is a 503, not a wrong answer); connected again;
refused with the host key problem and its fix."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import Cluster
from jupyter_stax.engine.remote import open_connection
from jupyter_stax.engine.remote.transport import SSHTransport, target_of
from jupyter_stax.engine.store import Store
from jupyter_stax.engine.transport import Transport, TransportError
from jupyter_stax.operations import Operations
from jupyter_stax.operations.remote_logs import read_remote_chunk

from ..waiting import wait_for
from .sshd import Client, Sshd
from .test_remote_slurm import cluster

pytestmark = pytest.mark.ssh


@pytest.fixture
def far_own(own_sshd: Sshd, own_client: Client, slurm: str) -> Iterator[Cluster]:
    yield cluster(own_sshd, own_client)
    own_sshd.start()  # whatever happened: up again for the next test


def test_connection_state_through_an_outage_and_a_changed_host_key(
    far_own: Cluster, own_sshd: Sshd, tmp_path: Path
) -> None:
    tr = SSHTransport(far_own, tmp_path / "state",
                      connection=open_connection(target_of(far_own), backoff=(0.2, 1.0)))
    transports: dict[str, Transport] = {"far": tr}
    store = Store(tmp_path / "stax.sqlite")
    ops = Operations(store=lambda: store, registry=lambda: ClusterRegistry([far_own]),
                     transport=lambda c: transports[c.name])
    try:
        assert tr.connection_state().state == "idle"  # nothing asked yet: not connected
        d = ops.cluster("far")
        assert d.connection and d.connection.state == "connected" and d.summary is not None

        own_sshd.kill_connections()
        own_sshd.stop()
        before = time.time()
        d = ops.cluster("far")
        assert d.summary is None
        assert d.note == "no live numbers while the connection is reconnecting"
        c = d.connection
        assert c and c.state == "reconnecting" and c.since and c.error
        assert c.since.timestamp() >= before - 1
        assert c.problem in ("connection-refused", "connection-lost"), c
        with pytest.raises(TransportError):  # a 503 for REST: never an empty log
            read_remote_chunk(tr, "/tmp", "stax.out", offset=0, limit=10, final=True,
                              label="stax.out")

        own_sshd.start()
        d = wait_for(lambda: (x := ops.cluster("far")).summary is not None and x, 60,
                     "the summary once sshd is back")
        assert d.connection and d.connection.state == "connected" and d.note is None

        with own_sshd.other_host_key():
            own_sshd.kill_connections()
            d = wait_for(lambda: (x := ops.cluster("far")).connection is not None
                         and x.connection.state == "refused" and x, 60,
                         "the changed host key to be refused")
            c = d.connection
            assert c and c.problem == "host-key-changed" and "ssh-keygen -R" in (c.error or "")
            assert d.summary is None
    finally:
        tr.close()
        store.close()
