"""The remote log reader's ``sh`` snippet and the command batch, run through the LOCAL transport
(the same ``sh`` and coreutils a login node has): the snippet must answer exactly what the local
reader answers for the same files, refusals included, whatever the directory's name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jupyter_stax.core.errors import StaxError
from jupyter_stax.core.models import Cluster
from jupyter_stax.engine import schedulers
from jupyter_stax.engine.batch import batched_summary, parse_batch, run_batch
from jupyter_stax.engine.transport import CommandResult, LocalTransport
from jupyter_stax.operations.logs import read_chunk
from jupyter_stax.operations.remote_logs import chunk_of, parse_output, read_remote_chunk

HOSTILE = [
    "plain",
    "with space",
    "it's \"quoted\"",
    "$(touch PWNED)",
    "`touch PWNED`; rm -rf x",
    "-n",
    "tab\there",
    "new\nline",
    "*",
]

TEXT = "héllo wörld €\n𝄞 end".encode() + b"\xff\xfe tail"


def layout(d: Path) -> None:
    """A step directory with every kind of file the readers must tell apart."""
    d.mkdir(parents=True)
    (d / "stax.out").write_bytes(TEXT)
    (d / "stax.err").symlink_to("/etc/passwd")  # a link out: refused
    os.mkfifo(d / "stax.out.1")  # a FIFO: refused, never blocks
    (d / "stax.out.2").mkdir()  # a directory: refused
    (d / "stax.out.3").symlink_to(d / "stax.out")  # a link inside the directory: read
    (d / "stax.err.1").symlink_to(d / "nothing")  # dangling, inside: empty
    (d / "stax.err.2").symlink_to(d.parent)  # the parent directory: refused


NAMES = ["stax.out", "stax.err", "stax.out.1", "stax.out.2", "stax.out.3", "stax.err.1",
         "stax.err.2", "stax.out.9"]
READS = [(0, 1 << 20), (0, 3), (1, 1), (2, 1), (3, 2), (16, 1), (17, 2), (0, 0),
         (len(TEXT) - 1, 10), (len(TEXT), 10), (len(TEXT) + 5, 10)]


def outcome(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except StaxError as e:
        return (type(e).__name__, str(e))


@pytest.mark.parametrize("dirname", HOSTILE)
def test_the_snippet_answers_as_the_local_reader(tmp_path: Path, dirname: str) -> None:
    d = tmp_path / dirname / "step"
    layout(d)
    t = LocalTransport()
    full = dirname in ("plain", "it's \"quoted\"")  # every read; the others: a whole read
    for name in NAMES:
        for offset, limit in READS if full else [(0, 1 << 20)]:
            for final in (False, True) if full else (True,):
                kw = {"offset": offset, "limit": limit, "final": final, "label": "L"}
                local = outcome(lambda: read_chunk(str(d), name, **kw))  # noqa: B023
                remote = outcome(lambda: read_remote_chunk(t, str(d), name, **kw))  # noqa: B023
                assert remote == local, (name, offset, limit, final)
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_refusals_name_the_file(tmp_path: Path) -> None:
    d = tmp_path / "s"
    layout(d)
    t = LocalTransport()
    kw = {"offset": 0, "limit": 100, "final": True}
    with pytest.raises(StaxError, match="link to a file outside"):
        read_remote_chunk(t, str(d), "stax.err", label="stax.err of step 's'", **kw)
    with pytest.raises(StaxError, match="not a regular file"):
        read_remote_chunk(t, str(d), "stax.out.1", label="stax.out.1", **kw)
    assert read_remote_chunk(t, str(d / "missing"), "stax.out", label="x", **kw).eof


@pytest.mark.parametrize(
    ("got", "size", "offset", "limit", "final", "want"),
    [
        (b"abc", 3, 0, 10, True, ("abc", 3, True)),
        (b"a\xe2\x82", 3, 0, 10, False, ("a", 1, False)),  # the writer may finish it
        (b"a\xe2\x82", 3, 0, 10, True, ("a\ufffd", 3, True)),  # it never will
        ("€x".encode(), 4, 0, 1, False, ("€", 3, False)),  # limit below one character
        (b"abcdef", 3, 0, 10, True, ("abc", 3, True)),  # grew after its size was taken
        (b"", 0, 5, 10, False, ("", 5, False)),
    ],
)
def test_chunk_of(got: bytes, size: int, offset: int, limit: int, final: bool,
                  want: tuple[str, int, bool]) -> None:
    c = chunk_of(got, size, offset, limit, final, "replace")
    assert (c.data, c.next_offset, c.eof) == want


@pytest.mark.parametrize(
    "out",
    ["", "garbage", "@@stax-start\n", "@@stax-start\nx\n", "@@stax-start\n5\n!!notbase64\n"],
)
def test_parse_output_refuses_what_the_snippet_does_not_print(out: str) -> None:
    with pytest.raises(ValueError):
        parse_output(out)


def test_parse_output_skips_what_a_chatty_login_prints() -> None:
    assert parse_output("Welcome!\n@@stax-start\n5\naGVsbG8=\n") == (5, b"hello")


def test_a_batch_runs_many_commands_in_one_command(tmp_path: Path) -> None:
    class Counting(LocalTransport):
        calls = 0

        def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
            self.calls += 1
            return super().run(argv, **kw)

    t = Counting()
    odd = str(tmp_path / "it's $(x)")
    cmds = [["printf", "%s\\n", odd], ["sh", "-c", "echo err >&2; exit 4"],
            ["stax-no-such-command"], ["printf", "no newline \xe9"]]
    res = run_batch(t, cmds, 30)
    assert t.calls == 1
    assert res[0] == CommandResult(0, odd + "\n", "")
    assert res[1] == CommandResult(4, "", "err\n")
    assert res[2].returncode == 127 and res[2].stderr.endswith("command not found")
    assert res[3].stdout == "no newline \xe9"


def test_parse_batch_refuses_a_cut_off_answer() -> None:
    with pytest.raises(ValueError, match="cut off"):
        parse_batch("@@stax-start\n@@cmd 0\naGk=\n@@err\n", [["true"]])
    with pytest.raises(ValueError, match="stops before"):
        parse_batch("@@stax-start\n", [["true"]])


def test_batched_summary_replays_the_scheduler_parsers(tmp_path: Path) -> None:
    """A Slurm summary from fake sinfo/squeue on the PATH: one command, the same numbers."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "sinfo").write_text("#!/bin/sh\necho '1|idle'; echo '2|allocated'\n")
    (bin_ / "squeue").write_text("#!/bin/sh\nprintf 'PD\\nR\\nR\\n'\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    for tool in ("sh", "base64", "mktemp", "rm"):  # no /usr/bin: it has the real Slurm's
        (bin_ / tool).symlink_to(shutil.which(tool) or tool)

    class OnPath(LocalTransport):
        calls = 0

        def run(self, argv, **kw):  # type: ignore[no-untyped-def,override]
            self.calls += 1
            return super().run(["env", f"PATH={bin_}", *argv], **kw)

    c = Cluster.model_validate({"name": "x", "scheduler": "slurm", "queue": "debug"})
    t = OnPath()
    known = schedulers.get("slurm")
    assert known and known.summary
    s = batched_summary(known.summary, c, t, 30)
    assert t.calls == 1
    assert (s.nodes.total, s.nodes.idle, s.nodes.allocated) == (3, 1, 2)  # type: ignore[union-attr]
    assert (s.jobs.queued, s.jobs.running) == (1, 2)
    (bin_ / "squeue").unlink()
    with pytest.raises(StaxError, match="`squeue` is not installed"):
        batched_summary(known.summary, c, t, 30)
