"""``jupyter stax rerun`` pins what the run recorded: a registry image by the digest the run
recorded (``REPO:TAG`` -> ``REPO@sha256:...``, the variant's name and labels kept, the change
said), and an eFlows4HPC step's container (``software.container.image``) re-pinned like a step's
image: on a cluster where its variant does not fit, the family's variant that does, said why;
the step's log proves which image ran. By id and from an exported crate, on the local executor.

The registry variant runs with the container runtime ``none`` (the image is recorded, the step
runs on the host: no registry is reachable here); the eFlows4HPC container is a real Charliecloud
image (ch-run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.cli import main

from .test_cli import Stax
from .test_cli import cli as cli  # the store-direct `jupyter stax` fixture
from .test_rerun_cli import busy_variants

REG = "docker://registry.example.org/stax/reg"
DIGEST = "sha256:" + "3" * 64


@pytest.fixture
def images(stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    x86, arm = busy_variants(stax_env)
    (stax_env / "images.yaml").write_text(
        "stax:\n"
        "  busy:\n"
        "    variants:\n"
        f"      - {{name: busy-x86, image: {x86}}}\n"
        f"      - {{name: busy-arm, image: {arm}}}\n"
        "  reg:\n"
        "    variants:\n"
        f"      - name: reg-1\n        image: {REG}:1.0\n        digest: '{DIGEST}'\n"
        "        labels: {org.hpe.staxs.mpi: none, org.example.from: registry}\n"
    )
    monkeypatch.setenv("JUPYTER_STAX_IMAGES", str(stax_env / "images.yaml"))
    (stax_env / "clusters.yaml").write_text(
        "clusters:\n"
        "  here: {scheduler: local, container_runtime: none, traits: {cpu: x86_64, mpi: none}}\n"
        "  here-arm: {scheduler: local, container_runtime: none, traits: {cpu: aarch64}}\n"
    )
    return x86, arm


def workflow(x86: Path) -> str:
    software = {
        "execution": {"type": "binary", "binary": "cat", "args": "/etc/stax-marker"},
        "container": {"engine": "CHARLIECLOUD", "image": str(x86)},
    }
    return json.dumps(
        {
            "name": "pinning",
            "steps": [
                {"name": "reg", "image": "reg", "run": "echo reg ran"},
                {"name": "sw", "software": software},
            ],
        }
    )


class InProcess:
    """``jupyter stax`` commands that only read, run in this process (the runs and re-runs are
    real commands): each saves a CLI start."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> str:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        assert code == 0, (args, err)
        return out

    def final(self, printed: str) -> dict[str, Any]:
        """The execution a ``--wait``ed run or re-run printed, ended."""
        ex: dict[str, Any] = json.loads(self("status", printed.split()[1], "--json"))
        assert ex["state"] == "completed", ex
        return ex


def test_rerun_pins_registry_digests_and_eflows_containers(
    cli: Stax, images: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    x86, arm = images
    here = InProcess(capsys)
    cli.write("pinning.json", workflow(x86))
    first = here.final(cli.ok("run", "pinning.json", "--cluster", "here", "--wait"))
    reg = first["steps"][0]["resolved_image"]
    assert (reg["name"], reg["reference"], reg["digest"]) == ("reg-1", f"{REG}:1.0", DIGEST)
    assert first["steps"][1]["resolved_image"]["name"] == "busy-x86"
    assert here("logs", first["id"], "sw") == "marker-x86\n"
    pin_line = (
        f"step 'reg': reg-1 pinned to the digest the run recorded: {REG}:1.0 -> {REG}@{DIGEST}"
    )
    arm_line = "step 'sw': busy-x86 -> busy-arm: cpu x86_64 != aarch64"

    # by id, where the eFlows4HPC container's variant does not fit
    out = cli.ok("rerun", first["id"], "--cluster", "here-arm", "--wait")
    assert f"changed: {pin_line}" in out and f"changed: {arm_line}" in out, out
    again = here.final(out)
    assert again["origin"]["changes"] == [pin_line, arm_line]
    steps = again["workflow"]["steps"]
    assert steps[0]["image"] == f"{REG}@{DIGEST}"
    assert steps[1]["software"]["container"] == {"engine": "CHARLIECLOUD", "image": str(arm)}
    reg = again["steps"][0]["resolved_image"]  # the catalog's variant, by its digest
    assert (reg["name"], reg["family"], reg["reference"], reg["digest"]) == (
        "reg-1", "reg", f"{REG}@{DIGEST}", DIGEST
    )
    assert reg["labels"]["org.example.from"] == "registry"
    assert again["steps"][1]["resolved_image"]["name"] == "busy-arm"
    assert here("logs", again["id"], "sw") == "marker-arm\n"

    # from the crate, where it ran: the digest pin only; the container stays
    crate = here("export", first["id"], "--to", str(cli.cwd / "pinning.crate.zip")).strip()
    out = cli.ok("rerun", crate, "--wait")
    from_crate = here.final(out)
    assert from_crate["origin"]["changes"] == [pin_line]
    steps = from_crate["workflow"]["steps"]
    assert steps[0]["image"] == f"{REG}@{DIGEST}"
    assert steps[1]["software"]["container"]["image"] == str(x86)
    assert here("logs", from_crate["id"], "sw") == "marker-x86\n"
