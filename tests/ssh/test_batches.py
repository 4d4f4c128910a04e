"""The SSH transport's submission batches: ``write_steps`` (the directories, earlier attempts'
renames and scripts of many steps in one script) and ``run_many`` (files, links, then many
commands in one script, each with its own answer), first as scripts run by this machine's
/bin/sh on nasty names, then on the real test sshd as the remote account, counting exec
channels; ``remove_later`` rides on the next script."""

from __future__ import annotations

import pwd
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.core.errors import StaxError
from jupyter_stax.engine import batch
from jupyter_stax.engine.remote import shell
from jupyter_stax.engine.remote.transport import SSHTransport
from jupyter_stax.engine.transport import CommandResult, FileSpec

from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import cluster
from .test_shell import NASTY, sh


# ---------------------------------------------------------------------- the scripts, here
def test_write_steps_script_with_nasty_names(tmp_path: Path) -> None:
    dirs = [str(tmp_path / f"run {n}" / "step") for n in NASTY]
    old = Path(dirs[0], "stax.job.sh")
    old.parent.mkdir(parents=True)
    old.write_text("attempt 1")
    kept = Path(dirs[1], "stax.job.sh.1")
    kept.parent.mkdir(parents=True)
    kept.write_text("attempt 1 of step 1")
    Path(dirs[1], "stax.job.sh").write_text("attempt 2, written before (a retried call)")
    gone = tmp_path / "leftover $(x).out"
    gone.write_text("")
    moves = [(f"{d}/stax.job.sh", f"{d}/stax.job.sh.1") for d in dirs[:2]]
    files = {f"{d}/stax.job.sh": (f"job {i}\n".encode(), 0o755 if i % 2 else 0o640)
             for i, d in enumerate(dirs)}
    script = shell.write_steps_script(dirs, moves, files, [str(gone), str(tmp_path / "none")])
    r = sh(script, tmp_path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert shell.completed(r.stdout)
    for i, d in enumerate(dirs):
        f = Path(d, "stax.job.sh")
        assert f.read_bytes() == f"job {i}\n".encode()
        assert f.stat().st_mode & 0o777 == (0o755 if i % 2 else 0o640)
    assert Path(dirs[0], "stax.job.sh.1").read_text() == "attempt 1"  # moved
    assert kept.read_text() == "attempt 1 of step 1"  # an existing target is never replaced
    assert not gone.exists()
    assert not list(tmp_path.rglob("PWNED"))
    with pytest.raises(ValueError, match="absolute"):
        shell.write_steps_script([], [], {"~/x": (b"", 0o644)})


def test_a_batch_whose_files_cannot_be_written_runs_no_command(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    files = {"/proc/stax-cannot-write/x.job": (b"#!/bin/sh\n", 0o644)}
    script = "\n".join([*shell.prelude_lines(files, []), batch.batch_script([["touch", str(ran)]])])
    r = sh(script.encode() + b"\n", tmp_path, tmp_path)
    assert r.returncode != 0 and batch.START.encode() not in r.stdout
    assert not ran.exists()


# ---------------------------------------------------------------------- on the real sshd
@pytest.fixture
def tr(sshd: Sshd, client: Client, tmp_path: Path) -> Iterator[SSHTransport]:
    t = SSHTransport(cluster(sshd, client), tmp_path / "state")
    try:
        yield t
    finally:
        t.close()


def home() -> Path:
    return Path(pwd.getpwnam(REMOTE_USER).pw_dir)


@pytest.fixture
def remote_dir() -> Iterator[str]:
    d = f"~/batches {uuid.uuid4().hex[:8]}"
    yield d
    shutil.rmtree(home() / d[2:], ignore_errors=True)  # the remote home is on this machine


def test_run_many_writes_links_and_runs_every_command_in_one_exec(
    tr: SSHTransport, remote_dir: str
) -> None:
    tr.home()  # asked once (remembered): not part of what is counted
    script = f"{remote_dir}/it's $(here)/a.sh"
    link = f"{remote_dir}/links/s"
    execs = tr.connection.stats.execs
    got = tr.run_many(  # a command's words are data: ~ is not expanded there
        [["sh", f"{home()}/{script[2:]}", "$(id)"], ["sh", "-c", "echo no >&2; exit 4"],
         ["stax-no-such-command"], ["cat", f"{home()}/{link[2:]}/a.sh"]],
        files={script: FileSpec('printf "%s|" "$1"; whoami\n', 0o700)},
        links=[(link, f"{remote_dir}/it's $(here)")],
    )
    assert tr.connection.stats.execs == execs + 1  # files, link and four commands: ONE exec
    assert got[0] == CommandResult(0, f"$(id)|{REMOTE_USER}\n", "")
    assert got[1] == CommandResult(4, "", "no\n")
    assert isinstance(got[2], CommandResult) and got[2].returncode == 127
    assert got[3] == CommandResult(0, 'printf "%s|" "$1"; whoami\n', "")
    f = home() / remote_dir[2:] / "it's $(here)" / "a.sh"
    assert f.stat().st_mode & 0o777 == 0o700 and f.stat().st_uid == pwd.getpwnam(
        REMOTE_USER).pw_uid
    with pytest.raises(StaxError, match="/proc/stax-cannot"):  # nothing ran
        tr.run_many([["touch", f"{home()}/{remote_dir[2:]}/ran"]],
                    files={"/proc/stax-cannot/x.job": FileSpec("")})
    assert not (home() / remote_dir[2:] / "ran").exists()


def test_write_steps_in_one_exec_and_removals_ride_on_the_next_script(
    tr: SSHTransport, remote_dir: str
) -> None:
    tr.home()
    dirs = [f"{remote_dir}/run/s {i}" for i in range(30)]
    execs = tr.connection.stats.execs
    tr.write_steps(dirs, [], {f"{d}/stax.job.sh": FileSpec(f"{i}\n", 0o755)
                              for i, d in enumerate(dirs)})
    assert tr.connection.stats.execs == execs + 1
    local = [home() / d[2:] / "stax.job.sh" for d in dirs]
    assert [p.read_text() for p in local] == [f"{i}\n" for i in range(30)]
    tr.remove_later([f"{d}/stax.job.sh" for d in dirs[:10]])
    assert all(p.exists() for p in local[:10])  # not yet: no exec of their own
    assert tr.connection.stats.execs == execs + 1
    tr.read_records(dirs[10:12])  # the next script removes them
    assert tr.connection.stats.execs == execs + 2
    assert not any(p.exists() for p in local[:10]) and all(p.exists() for p in local[10:])
    tr.remove_later([f"{dirs[10]}/stax.job.sh"])
    tr.close()  # ... or the transport's close, while the connection is up
    assert not local[10].exists()
