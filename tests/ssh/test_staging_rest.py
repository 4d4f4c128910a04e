"""Data in and out over the REST API of a real Jupyter server whose engine drives a remote Slurm
through the real sshd (issue 14): inputs staged from the server's file tree, outputs fetched
back and recorded, on-demand fetch, and the rule that files named in requests lie inside the
server's root directory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.client import RestService
from jupyter_stax.core.errors import BadRequest, Forbidden
from jupyter_stax.core.models import SubmitOptions
from jupyter_stax.core.staging import FetchRequest

from ..server.real_server import RealServer
from ..waiting import wait_for
from .sshd import REMOTE_USER, Client, Sshd

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


@pytest.fixture
def server(stax_env: Path, sshd: Sshd, client: Client, slurm: str) -> Iterator[RealServer]:
    clusters = stax_env / "clusters-far.yaml"
    clusters.write_text(
        "clusters:\n  far:\n    scheduler: slurm\n"
        f"    host: {REMOTE_USER}@127.0.0.1\n    port: {sshd.port}\n"
        f"    identity_file: {client.identity}\n    known_hosts: {client.known_hosts}\n"
        "    queue: debug\n    walltime: '00:05:00'\n    poll_interval: 1\n"
    )
    srv = RealServer(stax_env / "jupyter", store=stax_env / "state" / "stax.sqlite",
                     work_dir=stax_env / "runs", clusters_file=clusters)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_inputs_outputs_and_fetch_over_rest(server: RealServer, tmp_path: Path) -> None:
    svc = RestService(server.url, server.token)
    nb = server.home / "project"  # inside the server's root directory
    nb.mkdir(parents=True)
    data = os.urandom(3 << 20)
    (nb / "in.bin").write_bytes(data)
    wf = {
        "name": "rest-files",
        "steps": [
            {"name": "far", "cluster": "far", "inputs": ["in.bin"],
             "run": "mkdir -p res && sha256sum in.bin | cut -c1-64 > res/sum.txt && "
                    "cp in.bin res/copy.bin && ln -s /etc/passwd evil",
             "outputs": ["res/*"]},
            {"name": "here", "inputs": [{"from": "far", "path": "res/sum.txt"}],
             "run": "cp res/sum.txt mine.txt", "outputs": ["mine.txt"]},
        ],
    }
    ex = svc.submit(wf, "local", options=SubmitOptions(base_dir=str(nb)))
    done = wait_for(lambda: (e := svc.get(ex.id)).state.final and e, 240, "the run to end")
    assert done.state.value == "completed", [(s.name, s.state, s.reason) for s in done.steps]
    far, here = done.steps
    assert far.files and far.files.fetch == "fetched"
    dest = nb / "stax-outputs" / ex.id / "far"
    assert (dest / "res" / "copy.bin").read_bytes() == data
    assert (dest / "res" / "sum.txt").read_text().strip() == hashlib.sha256(data).hexdigest()
    recs = {r.path: r for r in far.files.outputs}
    assert recs["res/copy.bin"].sha256 == hashlib.sha256(data).hexdigest()
    assert here.files and here.files.fetch == "in place"

    # the sidebar's file list and Download, through the transport (the step ran over SSH)
    listing = svc.request("GET", f"executions/{ex.id}/steps/far/files")
    sizes = {f["path"]: f["size"] for f in listing["files"]}
    assert sizes["res/copy.bin"] == len(data) and "evil" not in sizes and listing["links"] == 1
    assert _download(server, ex.id, "far", "res/copy.bin") == (200, data)
    code, body = _download(server, ex.id, "far", "evil")
    assert code == 403 and b"root:" not in body
    assert _download(server, ex.id, "far", "../../x")[0] == 400

    # on demand, into the root: a named step's file to a directory of the caller's choosing
    got = svc.fetch(ex.id, FetchRequest(step="far", pattern="res/sum.txt", to=str(nb / "x")))
    assert [s.fetch for s in got.steps] == ["fetched"]
    assert (nb / "x" / "res" / "sum.txt").exists()
    # outside the server's root directory: refused, nothing written
    with pytest.raises(Forbidden, match="only inside its root directory"):
        svc.fetch(ex.id, FetchRequest(step="far", to=str(tmp_path / "outside")))
    assert not (tmp_path / "outside").exists()
    with pytest.raises(BadRequest, match="reaches outside the step directory"):
        svc.request("POST", f"executions/{ex.id}/fetch", body={"pattern": "../x"})
    # a submission that stages files from outside the root is refused before anything runs
    (tmp_path / "secret.txt").write_text("s")
    with pytest.raises(Forbidden) as e:
        svc.submit({"name": "out", "steps": [{"name": "a", "inputs": ["secret.txt"],
                                              "run": "cat secret.txt"}]},
                   "local", options=SubmitOptions(base_dir=str(tmp_path)))
    assert any("input 'secret.txt'" in d for d in e.value.details)


def _download(server: RealServer, eid: str, step: str, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    url = f"{server.url}stax/api/executions/{eid}/steps/{step}/download?path={quote(path)}"
    req = urllib.request.Request(url, headers={"Authorization": f"token {server.token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
