"""``jupyter stax export ID [--to F.zip | --dir D]``: on the store directly, and through a real
Jupyter server (the zip downloaded from ``GET executions/{id}/crate``, unpacked safely)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..crates import check_crate, ids
from ..proc import kill
from ..server.real_server import RealServer
from .test_cli import FAILING, Stax
from .test_cli import cli as cli  # the store-direct `jupyter stax` fixture

HOSTILE = "x'y\"z\n$(touch PWNED) ../../etc"


def _export_all_ways(c: Stax, eid: str) -> None:
    out = c.ok("export", eid).strip()
    default = c.cwd / f"fails-{eid}.crate.zip"
    assert out == str(default)
    g = check_crate(default)
    assert g[f"#{eid}-bad-1"]["error"].startswith("failed: exit code 3")
    assert "after (skipped" in g[f"#{eid}"]["description"]
    lic = "https://spdx.org/licenses/CC-BY-4.0"
    out = c.ok("export", eid[:6], "--to", "sub/run.zip", "--license", lic).strip()
    assert out == str(c.cwd / "sub/run.zip")
    assert check_crate(c.cwd / "sub" / "run.zip")["./"]["license"] == lic
    d = c.ok("export", eid, "--dir", "unpacked").strip()
    g = check_crate(Path(d))
    assert (Path(d) / "steps/bad/attempt-1/stax.err").read_text() == "oops\n"
    params = {g[i]["name"]: g[i]["value"] for i in ids(g[f"#{eid}"]["object"])}
    assert params == {"msg": HOSTILE}
    r = c("export", eid, "--dir", "unpacked")
    assert r.returncode == 1 and "not an empty directory" in r.stderr
    r = c("export", "nope")
    assert r.returncode == 1 and "no execution 'nope'" in r.stderr
    r = c("export", eid, "--to", "a.zip", "--dir", "b")
    assert r.returncode == 2 and "not allowed with" in r.stderr


def _run(c: Stax) -> str:
    c.write("fails.yaml", FAILING.replace("name: fails\n", "name: fails\nparams: {msg: m}\n"))
    r = c("run", "fails.yaml", "--cluster", "local", "--param", f"msg={json.dumps(HOSTILE)}",
          "--wait")
    eid = r.stdout.split()[1]
    assert c.status(eid)["state"] == "failed"
    return eid


def test_export_from_the_store(cli: Stax) -> None:
    _export_all_ways(cli, _run(cli))


@pytest.fixture
def server_cli(
    stax_env: Path, real_server: RealServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stax]:
    for name in ("JUPYTER_STAX_SERVER_URL", "JUPYTER_STAX_TOKEN", "JUPYTER_STAX_NO_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(real_server.runtime_dir))
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    stax = Stax(stax_env, stax_env / "state" / "stax.sqlite")
    yield stax
    kill(stax.daemon_pids())


def test_export_through_the_server(server_cli: Stax, real_server: RealServer) -> None:
    eid = _run(server_cli)
    r = server_cli("export", eid, "--to", "via-server.zip")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == f"using the Jupyter server {real_server.url}"
    check_crate(server_cli.cwd / "via-server.zip")
    d = Path(server_cli.ok("export", eid, "--dir", "unpacked").strip())  # downloaded, unpacked
    g = check_crate(d)
    assert (d / "steps/bad/attempt-1/stax.err").read_text() == "oops\n"
    assert {g[i]["value"] for i in ids(g[f"#{eid}"]["object"])} == {HOSTILE}
    r = server_cli("export", "nope")
    assert r.returncode == 1 and "no execution 'nope'" in r.stderr  # the server's 404
    assert not server_cli.daemon_pids()  # the server's engine ran it; the export was a GET
