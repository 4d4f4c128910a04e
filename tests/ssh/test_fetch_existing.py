"""A fetch into a destination that exists already (issue 14), over the real test sshd, both
clients: as rsync, only the files that differ cross the wire; the files already identical here
are not sent and are reported ``unchanged`` (counted: ``SSHTransport.received``). A fetch cut
while it fills a missing subtree of an existing destination keeps what landed: the next try
gets only the rest of the cut file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from jupyter_stax.engine import landing
from jupyter_stax.engine.remote.transport import SSHTransport

from .sshd import Client, Sshd
from .test_remote_slurm import cluster
from .test_staging import HOSTILE, _cut

pytestmark = pytest.mark.ssh

KiB = 1 << 10
#: a tar stream of one 8 KiB file: its header and the end blocks on top (at most)
ONE_SMALL = (8 + 16) * KiB


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_a_fetch_into_an_existing_destination_sends_only_what_differs(
    own_sshd: Sshd, own_client: Client, tmp_path: Path, client_kind: str
) -> None:
    tr = SSHTransport(cluster(own_sshd, own_client, ssh=client_kind), tmp_path / "state")
    src = tmp_path / "src"
    small = [f"d/{n}" for n in HOSTILE] + [f"many/f{i:02d}.dat" for i in range(12)]
    data = {n: os.urandom(8 * KiB) for n in small}
    for n, d in data.items():
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(d)
    rel = f"stax-fetch-existing-{os.getpid()}-{client_kind}"
    names = [*small, "zz/big.bin"]  # in this order in the tar stream: the big one last
    here = tmp_path / "back"
    big_size = 256 << 20

    def wire(overwrite: bool = False) -> tuple[int, dict[str, landing.Landed]]:
        before = tr.received
        got = tr.get_files(f"~/{rel}", names, here, overwrite=overwrite)
        return tr.received - before, got

    try:
        tr.put_files([(src / n, n) for n in small], f"~/{rel}")
        big = tr.resolve(f"~/{rel}/zz/big.bin")
        tr.run(["sh", "-c", 'mkdir -p -- "${1%/*}" && head -c 268435456 /dev/urandom > "$1"',
                "sh", big])
        want_big = tr.run(["sha256sum", "--", big]).stdout.split()[0]
        n, got = wire()
        assert n >= big_size + len(small) * 8 * KiB
        assert {x.status for x in got.values()} == {"new"}

        # again: nothing crosses the wire, everything is unchanged
        n, got = wire()
        assert n == 0
        assert {k: (x.status, x.size, x.sha256) for k, x in got.items()} == {
            **{k: ("unchanged", 8 * KiB, _sha(d)) for k, d in data.items()},
            "zz/big.bin": ("unchanged", big_size, want_big)}
        assert got["d/a b.csv"].path == here / "d" / "a b.csv"

        # one file changed on the cluster, one here: kept without fetching, or replaced
        changed, edited = "many/f03.dat", "d/$(touch pwned).csv"
        data[changed] = os.urandom(8 * KiB)
        (src / changed).write_bytes(data[changed])
        tr.put_files([(src / changed, changed)], f"~/{rel}")
        (here / edited).write_bytes(b"edited here")
        old = (here / changed).read_bytes()
        n, got = wire()
        assert n == 0
        assert (got[changed].status, got[changed].sha256) == ("kept", _sha(data[changed]))
        assert (got[edited].status, got[edited].sha256) == ("kept", _sha(data[edited]))
        assert (here / changed).read_bytes() == old
        assert (here / edited).read_bytes() == b"edited here"
        n, got = wire(overwrite=True)
        assert 2 * 8 * KiB <= n <= 2 * ONE_SMALL, n  # those two in ONE tar stream
        assert {k for k, x in got.items() if x.status != "unchanged"} == {changed, edited}
        assert got[changed].status == got[edited].status == "replaced"
        for k, d in data.items():
            assert (here / k).read_bytes() == d, k

        # a missing subtree of the existing destination, cut while its file streams
        shutil.rmtree(here / "zz")

        def partial() -> int:
            with contextlib.suppress(OSError):
                return (here / "zz" / landing.partial_name("big.bin")).stat().st_size
            return 0

        _cut(lambda: tr.get_files(f"~/{rel}", names, here), lambda: partial() > (16 << 20),
             own_sshd, "fetch into a missing subtree")
        kept = partial()
        assert kept > (16 << 20) and not (here / "zz" / "big.bin").exists()
        n, got = wire()
        assert n == big_size - kept  # the small files did not come again
        assert (got["zz/big.bin"].status, got["zz/big.bin"].sha256) == ("new", want_big)
        assert {x.status for k, x in got.items() if k != "zz/big.bin"} == {"unchanged"}
        assert os.listdir(here / "zz") == ["big.bin"]
        assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    finally:
        tr.run(["rm", "-rf", "--", tr.resolve(f"~/{rel}")])
        tr.close()


def test_a_link_in_an_existing_destination_is_never_followed(
    sshd: Sshd, client: Client, tmp_path: Path
) -> None:
    """A file already there is checked through no link: a link where a file would land (or a
    linked directory on its way) is neither read as 'unchanged' nor written through."""
    tr = SSHTransport(cluster(sshd, client), tmp_path / "state")
    rel = f"stax-fetch-links-{os.getpid()}"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_bytes(b"same")
    here = tmp_path / "back"
    here.mkdir()
    (here / "a.txt").symlink_to(outside / "a.txt")
    (here / "sub").symlink_to(outside)
    try:
        tr.run(["sh", "-c", f'mkdir -p ~/{rel}/sub && printf same > ~/{rel}/a.txt && '
                f'printf same > ~/{rel}/sub/a.txt'])
        for name in ("a.txt", "sub/a.txt"):
            with pytest.raises(landing.UnsafePath):
                tr.get_files(f"~/{rel}", [name], here)
        assert (outside / "a.txt").read_bytes() == b"same"
        assert sorted(os.listdir(outside)) == ["a.txt"]
    finally:
        tr.run(["rm", "-rf", "--", tr.resolve(f"~/{rel}")])
        tr.close()
