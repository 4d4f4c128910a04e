"""``jupyter stax doctor`` on remote clusters of the real test sshd: a good one (every check ok,
the remote Slurm's controller up) and broken entries, each failing at its own check with its
fix: unknown host, wrong port, unknown host key, refused key, ``sbatch`` missing on the remote
PATH, work dir not writable. Exit status 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server.real_server import free_port
from .remote_config import add_clusters, remote_entry
from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import HOME

pytestmark = pytest.mark.ssh

MARK = "stax-doctor-test"


@pytest.fixture
def no_sbatch_key(sshd: Sshd, tmp_path: Path) -> Iterator[str]:
    """A key of its own for the remote account whose sessions have a PATH without ``sbatch``
    (an authorized_keys ``command=`` that sets PATH, then runs the command asked for): only
    this key's sessions see it; the line is removed afterwards."""
    key = tmp_path / "id_nosbatch"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    bindir = Path(tempfile.mkdtemp(prefix="stax-nosbatch-"))
    os.chmod(bindir, 0o755)
    for d in ("/usr/bin", "/bin"):
        for exe in Path(d).iterdir():
            if exe.name != "sbatch" and not (bindir / exe.name).exists():
                (bindir / exe.name).symlink_to(exe)
    auth = HOME / ".ssh" / "authorized_keys"
    marker = f"{MARK}-{os.getpid()}"
    pub = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    forced = f'PATH={bindir}; export PATH; eval "$SSH_ORIGINAL_COMMAND"'.replace('"', '\\"')
    with open(auth, "a") as f:
        f.write(f'command="{forced}" {pub} {marker}\n')
    try:
        yield str(key)
    finally:
        # in one step (a new file renamed over it): the side part of the suite logs in to this
        # account meanwhile, and must never find the file empty or half written
        lines = auth.read_text().splitlines(keepends=True)
        st = auth.stat()
        tmp = auth.with_name(f".{auth.name}.{marker}")
        tmp.write_text("".join(ln for ln in lines if marker not in ln))
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o777)
        os.replace(tmp, auth)
        shutil.rmtree(bindir, ignore_errors=True)


def doctor(clusters: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "--clusters", str(clusters), "--store",
         str(tmp_path / "state" / "stax.sqlite"), "doctor"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "JUPYTER_STAX_NO_SERVER": "1"},
    )


def lines_of(out: str, cluster: str) -> list[str]:
    """The report's lines of ``cluster`` (each finding with its fix line appended)."""
    got, keep = [], False
    for ln in out.splitlines():
        if ln.startswith(("ok  ", "WARN", "FAIL")):
            keep = f"cluster {cluster} (" in ln
            if keep:
                got.append(ln)
        elif keep and ln.startswith("      fix: "):
            got[-1] += "\n" + ln
    return got


def test_doctor_checks_each_remote_cluster(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path, no_sbatch_key: str
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    stranger = tmp_path / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    clusters = tmp_path / "clusters.yaml"
    add_clusters(
        clusters,
        good=remote_entry(sshd, client),
        nohost=remote_entry(sshd, client, host=f"{REMOTE_USER}@stax-no-such-host.invalid"),
        badport=remote_entry(sshd, client, port=free_port()),
        badkey=remote_entry(sshd, client, known_hosts=str(empty)),
        stranger=remote_entry(sshd, client, identity_file=str(stranger)),
        nosbatch=remote_entry(sshd, client, identity_file=no_sbatch_key),
        readonly=remote_entry(sshd, client, work_dir="/proc/stax-cannot/write"),
    )
    done = doctor(clusters, tmp_path)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "Traceback" not in done.stderr

    good = lines_of(out, "good")
    assert all(ln.startswith("ok  ") for ln in good), good
    text = "\n".join(good)
    for check in ("DNS/route", "host key", "authentication", "scheduler commands", "work dir",
                  "python3"):
        assert f"cluster good (slurm over SSH): {check}: " in text, text
    assert "sbatch, squeue, scancel, scontrol" in text and "UP" in text
    assert f"{HOME}/stax-runs" in text or "will be made in" in text

    def failing(name: str) -> tuple[str, str]:
        fails = [ln for ln in lines_of(out, name) if ln.startswith("FAIL")]
        assert len(fails) == 1, (name, lines_of(out, name))
        head, _, fix = fails[0].partition("\n      fix: ")
        assert fix, f"{name}: no fix line"
        return head, fix

    head, fix = failing("nohost")
    assert "DNS/route" in head and "stax-no-such-host.invalid" in head and "`host`" in fix
    head, fix = failing("badport")
    assert "DNS/route" in head and "connection refused" in head and "`port`" in fix
    head, fix = failing("badkey")
    assert "host key" in head and "not in known_hosts" in head and "ssh-keyscan" in head
    assert any("badkey" in ln and "DNS/route" in ln and ln.startswith("ok")
               for ln in lines_of(out, "badkey"))
    head, fix = failing("stranger")
    assert "authentication: authentication refused" in head and "authorized_keys" in fix
    head, fix = failing("nosbatch")
    assert "scheduler commands: not found on" in head and head.endswith(": sbatch"), head
    assert "PATH" in fix
    assert any("nosbatch" in ln and "work dir" in ln and ln.startswith("ok")
               for ln in lines_of(out, "nosbatch"))
    head, fix = failing("readonly")
    assert "work dir: /proc/stax-cannot/write cannot be written" in head and "work_dir" in fix
