"""Writing fetched files here (:mod:`jupyter_stax.engine.landing`) and the remote ends of a
resumed transfer (:mod:`jupyter_stax.engine.remote.files`), run by the local ``/bin/sh``:
the rules (no link followed, nothing overwritten unless asked, sizes and sums), a cut file's
partial copy kept and continued, hostile names kept as data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.engine import landing, landing_tree
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


# ---------------------------------------------------------------- a fresh tree, landed at once
def _hidden(root: Path) -> Path:
    return root.parent / landing_tree.staging_name(root.name)


NESTED = ["top.csv", *(f"d/{n}" for n in HOSTILE if "\udcff" not in n), "d/e/f/deep.bin"]


def _body(rel: str) -> bytes:
    return rel.encode("utf-8", "surrogateescape") * 3


def test_a_fresh_tree_lands_in_one_hidden_directory_renamed_into_place_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "outs" / "run" / "step"  # its parents are made too
    with landing.Lander(root, stage=True) as lander:
        got = {rel: lander.land(rel, [_body(rel)]) for rel in NESTED}
        assert lander.staged and not root.exists()  # a reader sees nothing yet...
        hidden = _hidden(root)
        assert (hidden / "d" / "e" / "f" / "deep.bin").read_bytes() == _body("d/e/f/deep.bin")
        assert not [p for p in hidden.rglob("*.part")]  # written under their own names
        out = lander.commit(got)
    assert not hidden.exists() and os.listdir(root.parent) == ["step"]  # ...then all of it
    for rel in NESTED:
        x = out[rel]
        assert (x.path, x.size, x.sha256, x.status) == (
            root / rel, len(_body(rel)), _sha(_body(rel)), "new")
        assert x.path.read_bytes() == _body(rel)
        assert x.path.stat().st_mode & 0o777 == 0o644
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_existing_destination_is_landed_file_by_file_under_the_rules(
    tmp_path: Path, overwrite: bool
) -> None:
    root = tmp_path / "step"
    root.mkdir()
    (root / "same").write_bytes(b"same")
    (root / "mine").write_bytes(b"mine")
    with landing.Lander(root, stage=True) as lander:
        got = {n: lander.land(n, [b"same" if n == "same" else b"theirs"], overwrite=overwrite)
               for n in ("same", "mine", "new")}
        assert not lander.staged
        got = lander.commit(got, overwrite=overwrite)
    assert {n: x.status for n, x in got.items()} == {
        "same": "unchanged", "mine": "replaced" if overwrite else "kept", "new": "new"}
    assert (root / "mine").read_bytes() == (b"theirs" if overwrite else b"mine")
    assert sorted(os.listdir(tmp_path)) == ["step"]  # no hidden directory made


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_destination_that_appears_meanwhile_gets_the_files_one_by_one(
    tmp_path: Path, overwrite: bool
) -> None:
    root = tmp_path / "step"
    with landing.Lander(root, stage=True) as lander:
        got = {n: lander.land(n, [b"same" if n == "d/same" else b"theirs"])
               for n in ("d/same", "d/mine", "new")}
        (root / "d").mkdir(parents=True)  # someone made it (another fetch, by hand)
        (root / "d" / "same").write_bytes(b"same")
        (root / "d" / "mine").write_bytes(b"mine")
        got = lander.commit(got, overwrite=overwrite)
    assert {n: x.status for n, x in got.items()} == {
        "d/same": "unchanged", "d/mine": "replaced" if overwrite else "kept", "new": "new"}
    assert (root / "d" / "mine").read_bytes() == (b"theirs" if overwrite else b"mine")
    assert (root / "new").read_bytes() == b"theirs" and got["new"].path == root / "new"
    assert sorted(os.listdir(tmp_path)) == ["step"]  # the hidden directory is gone
    assert sorted(os.listdir(root / "d")) == ["mine", "same"]


def test_a_cut_fetch_leaves_its_hidden_directory_and_the_next_try_reuses_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "step"
    big = os.urandom(landing.RESUME_MIN + 5000)
    lander = landing.Lander(root, stage=True)
    for n in ("a", "d/b", "stale"):
        lander.land(n, [n.encode()])
    with pytest.raises(EOFError):
        lander.land("d/big", _cut(big[: landing.RESUME_MIN]))
    lander.close()  # no commit: the hidden directory stays, unlocked
    hidden = _hidden(root)
    assert not root.exists()
    assert sorted(str(p.relative_to(hidden)) for p in hidden.rglob("*") if p.is_file()) == [
        "a", f"d/{landing.partial_name('big')}", "d/b", "stale"]
    with landing.Lander(root, stage=True) as lander:
        whole = lander.landed_before(["a", "d/b", "d/big", "missing"])
        assert whole == {"a": (1, _sha(b"a")), "d/b": (3, _sha(b"d/b"))}
        assert lander.staged
        lander.drop("d/b")  # say its source changed: fetched again
        got = {"a": landing.Landed(lander.path_of("a"), *whole["a"], "new"),
               "d/b": lander.land("d/b", [b"changed"])}
        assert lander.partials(["d/big"]) == {"d/big": landing.RESUME_MIN}
        prefix = lander.prefix_hash("d/big", landing.RESUME_MIN)
        assert prefix is not None
        got["d/big"] = lander.land_rest("d/big", prefix, landing.RESUME_MIN,
                                        [big[landing.RESUME_MIN:]])
        got = lander.commit(got)
    assert (got["d/big"].size, got["d/big"].sha256) == (len(big), _sha(big))
    assert (root / "d" / "big").read_bytes() == big and (root / "d" / "b").read_bytes() == (
        b"changed")
    # what the cut try left and this one did not land ("stale") is not put in place
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "a", "d", "d/b", "d/big"]
    assert sorted(os.listdir(tmp_path)) == ["step"]


def test_links_planted_around_a_hidden_directory_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # the hidden directory's name is a link: not used, the files land file by file
    root = tmp_path / "one"
    _hidden(root).symlink_to(outside)
    with landing.Lander(root, stage=True) as lander:
        lander.commit({"f": lander.land("f", [b"x"])})
        assert not lander.staged
    assert (root / "f").read_bytes() == b"x" and os.listdir(outside) == []
    # a link left at a file's name in a reused hidden directory is replaced, not written through
    root = tmp_path / "two"
    _hidden(root).mkdir()
    (_hidden(root) / "f").symlink_to(outside / "f")
    (_hidden(root) / "d").symlink_to(outside)
    with landing.Lander(root, stage=True) as lander:
        assert lander.landed_before(["f", "d/g"]) == {}  # a link is no landed file
        got = {"f": lander.land("f", [b"x"])}
        with pytest.raises(landing.UnsafePath, match="a link is never followed"):
            lander.land("d/g", [b"y"])
        got = lander.commit(got)
    assert got["f"].status == "new" and (root / "f").read_bytes() == b"x"
    assert not (root / "f").is_symlink() and sorted(os.listdir(root)) == ["f"]
    assert os.listdir(outside) == []


def test_hidden_directories_nobody_continues_are_removed(tmp_path: Path) -> None:
    # cut before anything landed: nothing is left behind
    root = tmp_path / "step"
    with pytest.raises(EOFError), landing.Lander(root, stage=True) as lander:
        lander.land("d/small", _cut(b"x" * 100))
    assert os.listdir(tmp_path) == []
    # left by a cut fetch, and the destination exists by now: removed
    with landing.Lander(root, stage=True) as lander:
        lander.land("a", [b"a"])
    assert _hidden(root).exists()
    root.mkdir()
    with landing.Lander(root, stage=True) as lander:
        lander.commit({"a": lander.land("a", [b"a"])})
    assert sorted(os.listdir(tmp_path)) == ["step"]
    # beside another fetch: removed when untouched for ABANDONED_AFTER, kept when recent
    # or in use by a fetch (locked)
    old, recent, busy = tmp_path / "old", tmp_path / "recent", tmp_path / "busy"
    for r in (old, recent):
        with landing.Lander(r, stage=True) as lander:
            lander.land("a/b", [b"a"])
    long_ago = time.time() - landing_tree.ABANDONED_AFTER - 60
    os.utime(_hidden(old), (long_ago, long_ago))
    holder = landing.Lander(busy, stage=True)
    holder.land("a", [b"a"])
    os.utime(_hidden(busy), (long_ago, long_ago))
    with landing.Lander(tmp_path / "other", stage=True) as lander:
        lander.commit({"a": lander.land("a", [b"a"])})
        # another fetch into a destination whose hidden directory is in use: file by file
        with landing.Lander(busy, stage=True) as second:
            second.commit({"a": second.land("a", [b"a"]), "b": second.land("b", [b"b"])})
            assert not second.staged
    assert not _hidden(old).exists() and _hidden(recent).exists() and _hidden(busy).exists()
    got = holder.commit({"a": landing.Landed(holder.path_of("a"), 1, _sha(b"a"), "new")})
    holder.close()
    assert got["a"].status == "unchanged"  # the other fetch had put it there first
    assert sorted(os.listdir(busy)) == ["a", "b"] and not _hidden(busy).exists()
