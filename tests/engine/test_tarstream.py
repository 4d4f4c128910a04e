"""The tar streams of the SSH transport (issue 14): headers written from a template are the
bytes ``tarfile`` writes; :class:`TarReader` reads what GNU tar (gnu, pax, ustar formats) and
``tarfile`` write, any name as data, and says when a stream is cut or corrupt."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from jupyter_stax.engine import landing
from jupyter_stax.engine.remote import files
from jupyter_stax.engine.remote.tarstream import TarReader, file_header, parse_pax

HOSTILE = ["a b.csv", "it's.csv", 'say "hi".csv', "line\nbreak.csv", "$(touch pwned).csv",
           "-x.csv", "ünï.csv", "tab\there", "back\\slash", "x" * 100, "y" * 101,
           "deep/" * 30 + "leaf.txt", "sub/dir/ok.dat", "bad-\udcff-utf8"]


@pytest.mark.parametrize(("name", "size", "mode", "mtime"), [
    ("a.txt", 0, 0o644, 0),
    ("a.txt", 1, 0o755, 1_700_000_000),
    ("x" * 100, 1 << 20, 0o100644, 2**33 - 1),   # the longest ustar name; st_mode bits
    ("x" * 101, 5, 0o644, 1),                     # PAX: longer than the name field
    ("ünï.csv", 5, 0o644, 1),                     # PAX: not ASCII
    ("big.bin", 8**11, 0o644, 1),                 # PAX: a size of 8 GiB
    ("old", 3, 0o644, 8**11),                     # PAX: an mtime past 11 octal digits
    ("line\nbreak", 3, 0o600, 12345),
    ("$(x) -y 'z'", 3, 0o644, 12345),
])
def test_file_header_is_what_tarfile_writes(name: str, size: int, mode: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, mtime
    assert file_header(name, size, mode, mtime) == info.tobuf(
        tarfile.PAX_FORMAT, "utf-8", "surrogateescape"
    )


@pytest.mark.parametrize(("data", "want"), [
    (b"", {}),
    (b"13 path=abcd\n", {"path": "abcd"}),
    (b"16 path=a b=c d\n11 size=42\n", {"path": "a b=c d", "size": "42"}),
    (b"12 path=a\nb\n\0\0\0", {"path": "a\nb"}),
    (b"12 path=\xc3\xbc\xff\n", {"path": "ü\udcff"}),
])
def test_parse_pax(data: bytes, want: dict[str, str]) -> None:
    assert parse_pax(data) == want


@pytest.mark.parametrize("bad", [b"12 path=abcd\n", b"x path=a\n", b"99 path=a\n",
                                 b"10 pathab\n", b"nospace"])
def test_parse_pax_refuses_malformed_records(bad: bytes) -> None:
    with pytest.raises(tarfile.ReadError):
        parse_pax(bad)


def _tree(root: Path) -> dict[str, bytes]:
    want = {}
    for i, name in enumerate(HOSTILE):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        data = name.encode("utf-8", "surrogateescape") * (i + 1)
        p.write_bytes(data)
        want[name] = data
    (root / "empty").write_bytes(b"")
    want["empty"] = b""
    (root / "big.bin").write_bytes(os.urandom((3 << 20) + 17))  # more than one buffer
    want["big.bin"] = (root / "big.bin").read_bytes()
    (root / "link").symlink_to("/etc/passwd")
    return want


def _read_all(stream: bytes, bufsize: int = landing.CHUNK) -> dict[str, tuple[bool, bytes]]:
    r, w = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(w, stream), os.close(w)))
    feeder.start()
    got: dict[str, tuple[bool, bytes]] = {}
    try:
        reader = TarReader(r, bufsize)
        for e in reader:
            name = files.member_name(e.name).rstrip("/")
            body = b"".join(bytes(v) for v in reader.pieces())
            got[name] = (e.regular, body)
        reader.drain()
    finally:
        feeder.join()
        os.close(r)
    return got


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar", "tarfile-pax", "tarfile-gnu"])
@pytest.mark.parametrize("bufsize", [landing.CHUNK, 4096])
def test_reader_reads_what_tar_writes(tmp_path: Path, fmt: str, bufsize: int) -> None:
    root = tmp_path / "src"
    root.mkdir()
    want = _tree(root)
    names = [*sorted(want), "link"]
    if fmt == "ustar":  # ustar holds a last component of 100 bytes at most: GNU tar drops more
        names = [n for n in names if len(n.rsplit("/", 1)[-1]) <= 100]
    if fmt.startswith("tarfile"):
        buf = io.BytesIO()
        tf_fmt = tarfile.PAX_FORMAT if fmt == "tarfile-pax" else tarfile.GNU_FORMAT
        with tarfile.open(fileobj=buf, mode="w", format=tf_fmt,
                          errors="surrogateescape") as tf:
            for n in names:
                tf.add(root / n, arcname="./" + n, recursive=False)
        stream = buf.getvalue()
    else:
        stream = subprocess.run(
            ["tar", "--null", "--no-recursion", f"--format={fmt}", "-T", "-", "-cf", "-"],
            input=files.names_input(names), cwd=root, capture_output=True, check=False,
        ).stdout
    got = _read_all(stream, bufsize)
    assert got["link"][0] is False
    for n in names:
        if n != "link":
            assert got[n] == (True, want[n]), n
    # the entries between the files are there too (directories), and nothing else
    assert set(got) - set(names) <= {"deep", "sub", "sub/dir"} | {
        "deep/" * k + "deep" for k in range(30)}


def test_reader_skips_what_is_not_read_and_hashes_views(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    want = _tree(root)
    stream = subprocess.run(["tar", "-cf", "-", "."], cwd=root, capture_output=True,
                            check=True).stdout
    r, w = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(w, stream), os.close(w)))
    feeder.start()
    sums: dict[str, str] = {}
    try:
        reader = TarReader(r, 8192)
        for e in reader:
            name = files.member_name(e.name)
            if e.regular and name.startswith(("big", "sub/")):  # the others are skipped
                h = hashlib.sha256()
                for piece in reader.pieces():
                    h.update(piece)
                sums[name] = h.hexdigest()
        reader.drain()
    finally:
        feeder.join()
        os.close(r)
    assert sums == {n: hashlib.sha256(want[n]).hexdigest() for n in ("big.bin", "sub/dir/ok.dat")}


def test_write_tar_then_read_back_gives_each_files_size_and_sum(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    want = _tree(root)
    buf = io.BytesIO()
    recorded: dict[str, tuple[int, str]] = {}
    files.write_tar(buf, [(root / n, n) for n in sorted(want)],
                    lambda n, size, digest: recorded.__setitem__(n, (size, digest)))
    assert recorded == {n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in want.items()}
    got = _read_all(buf.getvalue())
    assert got == {n: (True, d) for n, d in want.items()}
    # and GNU tar reads it too, every name as data
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", "-"], input=buf.getvalue(), cwd=out, check=True)
    for n, d in want.items():
        assert (out / n).read_bytes() == d
    assert not (tmp_path / "pwned").exists()


def test_write_tar_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError, match="not a regular file"):
        files.write_tar(io.BytesIO(), [(tmp_path / "d", "d")], lambda *a: None)


def test_a_cut_or_corrupt_stream_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(os.urandom(100_000))
    buf = io.BytesIO()
    files.write_tar(buf, [(tmp_path / "f", "f")], lambda *a: None)
    whole = buf.getvalue()
    with pytest.raises(EOFError):
        _read_all(whole[:50_000])      # in the middle of the content
    with pytest.raises(EOFError):
        _read_all(whole[:100_352])     # after the member, before the end blocks
    corrupt = bytearray(whole)
    corrupt[150] ^= 0xFF                # the header's checksum no longer matches
    with pytest.raises(tarfile.ReadError):
        _read_all(bytes(corrupt))


@pytest.mark.parametrize(("fmt", "quick_ones"), [("gnu", 3), ("ustar", 5), ("v7", 0)])
def test_the_quick_header_reading_agrees_with_tarfile(
    tmp_path: Path, fmt: str, quick_ones: int
) -> None:
    from jupyter_stax.engine.remote.tarstream import _plain_file

    names = ["a.txt", "x" * 100, "sub/" * 30 + "leaf", "it's \"q\" $(x)", "ünï"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"z" * len(n))
    stream = subprocess.run(
        ["tar", "--null", "--no-recursion", f"--format={fmt}", "-T", "-", "-cf", "-"],
        input=files.names_input(names), cwd=tmp_path, capture_output=True, check=False,
    ).stdout
    seen = 0
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tf:
        for m in tf:
            block = stream[m.offset : m.offset + tarfile.BLOCKSIZE]
            quick = _plain_file(block)
            if quick is not None:  # when it answers, it answers what tarfile reads
                seen += 1
                assert quick == (m.name, m.size) and m.isreg()
    assert seen == quick_ones  # gnu: names of 100+ bytes have their own member; v7: no magic
    bad = bytearray(stream[:tarfile.BLOCKSIZE])
    bad[0] ^= 1  # the checksum no longer matches: left to tarfile (which refuses it)
    assert _plain_file(bytes(bad)) is None
