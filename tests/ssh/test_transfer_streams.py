"""The tar streams of the SSH transport over the real test sshd, both clients (issue 14): a
tree of many small files with hostile and long names goes as ONE stream each way, every file's
size and sha256 recorded; a remote end that fails says why (a cut one: test_staging.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from jupyter_stax.core.errors import StaxError
from jupyter_stax.engine.remote.transport import SSHTransport

from .sshd import Client, Sshd
from .test_remote_slurm import cluster

pytestmark = pytest.mark.ssh

NAMES = ["a b.csv", "it's.csv", 'say "hi".csv', "line\nbreak.csv", "$(touch pwned).csv",
         "-x.csv", "ünï.csv", "--help", "x" * 100, "y" * 180, "deep/" * 40 + "leaf",
         "bad-\udcff-utf8", *(f"many/f{i:04d}.dat" for i in range(600))]


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_a_tree_of_small_files_goes_as_one_stream_each_way(
    sshd: Sshd, client: Client, tmp_path: Path, client_kind: str
) -> None:
    tr = SSHTransport(cluster(sshd, client, ssh=client_kind), tmp_path / "state")
    here = tmp_path / "here"
    want: dict[str, bytes] = {}
    for i, n in enumerate(NAMES):
        (here / n).parent.mkdir(parents=True, exist_ok=True)
        want[n] = os.urandom(i % 1500)
        (here / n).write_bytes(want[n])
    remote = f"~/stax-test-streams-{os.getpid()}-{client_kind}"
    try:
        tr.home()  # asked once (then remembered): not part of what is counted
        execs = tr.connection.stats.execs
        sent = tr.put_files([(here / n, n) for n in NAMES], f"{remote}/step")
        assert tr.connection.stats.execs - execs == 1  # ONE channel for 612 files
        assert sent == {n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in want.items()}
        tree = {e.path: e.size for e in tr.list_tree(f"{remote}/step") if e.kind == "f"}
        assert tree == {n: len(d) for n, d in want.items()}
        back = tmp_path / "back"
        asked = [n for n in NAMES if not n.startswith("many/f03")]
        execs = tr.connection.stats.execs
        got = tr.get_files(f"{remote}/step", asked, back)
        assert tr.connection.stats.execs - execs == 1
        assert sorted(got) == sorted(asked)
        for n in asked:
            assert got[n].size == len(want[n]) and got[n].status == "new"
            assert got[n].sha256 == hashlib.sha256(want[n]).hexdigest()
            assert (back / n).read_bytes() == want[n]
        assert not (back / "many" / "f0300.dat").exists()  # not asked for: not written
        assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    finally:
        tr.run(["rm", "-rf", "--", tr.resolve(remote)])
        tr.close()


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_a_remote_end_that_fails_says_why(
    sshd: Sshd, client: Client, tmp_path: Path, client_kind: str
) -> None:
    """The remote ``tar -x`` cannot start (its directory cannot be made) while 8 MiB are on
    their way: the put ends with the cluster's reason, not a hang or a broken pipe."""
    tr = SSHTransport(cluster(sshd, client, ssh=client_kind), tmp_path / "state")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 << 20))
    try:
        with pytest.raises(StaxError, match=r"writing files into /proc/stax-nope failed .*"
                                            r"(Permission denied|No such file)"):
            tr.put_files([(big, "big.bin")], "/proc/stax-nope")
        with pytest.raises(StaxError, match=r"reading files from /proc/stax-nope failed"):
            tr.get_files("/proc/stax-nope", ["big.bin"], tmp_path / "back")
        assert tr.run(["true"]).returncode == 0  # the connection is fine
    finally:
        tr.close()



@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_a_fetch_continues_what_a_cut_one_kept_once_its_bytes_are_checked(
    sshd: Sshd, client: Client, tmp_path: Path, client_kind: str
) -> None:
    """A partial file left here (what a cut fetch keeps, under its hidden partial name) is
    continued: only the rest crosses the wire (counted: ``SSHTransport.received``). Kept bytes
    that differ from the cluster's (one byte changed), a partial longer than the file, or a
    link in its place are never trusted: the file comes whole. The cut itself: test_staging.py."""
    from jupyter_stax.engine import landing

    tr = SSHTransport(cluster(sshd, client, ssh=client_kind), tmp_path / "state")
    here = tmp_path / "here"
    here.mkdir()
    name = "it's $(x)\n-big.bin"
    data = os.urandom(12 << 20)
    (here / name).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    remote = f"~/stax-test-resume-{os.getpid()}-{client_kind}"
    outside = tmp_path / "outside"
    outside.write_bytes(b"not yours")
    cases = [  # what is left under the partial name; bytes that must cross the wire
        ("right prefix", data[: 5 << 20], (12 << 20) - (5 << 20)),
        ("all of it", data, 0),
        ("one byte changed", data[:1 << 20] + b"\0" + data[(1 << 20) + 1 : 3 << 20], 12 << 20),
        ("longer than the file", data + data[: 1 << 20], 12 << 20),
        ("a link", None, 12 << 20),
    ]
    try:
        tr.put_files([(here / name, name)], f"{remote}/step")
        for what, kept, wire in cases:
            back = tmp_path / f"back-{what}"
            back.mkdir()
            partial = back / landing.partial_name(name)
            if kept is None:
                partial.symlink_to(outside)
            else:
                partial.write_bytes(kept)
            before = tr.received
            got = tr.get_files(f"{remote}/step", [name], back)
            sent = tr.received - before
            assert (got[name].size, got[name].sha256, got[name].status) == (
                12 << 20, digest, "new"), what
            assert hashlib.sha256((back / name).read_bytes()).hexdigest() == digest, what
            if wire < 12 << 20:  # only the rest came (a tail stream, no tar framing)
                assert sent == wire, (what, sent)
                assert not partial.exists(), what
            else:  # whole, in the tar stream (headers and padding on top)
                assert 12 << 20 <= sent <= (12 << 20) + (64 << 10), (what, sent)
            assert outside.read_bytes() == b"not yours"
            assert sorted(p.name for p in back.iterdir() if not p.is_symlink()) == [name], what
    finally:
        tr.run(["rm", "-rf", "--", tr.resolve(remote)])
        tr.close()
