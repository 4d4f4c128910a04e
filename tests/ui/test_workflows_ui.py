"""Published workflows end to end on one real JupyterLab: published from a notebook (nbclient,
``%stax publish``), triggered from the CLI, from REST with the token (on the real Slurm), and
from the sidebar's Workflows form in a real browser; an unauthenticated trigger is refused; bad
inputs are a 400 listing every problem; executions are filtered by the workflow they came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ..kernel.conftest import kernelspec as kernelspec  # the ipykernel kernelspec fixture
from ..kernel.test_first_read import run_cells
from ..server.real_server import child_env
from ..waiting import wait_for
from .conftest import screenshot
from .lab import LabServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT = 'for i in $(seq {{n}}); do echo "hello {{who}} $i"; done'


def post(lab: LabServer, path: str, body: Any, token: str | None) -> tuple[int, Any, str]:
    """(status, JSON body, Location) of a POST, with the token or without."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    req = urllib.request.Request(
        f"{lab.url}stax/api/{path}", json.dumps(body).encode(), headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read()), r.headers.get("Location", "")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw.decode(errors="replace")
        return e.code, data, ""


def final(lab: LabServer, eid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        ex: dict[str, Any] = lab.api("GET", f"executions/{eid}")
        return ex if ex["state"] in ("completed", "failed", "canceled") else None

    return wait_for(done, 120, f"execution {eid} to end", interval=0.3)


def stdout(lab: LabServer, eid: str) -> str:
    return str(lab.api("GET", f"executions/{eid}/steps/hello/log")["data"])


def test_publish_from_a_notebook_trigger_from_cli_rest_and_the_sidebar(
    page: Any, lab: LabServer, kernelspec: str, tmp_path: Path, slurm: str
) -> None:
    env = {"JUPYTER_STAX_SERVER_URL": lab.url, "JUPYTER_STAX_TOKEN": lab.token}
    nb_dir = lab.root_dir / "nb"
    nb_dir.mkdir()
    # 1. the developer publishes from a notebook (a real kernel, talking to this server)
    _, published, listed = run_cells(
        nb_dir,
        kernelspec,
        f"%%stax_task hello\n{SCRIPT}",
        "%stax publish --name greet --version 1.0 --cluster local --param n=2 "
        "--param who=world --describe n='how many times'",
        "%stax workflows",
        **env,
    )
    assert published.splitlines() == [
        "published greet version 1.0 (1 steps)",
        "  n (integer, default 2): how many times",
        "  who (string, default 'world')",
    ], published
    assert "greet (version 1.0): n, who" in listed
    w = lab.api("GET", "workflows/greet")
    assert w["default_cluster"] == "local" and w["versions"] == ["1.0"]
    assert w["workflow"]["steps"][0]["run"] == SCRIPT + "\n"  # the cell body

    # 2. an end user triggers it from the CLI (through this server), text stays data
    cli = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "workflows", "trigger", "greet",
         "--input", "n=3", "--input", "who=$(touch PWNED) 'x'", "-q"],
        cwd=tmp_path, env=child_env(**env), capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stderr.splitlines()[0] == f"using the Jupyter server {lab.url}"
    from_cli = cli.stdout.strip()
    assert len(from_cli.split()) == 1  # -q: only the id

    # 3. from REST with the token, on the real Slurm: 201 + Location
    code, ex, location = post(
        lab, "workflows/greet", {"inputs": {"n": 1, "who": "rest"}, "cluster": "slurm"}, lab.token
    )
    assert code == 201, ex
    from_rest = ex["id"]
    assert location.endswith(f"/stax/api/executions/{from_rest}")
    assert ex["origin"]["workflow"] == "greet" and ex["origin"]["version"] == "1.0"
    assert ex["cluster"] == "slurm" and ex["workflow"]["name"] == "greet"
    # every problem of the inputs in one 400; the steps cannot be changed
    code, err, _ = post(
        lab, "workflows/greet", {"inputs": {"n": "3", "who": 5, "what": 1}}, lab.token
    )
    assert code == 400 and err["error"] == "InvalidInputs", err
    assert err["details"] == [
        "unknown input 'what'; the inputs of greet: n, who",
        "input 'n' must be an integer, not string '3'",
        "input 'who' must be a string, not integer 5",
    ]
    code, err, _ = post(
        lab, "workflows/greet", {"inputs": {}, "workflow": {"steps": [{"name": "x", "run": "id"}]}},
        lab.token,
    )
    assert code == 400 and "workflow" in json.dumps(err), err
    # 4. without the token: refused, nothing runs
    before = {e["id"] for e in lab.api("GET", "executions")["executions"]}
    for path, body in (("workflows/greet", {"inputs": {"n": 1}}), ("workflows", {})):
        code, err, _ = post(lab, path, body, None)
        assert code == 403, (path, code, err)
    assert {e["id"] for e in lab.api("GET", "executions")["executions"]} == before

    # 5. from the sidebar's form: the inputs with their defaults, types checked, Run
    section = page.locator("#jupyter-stax-panel .jp-StaxWorkflows")
    pick = section.locator(".jp-StaxWorkflowPick")
    pick.wait_for(timeout=30_000)  # the Workflows section reloads as executions change
    pick.select_option("greet")
    form = section.locator('.jp-StaxWorkflowForm[data-workflow="greet"]')
    form.wait_for()
    n = form.locator('.jp-StaxInput[data-input="n"] input')
    who = form.locator('.jp-StaxInput[data-input="who"] input')
    assert n.get_attribute("type") == "number" and n.input_value() == "2"
    assert who.get_attribute("type") == "text" and who.input_value() == "world"
    assert "how many times" in form.locator('.jp-StaxInput[data-input="n"]').inner_text()
    page.evaluate(  # a value a number field can hold but an integer input cannot take
        """() => { const i = document.querySelector(
               '.jp-StaxWorkflowForm [data-input="n"] input');
             i.step = 'any'; }"""
    )
    n.fill("1.5")
    form.locator(".jp-StaxWorkflowRun").click()
    form.locator(".jp-StaxProblems").wait_for()
    assert form.locator(".jp-StaxProblems").inner_text() == "n must be an integer, not '1.5'"
    n.fill("4")
    who.fill("sidebar")
    screenshot(section, "workflows-form")
    form.locator(".jp-StaxWorkflowRun").click()
    started = section.locator(".jp-StaxWorkflowStarted")
    started.wait_for(timeout=30_000)
    from_ui = started.get_attribute("data-execution-id")
    assert from_ui and from_ui not in (from_cli, from_rest)
    section.locator(
        f'.jp-StaxWorkflowRunItem[data-execution-id="{from_ui}"][data-state="completed"]'
    ).wait_for(timeout=60_000)

    # what each one ran: the published steps with the given inputs, as data
    assert final(lab, from_cli)["state"] == "completed"
    assert stdout(lab, from_cli) == "".join(
        f"hello $(touch PWNED) 'x' {i}\n" for i in (1, 2, 3)
    )
    assert not list(Path(final(lab, from_cli)["work_dir"]).rglob("PWNED"))
    assert final(lab, from_ui)["cluster"] == "local"
    assert stdout(lab, from_ui) == "".join(f"hello sidebar {i}\n" for i in (1, 2, 3, 4))
    assert final(lab, from_rest)["state"] == "completed"
    assert stdout(lab, from_rest) == "hello rest 1\n"
    # 6. executions remember where they came from: filtered by it (REST, CLI)
    ids = {e["id"] for e in lab.api("GET", "executions?workflow=greet")["executions"]}
    assert ids == {from_cli, from_rest, from_ui}
    assert {
        e["id"] for e in lab.api("GET", "executions?workflow=greet@1.0")["executions"]
    } == ids
    assert lab.api("GET", "executions?workflow=greet@2")["executions"] == []
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter_stax.cli", "list", "--workflow", "greet", "--json"],
        cwd=tmp_path, env=child_env(**env), capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert {e["id"] for e in json.loads(listing.stdout)} == ids
    assert os.path.exists(lab.log_path) and "Traceback" not in lab.log()
