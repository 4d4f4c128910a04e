"""The REST build flow in the eFlows4HPC image-creation shape, with a token: POST stax/api/builds
-> 201 + id, GET builds/{id} from PENDING/BUILDING to a final state (one variant FAILED with the
builder's words, the other built and catalogued), GET builds/{id}/log; and the refusals before
any build (a recipe outside the server's root, an unknown matrix key, an unknown cluster)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ..images import BUSYBOX
from ..recipes import make_recipe
from ..waiting import NotYet, wait_for_async
from .conftest import Call

pytestmark = pytest.mark.skipif(
    not (shutil.which("ch-image") and BUSYBOX.exists()) and not os.environ.get("CI"),
    reason="needs ch-image and busybox-static",
)


@pytest.fixture
def recipe(jp_root_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CH_IMAGE_STORAGE", str(tmp_path / "ch-storage"))
    return make_recipe(jp_root_dir / "solver")


async def test_build_flow(api: Call, recipe: Path, jp_root_dir: Path) -> None:
    r = await api(
        "POST",
        "builds",
        body={"recipe": "solver/stax.yaml", "variants": ["mpi=mpich"], "catalog": "images.yaml"},
        expect=201,
    )
    st = r.body
    assert st["status"] in ("PENDING", "BUILDING")
    assert st["variants"] == ["solver-x86_64-mpich-none", "solver-x86_64-mpich-cuda"]
    assert r.headers["Location"].endswith(f"/stax/api/builds/{st['id']}")
    seen: set[str] = set()

    async def final() -> dict[str, Any] | NotYet:
        body = (await api("GET", f"builds/{st['id']}")).body
        seen.add(body["status"])
        return dict(body) if body["status"] in ("FINISHED", "FAILED") else NotYet(body)

    done = await wait_for_async(final, 120, "the build to end", interval=0.2)
    assert seen <= {"PENDING", "BUILDING", "CONVERTING", "FAILED"}
    assert done["status"] == "FAILED"  # one variant failed; the other built
    assert "1 of 2 variants failed" in done["message"]
    ok, bad = done["results"]
    assert (ok["status"], bad["status"]) == ("built", "failed")
    assert "no CUDA for MPICH here" in bad["message"]
    assert done["images"] == [ok["reference"]]
    assert (Path(ok["reference"]) / "etc" / "stax-variant").read_text() == "mpi=mpich gpu=none\n"
    assert done["catalog"] == str(jp_root_dir / "images.yaml")
    assert "solver-x86_64-mpich-none" in (jp_root_dir / "images.yaml").read_text()
    log = (await api("GET", f"builds/{st['id']}/log")).body
    assert "solver-x86_64-mpich-none: building" in log["text"]
    assert "no CUDA for MPICH here" in log["text"]  # the builder's own log


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"recipe": "../elsewhere/stax.yaml"}, 403, "outside the server's root"),
        ({"recipe": "solver/stax.yaml", "variants": ["network=ofi"]}, 400, "unknown matrix key"),
        ({"recipe": "solver/stax.yaml", "machine": "nowhere"}, 404, "nowhere"),
        ({"recipe": "solver/stax.yaml", "format": "tar"}, 400, "format"),
        ({"recipe": "solver/missing.yaml"}, 400, "cannot read recipe"),
    ],
)
async def test_refused_before_any_build(
    api: Call, recipe: Path, body: dict[str, Any], code: int, says: str
) -> None:
    r = await api("POST", "builds", body=body, expect=code)
    assert says in r.body["message"] + str(r.body["details"])
    assert not (recipe.parent / "images").exists()


async def test_unknown_build(api: Call) -> None:
    r = await api("GET", "builds/nope", expect=404)
    assert "no build 'nope'" in r.body["message"]
