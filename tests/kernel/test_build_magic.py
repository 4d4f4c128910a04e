"""``%stax build`` in a real IPython shell: the recipe's variant built with ch-image here, the
summary table printed, the report returned, and a recipe error as one UsageError line."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..images import BUSYBOX
from ..recipes import make_recipe
from .test_magics import Shell

pytestmark = pytest.mark.skipif(
    not (shutil.which("ch-image") and BUSYBOX.exists()) and not os.environ.get("CI"),
    reason="needs ch-image and busybox-static",
)


@pytest.fixture
def shell(svc: object, capsys: pytest.CaptureFixture[str]) -> Iterator[Shell]:
    sh = Shell(svc, capsys)  # type: ignore[arg-type]
    yield sh


def test_build_magic(shell: Shell, stax_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CH_IMAGE_STORAGE", str(stax_env / "ch-storage"))
    recipe = make_recipe(stax_env / "r")
    cat = stax_env / "images.yaml"
    out = shell.ok(
        f"report = %stax build {recipe} --variant mpi=none --variant gpu=none --catalog {cat}"
    )
    report = shell.ip.user_ns["report"]
    assert [(r.name, r.status) for r in report.results] == [("solver-x86_64-none-none", "built")]
    assert "solver-x86_64-none-none: building" in out
    assert out.splitlines()[-2].split()[:2] == ["solver-x86_64-none-none", "built"]
    assert f"catalogued in {cat}" in out
    err = shell.fails(f"%stax build {recipe} --variant network=ofi")
    assert "unknown matrix key 'network'" in err
