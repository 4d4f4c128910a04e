"""The crate exporter's file handling on a real file system: only the step's own regular files
go in (a link out of the step directory or a FIFO is refused, as for logs), a remote cluster's
files are left out and said so, and unpacking a crate zip refuses members outside it."""

from __future__ import annotations

import os
import stat
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from jupyter_stax.core.errors import BadRequest, Conflict, Forbidden
from jupyter_stax.core.models import Execution, StepRun, Workflow
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.operations.crate import build, safe_extract

from ..crates import check_crate

T = datetime(2026, 1, 1, tzinfo=timezone.utc)


def finished(tmp_path: Path, cluster: str = "here") -> Execution:
    d = tmp_path / "runs" / "e1" / "a"
    d.mkdir(parents=True)
    (d / "stax.step.sh").write_text("echo hi\n")
    (d / "stax.out").write_text("hi\n")
    (d / "stax.err").write_text("")
    return Execution(
        id="e1",
        workflow=Workflow.model_validate({"name": "w", "steps": [{"name": "a", "run": "echo hi"}]}),
        cluster=cluster,
        state=ExecutionState.COMPLETED,
        created_at=T,
        finished_at=T,
        work_dir=str(d.parent),
        steps=[
            StepRun(
                name="a", cluster=cluster, state=StepState.COMPLETED, attempt=1, native_id="1",
                exit_code=0, submitted_at=T, started_at=T, finished_at=T, directory=str(d),
                script=str(d / "stax.step.sh"), stdout=str(d / "stax.out"),
                stderr=str(d / "stax.err"),
            )
        ],
    )


def test_the_step_files_go_in_with_their_checksums(tmp_path: Path) -> None:
    ex = finished(tmp_path)
    g = check_crate(build(ex, {}, None, tmp_path / "c.zip"))
    assert g["steps/a/attempt-1/stax.out"]["contentSize"] == "3"


def test_a_log_that_links_out_of_the_step_directory_is_refused(tmp_path: Path) -> None:
    ex = finished(tmp_path)
    err = Path(ex.steps[0].stderr)
    err.unlink()
    secret = tmp_path / "secret"
    secret.write_text("not yours\n")
    err.symlink_to(secret)
    with pytest.raises(Forbidden, match="outside the step directory"):
        build(ex, {}, None, tmp_path / "c.zip")
    assert not (tmp_path / "c.zip").exists()


def test_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    ex = finished(tmp_path)
    out = Path(ex.steps[0].stdout)
    out.unlink()
    os.mkfifo(out)
    assert stat.S_ISFIFO(out.stat().st_mode)
    with pytest.raises(Forbidden, match="not a regular file"):
        build(ex, {}, None, tmp_path / "c.zip")


def test_files_of_a_remote_cluster_are_left_out_and_said(tmp_path: Path) -> None:
    from jupyter_stax.core.clusters import ClusterRegistry

    clusters = tmp_path / "clusters.yaml"
    clusters.write_text("clusters:\n  far:\n    scheduler: slurm\n    host: login.example\n")
    ex = finished(tmp_path, cluster="far")
    g = check_crate(build(ex, {}, ClusterRegistry.load(clusters), tmp_path / "c.zip"))
    assert not any(k.startswith("steps/a/attempt-1/") for k in g)
    assert "not found at export): stdout, stderr" in g["#e1-a-1"]["description"]


def test_destinations_are_checked(tmp_path: Path) -> None:
    ex = finished(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(Conflict, match="not an empty directory"):
        build(ex, {}, None, tmp_path / "full", as_dir=True)
    with pytest.raises(BadRequest, match="is a directory"):
        build(ex, {}, None, tmp_path / "full")


@pytest.mark.parametrize(
    "member", ["../escape.txt", "/abs.txt", "a/../../escape.txt", "dir\\..\\x"]
)
def test_unpacking_refuses_members_outside_the_crate(tmp_path: Path, member: str) -> None:
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("ro-crate-metadata.json", "{}")
        f.writestr(member, "x")
    with pytest.raises(BadRequest, match="outside the crate"):
        safe_extract(z, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out").exists()


def test_unpacking_refuses_a_symlink_member(tmp_path: Path) -> None:
    z = tmp_path / "link.zip"
    info = zipfile.ZipInfo("steps/a/stax.out")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(z, "w") as f:
        f.writestr(info, "/etc/passwd")
    with pytest.raises(BadRequest, match="not a plain file"):
        safe_extract(z, tmp_path / "out")
