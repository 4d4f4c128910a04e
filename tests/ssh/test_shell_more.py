"""The scripts of the SSH transport's extra primitives (rename, symlink, tail, home), run by this
machine's /bin/sh on nasty names: data, never code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_stax.engine.remote import shell

from .test_shell import NASTY, sh


@pytest.mark.parametrize("name", NASTY)
def test_rename_moves_and_skips_missing(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("x")
    moves = [(str(tmp_path / name), str(tmp_path / (name + ".1"))),
             (str(tmp_path / "missing"), str(tmp_path / "never"))]
    r = sh(shell.rename_script(moves), tmp_path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert shell.completed(r.stdout)
    assert (tmp_path / (name + ".1")).read_text() == "x"
    assert not (tmp_path / name).exists() and not (tmp_path / "never").exists()
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name", NASTY)
def test_symlink_made_replaced_and_kept(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    target.mkdir()
    link = tmp_path / "links" / "x y" / "s"
    for _ in range(2):  # twice: the second run keeps the link as it is
        r = sh(shell.symlink_script(str(link), str(target)), tmp_path, tmp_path)
        assert r.returncode == 0, r.stderr
        assert os.readlink(link) == str(target)
    other = tmp_path / "other"
    other.mkdir()
    r = sh(shell.symlink_script(str(link), str(other)), tmp_path, tmp_path)
    assert r.returncode == 0 and os.readlink(link) == str(other)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(("data", "limit", "tail"), [
    (b"", 5, b""), (b"abc", 5, b"abc"), (b"0123456789", 3, b"789"), (b"a\nb\n", 2, b"b\n"),
    (b"\x00\xff\n", 10, b"\x00\xff\n"),
])
def test_read_tail(tmp_path: Path, data: bytes, limit: int, tail: bytes) -> None:
    f = tmp_path / "quote'd log"
    f.write_bytes(data)
    r = sh(shell.read_tail_script(str(f), limit), tmp_path, tmp_path)
    assert r.returncode == 0 and shell.parse_read_from(r.stdout) == tail
    r = sh(shell.read_tail_script(str(tmp_path / "missing"), limit), tmp_path, tmp_path)
    assert r.returncode == shell.MISSING


@pytest.mark.parametrize(("home", "expect"), [
    ("/home/alice", "/home/alice"), ("/home/with space/", "/home/with space"), ("/", "/"),
])
def test_home(tmp_path: Path, home: str, expect: str) -> None:
    r = sh(shell.HOME_SCRIPT, tmp_path, Path(home))
    assert shell.parse_home(r.stdout) == expect


@pytest.mark.parametrize("out", [b"no marker\n", b"@@stax-start\nrelative/home\n",
                                 b"@@stax-start\n\n"])
def test_home_refuses_what_is_not_an_absolute_path(out: bytes) -> None:
    with pytest.raises(shell.ProtocolError):
        shell.parse_home(out)
