"""A fetch's stdout with asyncssh (issue 14: memory stays flat): with a reader slower than the
wire, what the engine holds of the stream (the channel's buffer and the pipe session's) stays
bounded by about one SSH window, whatever the stream's length. asyncssh's own stream reader
let the channel's buffer grow with the transfer (a window adjust per resume computed from the
bytes arrived, not the bytes taken: 25-58 MB held during a 1 GiB fetch, see bench/README.md).

The held bytes are read from asyncssh's channel (``_recv_buf``, a private attribute of the
pinned asyncssh release) and from :class:`~jupyter_stax.engine.remote.asyncssh_pipe.PipeSession`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from jupyter_stax.engine.remote.transport import SSHTransport

from .sshd import Client, Sshd
from .test_remote_slurm import cluster

pytestmark = pytest.mark.ssh

MiB = 1 << 20


def test_a_slow_fetch_reader_holds_about_one_window(
    sshd: Sshd, client: Client, tmp_path: Path
) -> None:
    tr = SSHTransport(cluster(sshd, client, ssh="asyncssh"), tmp_path / "state")
    size = 96 * MiB
    # a fast source; zeros cross the wire as any bytes do (no ssh compression)
    cmd = f"head -c {size} /dev/zero"
    stream = tr._call(tr.connection.open_stream(cmd, raw="stdout"))
    held: list[int] = []
    done = False

    async def sample() -> None:
        chan, session = stream.chan, stream.session  # type: ignore[attr-defined]
        while not done:
            buffered = sum(len(d) for d, _ in list(chan._recv_buf))
            held.append(buffered + session.held_bytes)
            await asyncio.sleep(0.002)

    sampler = tr._submit(sample())
    r, stream.stdout_fd = stream.stdout_fd, None
    assert r is not None
    got = 0
    digest = hashlib.sha256()
    try:
        while chunk := os.read(r, 64 * 1024):
            got += len(chunk)
            digest.update(chunk)
            time.sleep(0.0015)  # slower than the wire here (~40 MB/s against 100-300)
    finally:
        os.close(r)
        done = True
        sampler.result(10)
    rc, err = tr._call(stream.finish(60))
    tr.close()
    assert (rc, err, got) == (0, b"", size)
    assert digest.hexdigest() == hashlib.sha256(bytes(size)).hexdigest()
    assert len(held) > 100  # it was sampled while the bytes moved
    # at most: one window (2 MiB) in the channel; in the session, LOW (256 KiB) plus what one
    # resume's flush delivers (<= one window) plus one socket read (256 KiB); 4.2 MiB seen
    assert max(held) <= 6 * MiB, f"held up to {max(held) / MiB:.1f} MiB"


def test_a_connection_dropped_while_the_reader_lags_leaves_a_stream_without_a_gap(
    own_sshd: Sshd, own_client: Client, tmp_path: Path
) -> None:
    """What a fetch reads before the connection drops is the stream's beginning, byte for byte
    (a cut fetch keeps it as the start of its file, which the next try continues): the bytes
    the pipe session held are not dropped while the ones that the paused channel buffered
    after them still come (asyncssh hands those to the session as it says the connection is
    lost; they came after the dropped ones: the kept copy had a hole, failed its check and
    the whole file was fetched again)."""
    from jupyter_stax.engine.remote.asyncssh_pipe import HIGH
    from jupyter_stax.engine.transport import TransportError

    from ..waiting import wait_for

    tr = SSHTransport(cluster(own_sshd, own_client, ssh="asyncssh"), tmp_path / "state")
    count = 3_000_000  # ~22 MB of numbered lines: no stretch of it looks like another
    want = b"".join(b"%d\n" % i for i in range(1, count + 1))
    stream = tr._call(tr.connection.open_stream(f"seq 1 {count}", raw="stdout"))
    session, chan = stream.session, stream.chan  # type: ignore[attr-defined]
    r, stream.stdout_fd = stream.stdout_fd, None
    assert r is not None
    got = bytearray()
    try:
        # nobody reads yet: the pipe fills, the session holds more than HIGH and pauses the
        # channel, which buffers what the server still sends (up to the window)
        wait_for(lambda: session.paused and list(chan._recv_buf), 60,
                 "the channel paused with bytes in its buffer")
        held = session.held_bytes
        assert held > HIGH
        own_sshd.kill_connections()
        wait_for(session.closed.is_set, 30, "the session to hear that the connection dropped")
        while chunk := os.read(r, MiB):
            got += chunk
    finally:
        os.close(r)
    with pytest.raises(TransportError):
        tr._call(stream.finish(30))
    tr.close()
    assert 0 < len(got) < len(want)
    assert got == want[: len(got)], "a gap in the stream"
    assert len(got) >= held  # the held bytes reached the reader
