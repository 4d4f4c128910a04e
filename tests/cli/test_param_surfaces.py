"""``n=10`` binds the same typed value from every surface, as a Python step sees it: the
``jupyter stax`` CLI (on the store, and through a real Jupyter server's REST API), the REST API
itself (its JSON body), the magics and the picker. Every step runs on the ``local`` cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.kernel.api import Execution, Workflow
from jupyter_stax.service import LocalService

from ..proc import kill, pgrep
from .test_cli import Stax

#: a Python step that prints what it was given: the type's name and the value's repr
SHOW = "print(type({{n}}).__name__, repr({{n}}), type({{s}}).__name__, repr({{s}}))"
WORKFLOW = f"name: typed\nsteps:\n  - name: show\n    language: python\n    run: {SHOW!r}\n"
#: what the step prints for n=10 s=true from every surface
SEEN = "int 10 bool True\n"


@pytest.fixture
def stax(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stax]:
    for name in ("JUPYTER_STAX_SERVER_URL", "JUPYTER_STAX_TOKEN", "JUPYTER_STAX_NO_SERVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_STAX_DAEMON_IDLE_EXIT", "2")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(stax_env / "no-server-here"))
    s = Stax(stax_env, stax_env / "state" / "stax.sqlite")
    (stax_env / "typed.yaml").write_text(WORKFLOW)
    yield s
    kill(pgrep(f"jupyter_stax.engine.daemon --store {s.store}"))


def _cli(stax: Stax, *options: str) -> str:
    r = stax(
        *options,
        "run",
        "typed.yaml",
        "--cluster",
        "local",
        "--param",
        "n=10",
        "-p",
        "s=true",
        "--wait",
    )
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    return stax.ok(*options, "logs", eid, "show")


def _notebook_workflow() -> Workflow:
    wf = Workflow("typed")
    wf.step("show", SHOW, python=True)
    return wf


def _magics(svc: LocalService) -> str:
    from jupyter_stax.kernel.magics import StaxMagics

    magics = StaxMagics(None, service=svc)
    magics.stax_task("show --python", SHOW + "\n")
    ex = magics.stax_submit(
        "--cluster local --param n=10 --param s=true --no-monitor --wait --timeout 60"
    )
    assert isinstance(ex, Execution)
    return ex.logs("show")


def _picker(svc: LocalService) -> str:
    from jupyter_stax.kernel.picker import Picker

    p = Picker(_notebook_workflow(), svc)
    try:
        p.loading.result(30)
        p.cluster.value = "local"
        p.params.value = "n=10\ns=true\n"
        ex = p.submit()
        return ex.wait(60).logs("show")
    finally:
        p.close()


@pytest.mark.parametrize("surface", ["cli", "cli through REST", "REST body", "magics", "picker"])
def test_n_equals_10_binds_the_same_typed_value_on_every_surface(
    surface: str, stax: Stax, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if surface in ("cli through REST", "REST body"):
        server = request.getfixturevalue("real_server")
        if surface == "cli through REST":
            monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
            r = stax("list")
            assert f"using the Jupyter server {server.url}" in r.stderr  # not the store
            seen = _cli(stax)
        else:  # what `n=10` is in a JSON body
            status, body = server.call(
                "POST",
                "executions",
                {"workflow": WORKFLOW, "cluster": "local", "params": {"n": 10, "s": True}},
            )
            assert status == 201, body
            ex = Execution.attach(body["id"], LocalService(stax.store))
            seen = ex.wait(60).logs("show")
    elif surface == "cli":
        seen = _cli(stax, "--no-server")
    else:
        svc = LocalService()
        try:
            seen = _magics(svc) if surface == "magics" else _picker(svc)
        finally:
            svc.close()
    assert seen == SEEN
