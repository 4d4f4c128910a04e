"""Writing fetched files here (:mod:`jupyter_stax.engine.landing`) and the remote ends of a
resumed transfer (:mod:`jupyter_stax.engine.remote.files`), run by the local ``/bin/sh``:
the rules (no link followed, nothing overwritten unless asked, sizes and sums), a cut file's
partial copy kept and continued, hostile names kept as data."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.engine import landing
from jupyter_stax.engine.remote import files
from jupyter_stax.engine.remote.shell import ProtocolError

HOSTILE = ["a b.csv", "it's.csv", 'say "hi".csv', "line\nbreak.csv", "$(touch pwned).csv",
           "-x.csv", "--help", "ünï.csv", "x" * 250, "bad-\udcff-utf8"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", ["a.csv", *HOSTILE])
def test_partial_name_is_hidden_short_and_the_same_each_time(name: str) -> None:
    p = landing.partial_name(name)
    assert p.startswith(".") and p.endswith(".part") and "/" not in p
    assert len(os.fsencode(p)) <= 255
    assert p == landing.partial_name(name) != landing.partial_name(name + "2")


@pytest.mark.parametrize(("before", "data", "overwrite", "status", "after"), [
    (None, b"new", False, "new", b"new"),
    (b"same", b"same", False, "unchanged", b"same"),
    (b"mine", b"theirs", False, "kept", b"mine"),
    (b"mine", b"theirs", True, "replaced", b"theirs"),
    (b"", b"", False, "unchanged", b""),
])
def test_land_never_overwrites_unless_asked(
    tmp_path: Path, before: bytes | None, data: bytes, overwrite: bool, status: str,
    after: bytes,
) -> None:
    if before is not None:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f").write_bytes(before)
    got = landing.land(tmp_path, "d/f", [data[:2], data[2:]], overwrite=overwrite)
    assert (got.path, got.size, got.sha256, got.status) == (
        tmp_path / "d" / "f", len(data), _sha(data), status)
    assert (tmp_path / "d" / "f").read_bytes() == after
    assert os.listdir(tmp_path / "d") == ["f"]  # no partial file left
    assert (tmp_path / "d" / "f").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(("rel", "why"), [
    ("link/x", "is not a directory (a link is never followed)"),
    ("file/x", "is not a directory (a link is never followed)"),
    ("flink", "is a symbolic link (never followed)"),
    ("../x", "leaves its directory"),
    ("a/../../x", "leaves its directory"),
    ("/etc/x", "is not a relative path"),
    ("", "is not a relative path"),
])
def test_land_refuses_what_leaves_the_root(tmp_path: Path, rel: str, why: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "x").write_bytes(b"theirs")
    (root / "link").symlink_to(outside)
    (root / "flink").symlink_to(outside / "x")
    (root / "file").write_bytes(b"a file")
    with pytest.raises(landing.UnsafePath, match=why.replace("(", r"\(").replace(")", r"\)")):
        landing.land(root, rel, [b"data"], overwrite=True)
    assert (outside / "x").read_bytes() == b"theirs" and os.listdir(outside) == ["x"]
    assert sorted(os.listdir(root)) == ["file", "flink", "link"]


def test_many_files_with_hostile_names_land_in_one_lander(tmp_path: Path) -> None:
    with landing.Lander(tmp_path / "out") as lander:
        got = {n: lander.land(f"d/{n}", [n.encode("utf-8", "surrogateescape")])
               for n in HOSTILE}
    for n, x in got.items():
        want = n.encode("utf-8", "surrogateescape")
        assert x.path == tmp_path / "out" / "d" / n and (x.size, x.sha256) == (len(want),
                                                                               _sha(want))
        assert x.path.read_bytes() == want
    assert sorted(os.listdir(tmp_path / "out" / "d")) == sorted(HOSTILE)
    assert not (tmp_path / "pwned").exists()


def _cut(data: bytes) -> Iterator[bytes]:
    yield data
    raise EOFError("the stream ended early")


@pytest.mark.parametrize(("first", "kept"), [
    (landing.RESUME_MIN, True),  # enough to be worth continuing: kept
    (landing.RESUME_MIN - 1, False),  # too little: removed
    (0, False),
])
def test_a_cut_file_keeps_its_partial_copy_when_worth_it(
    tmp_path: Path, first: int, kept: bool
) -> None:
    data = os.urandom(first + 1000)
    lander = landing.Lander(tmp_path)
    with pytest.raises(EOFError):
        lander.land("big.bin", _cut(data[:first]))
    partial = tmp_path / landing.partial_name("big.bin")
    assert partial.exists() is kept and not (tmp_path / "big.bin").exists()
    assert lander.partials(["big.bin", "other"]) == ({"big.bin": first} if kept else {})
    if kept:
        prefix = lander.prefix_hash("big.bin", first)
        assert prefix is not None and prefix.hexdigest() == _sha(data[:first])
        assert lander.prefix_hash("big.bin", first + 1) is None  # shorter than asked
        got = lander.land_rest("big.bin", prefix, first, [data[first:]])
        assert (got.size, got.sha256, got.status) == (len(data), _sha(data), "new")
        assert (tmp_path / "big.bin").read_bytes() == data and not partial.exists()
    lander.close()


def test_the_one_file_land_keeps_nothing_of_a_cut_file(tmp_path: Path) -> None:
    with pytest.raises(EOFError):
        landing.land(tmp_path, "big.bin", _cut(bytes(landing.RESUME_MIN * 2)))
    assert os.listdir(tmp_path) == []


def test_partials_ignore_links_and_a_taken_partial_name_is_not_reused(tmp_path: Path) -> None:
    (tmp_path / "outside").write_bytes(b"theirs")
    (tmp_path / landing.partial_name("a")).symlink_to(tmp_path / "outside")
    (tmp_path / landing.partial_name("b")).write_bytes(b"x" * landing.RESUME_MIN)
    with landing.Lander(tmp_path) as lander:
        assert lander.partials(["a", "b", "c", "../x", "missing/d"]) == {
            "b": landing.RESUME_MIN}
        got = lander.land("a", [b"new"])  # its partial name is a link: another name is used
        assert got.status == "new" and (tmp_path / "a").read_bytes() == b"new"
        lander.drop_partial("b")
    assert (tmp_path / "outside").read_bytes() == b"theirs"
    assert not (tmp_path / landing.partial_name("b")).exists()


def test_rename_noreplace_never_replaces(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        (tmp_path / "src").write_bytes(b"src")
        (tmp_path / "there").write_bytes(b"there")
        (tmp_path / "link").symlink_to(tmp_path / "nowhere")
        for dest in ("there", "link"):
            with pytest.raises(FileExistsError):
                landing.rename_noreplace("src", dest, fd)
        landing.rename_noreplace("src", "new", fd)
    finally:
        os.close(fd)
    assert (tmp_path / "new").read_bytes() == b"src" and not (tmp_path / "src").exists()
    assert (tmp_path / "there").read_bytes() == b"there"
    assert os.readlink(tmp_path / "link") == str(tmp_path / "nowhere")


@pytest.mark.parametrize(("out", "count", "want"), [
    (b"@@stax-start\n12 " + b"a" * 64 + b"\n- -\n@@stax-done\n", 2,
     [(12, "a" * 64), None]),
    (b"noise\n@@stax-start\n@@stax-done\n", 0, []),
    (b"@@stax-start\n- -\n", 1, ProtocolError),  # cut off
    (b"@@stax-start\n- -\n@@stax-done\n", 2, ProtocolError),  # an answer missing
    (b"@@stax-start\n12 xyz\n@@stax-done\n", 1, ProtocolError),  # not a sum
    (b"@@stax-start\n-1 " + b"a" * 64 + b"\n@@stax-done\n", 1, ProtocolError),
])
def test_parse_prefix_sums(out: bytes, count: int, want: object) -> None:
    if isinstance(want, type):
        with pytest.raises(want):
            files.parse_prefix_sums(out, count)
    else:
        assert files.parse_prefix_sums(out, count) == want


def _sh(command: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True,
                          check=False, timeout=30)


@pytest.mark.parametrize("name", [n for n in HOSTILE if "\udcff" not in n])
def test_the_remote_ends_of_a_resume_take_any_name_as_data(tmp_path: Path, name: str) -> None:
    """prefix_sums_script, tail_command and append_command as the cluster's sh runs them."""
    d = tmp_path / "step"
    d.mkdir()
    data = os.urandom(5000)
    (d / name).write_bytes(data)
    (d / "link").symlink_to(d / name)
    script = files.prefix_sums_script(str(d), [(name, 1234), ("link", 10), ("missing", 10)])
    res = _sh("exec /bin/sh", script)
    assert files.parse_prefix_sums(res.stdout, 3) == [(5000, _sha(data[:1234])), None, None]
    gone = files.prefix_sums_script(str(tmp_path / "gone"), [(name, 1)])
    assert files.parse_prefix_sums(_sh("exec /bin/sh", gone).stdout, 1) == [None]

    res = _sh(files.tail_command(str(d), 1234), files.names_input([name]))
    assert res.returncode == 0 and res.stdout == data[1234:]
    res = _sh(files.tail_command(str(d), 3), files.names_input(["link"]))
    assert res.returncode != 0 and res.stdout == b""  # a link is never read

    res = _sh(files.append_command(str(d), name, 1000), data[1000:2000])
    assert res.returncode == 0 and (d / name).read_bytes() == data[:2000]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
