"""The remote scripts of the primitives, run by this machine's /bin/sh (the same dash a Debian
login node runs) on paths with spaces, quotes, ``$(...)`` and ``;``: data, never code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jupyter_stax.engine.remote import shell

NASTY = ["plain", "with space", "quote'single", 'quote"double', "$(touch PWNED)", "semi;colon",
         "back`tick`", "new\nline", "star*", "dash-", "-leading-dash", "ünïcode"]


def sh(script: bytes, cwd: Path, home: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-s"], input=b"junk a ~/.bashrc printed\n" + script,
                          cwd=cwd, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
                          capture_output=True)


@pytest.mark.parametrize(
    ("path", "quoted"),
    [("~", '"$HOME"'), ("~/a b", '"$HOME"/\'a b\''), ("/x/y", "/x/y"), ("a'b", "'a'\"'\"'b'"),
     ("~user/x", "'~user/x'")],
)
def test_qpath(path: str, quoted: str) -> None:
    assert shell.qpath(path) == quoted


def test_run_command_quotes_every_word() -> None:
    cmd = shell.run_command(["echo", "$(id)", "a;b", "it's"], cwd="~/w d", env={"X": "1 2"})
    out = subprocess.run(["/bin/bash", "-c", cmd], capture_output=True, text=True,
                         env={"HOME": "/tmp", "PATH": "/usr/bin:/bin"}, cwd="/")
    assert "w d" in cmd and out.returncode != 0  # ~/w d does not exist: cd fails, nothing runs
    out = subprocess.run(["/bin/bash", "-c", shell.run_command(["printf", "%s|", "$(id)", "a;b",
                                                                  "it's"], env={"X": "1 2"})],
                         capture_output=True, text=True)
    assert out.stdout == "$(id)|a;b|it's|"
    with pytest.raises(ValueError, match="not environment"):
        shell.run_command(["true"], env={"A;B": "x"})


def test_write_read_roundtrip_with_nasty_names(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    files = {f"~/d {n}/f {n}": (f"data {n}\n".encode() + bytes(range(256)), 0o640 + i % 2)
             for i, n in enumerate(NASTY)}
    r = sh(shell.write_files_script(files), tmp_path, home)
    assert r.returncode == 0, r.stderr
    assert shell.completed(r.stdout)
    for path, (data, mode) in files.items():
        p = home / path[2:]
        assert p.read_bytes() == data
        assert p.stat().st_mode & 0o777 == mode
    assert not list(tmp_path.rglob("PWNED")) and not list(home.rglob("PWNED"))
    assert not list(home.rglob("*.stax-tmp.*"))

    paths = [*files, "~/missing", "~/d plain"]  # a directory is not a file
    r = sh(shell.read_files_script(paths), tmp_path, home)
    got = shell.parse_read_files(r.stdout, paths, max_bytes=10)
    assert got["~/missing"] is None and got["~/d plain"] is None
    assert all(got[p] == files[p][0][:10] for p in files)

    log = next(iter(files))
    r = sh(shell.read_from_script(log, 5, 4), tmp_path, home)
    assert r.returncode == 0 and shell.parse_read_from(r.stdout) == files[log][0][5:9]
    r = sh(shell.read_from_script("~/missing", 0, 4), tmp_path, home)
    assert r.returncode == shell.MISSING

    r = sh(shell.mkdirs_script(["~/new $(x)/a", "~/n;b"], 0o700), tmp_path, home)
    assert r.returncode == 0 and (home / "new $(x)" / "a").is_dir()
    assert (home / "n;b").stat().st_mode & 0o777 == 0o700
    r = sh(shell.remove_script([f"~/d {n}" for n in NASTY], recursive=True), tmp_path, home)
    assert r.returncode == 0
    assert sorted(p.name for p in home.iterdir()) == ["n;b", "new $(x)"]


def test_read_files_of_absolute_and_relative_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "rel").mkdir(parents=True)
    (home / "rel" / "x").write_text("relative")
    (tmp_path / "abs").write_text("absolute")
    (tmp_path / "empty").write_text("")
    paths = ["rel/x", str(tmp_path / "abs"), str(tmp_path / "empty")]
    r = sh(shell.read_files_script(paths), home, home)
    assert shell.parse_read_files(r.stdout, paths, 100) == {
        "rel/x": b"relative", str(tmp_path / "abs"): b"absolute", str(tmp_path / "empty"): b""}


def test_cut_off_output_is_an_error() -> None:
    with pytest.raises(shell.ProtocolError):
        shell.parse_read_files(b"@@stax-start\n@@f 0\n", ["a"], 10)
    with pytest.raises(shell.ProtocolError):
        shell.parse_read_files(b"nothing", ["a"], 10)
    assert not shell.completed(b"@@stax-start\n")
