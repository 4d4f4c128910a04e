"""Kernel restart in the middle of a Slurm execution loses nothing: a new kernel's
``%stax list`` shows the execution and ``%stax watch ID`` follows it to the end. Both ways a
kernel can run: under a Jupyter server (the kernel gets ``$JUPYTER_STAX_SERVER_URL``, as the
server's kernels do, and the server's engine drives the run) and with no server (the background
engine on the store drives it)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from ..server.real_server import RealServer, child_env
from ..waiting import gate, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(300)]


class Kernel:
    """A real ipykernel; ``run(code)`` gives the text it printed or displayed as text/plain,
    and the mime types of what it displayed."""

    def __init__(self, kernelspec: str, env: dict[str, str], cwd: Path) -> None:
        self.km = KernelManager(kernel_name=kernelspec)
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.mimes: list[str] = []

    def run(self, code: str, timeout: float = 120) -> str:
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind in ("display_data", "execute_result"):
                self.mimes += list(content["data"])
                out.append(content["data"].get("text/plain", "").rstrip("\n") + "\n")
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        assert reply["content"]["status"] == "ok", (errors, out)
        return "".join(out)

    def restart(self) -> None:
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=60)

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture(params=["server", "no-server"])
def kernel(
    request: pytest.FixtureRequest, store: Path, kernelspec: str, tmp_path: Path, slurm: str
) -> Iterator[Kernel]:
    env = child_env()
    if request.param == "server":
        srv: RealServer = request.getfixturevalue("real_server")
        env.update(JUPYTER_STAX_SERVER_URL=srv.url, JUPYTER_STAX_TOKEN=srv.token)
    else:
        env["JUPYTER_STAX_NO_SERVER"] = "1"
    k = Kernel(kernelspec, env, tmp_path)
    k.param = request.param  # type: ignore[attr-defined]
    yield k
    k.stop()


def squeue_names() -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%j"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_restart_then_watch(kernel: Kernel, tmp_path: Path) -> None:
    # after its second tick the slow step waits for the test: it still runs after the restart
    # and the listing, however long the kernel takes to come back
    go = tmp_path / "go"
    kernel.run("%load_ext jupyter_stax")
    kernel.run(
        "%%stax_task slow\n"
        f"for i in $(seq 1 10); do echo tick $i; [ $i = 2 ] && {{ {gate(go)}; }}; sleep 1; done\n"
    )
    kernel.run("%%stax_task after --after slow\necho after $(grep -c tick ../slow/stax.out)\n")
    out = kernel.run(
        "run = %stax_submit --cluster slurm\nprint(run.id, type(run.service).__name__)"
    )
    found = re.search(r"^([0-9a-f]{8}) (\w+Service)$", out, re.MULTILINE)
    assert found, out
    eid, service = found.groups()
    assert service == ("RestService" if kernel.param == "server" else "LocalService")  # type: ignore[attr-defined]
    assert "application/vnd.jupyter.widget-view+json" in kernel.mimes
    # restart while the first step runs on Slurm
    wait_for(
        lambda: "tick 2" in kernel.run("print(run.refresh().logs('slow'))"),
        180,  # the shared Slurm may be busy with other jobs first
        "the first step's output",
    )
    assert kernel.run("print(run.state)").strip() == "running"
    kernel.restart()

    assert "NameError" in kernel.run(
        "try:\n    run\nexcept NameError as e:\n    print('NameError')"
    )
    kernel.run("%load_ext jupyter_stax")
    listed = kernel.run("%stax list")
    assert eid in listed and "running" in listed
    go.touch()
    kernel.mimes.clear()
    out = kernel.run(
        f"w = %stax watch {eid[:6]}\n"
        "await w.wait_async(120)\n"
        "print(w.state, [(s.name, s.attempt, s.exit_code) for s in w.steps])\n"
        "print(w.logs('after'), end='')"
    )
    assert "application/vnd.jupyter.widget-view+json" in kernel.mimes  # a new live monitor
    assert out.splitlines()[-2:] == [
        "completed [('slow', 1, 0), ('after', 1, 0)]",  # each step ran once
        "after 10",
    ]
    assert not any(name.startswith(f"stax-{eid}") for name in squeue_names())
