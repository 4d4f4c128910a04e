"""``GET notebook-parameters`` (issue 16, the "Run on a cluster..." form) on a real Jupyter
server: the parameters cell of a notebook in the server's root directory; bad paths answer
400/403/404 with what was wrong; a notebook step naming a notebook outside the root is
refused before anything runs."""

from __future__ import annotations

from pathlib import Path

from ..engine.test_notebook_steps import make_notebook
from .conftest import Call


async def test_notebook_parameters(api: Call, jp_root_dir: Path, tmp_path: Path) -> None:
    make_notebook(
        jp_root_dir / "work" / "a b.ipynb",
        [("code", "year = 2024  # the season\nxs = [1]", ["parameters"])],
    )
    r = await api("GET", "notebook-parameters", params={"path": "work/a b.ipynb"})
    assert r.body["tagged"] and r.body["cell"] == 1 and r.body["kernel"] == "python3"
    assert r.body["path"] == "work/a b.ipynb"
    assert [(p["name"], p["value"], p["type"], p["help"], p["settable"])
            for p in r.body["parameters"]] == [
        ("year", 2024, "int", "the season", True),
        ("xs", None, "other", None, False),
    ]
    (jp_root_dir / "plain.ipynb").write_text("{not json")
    (jp_root_dir / "dir.ipynb").mkdir()
    outside = tmp_path / "outside.ipynb"
    make_notebook(outside, [("code", "x = 1", ["parameters"])])
    for params, code, needle in [
        ({}, 400, "path is required"),
        ({"path": "a.py"}, 400, "not an .ipynb file"),
        ({"path": "missing.ipynb"}, 404, "no such file"),
        ({"path": "plain.ipynb"}, 400, "not a Jupyter notebook"),
        ({"path": "dir.ipynb"}, 400, "is not a file"),
        ({"path": "../outside.ipynb"}, 403, "only inside its root directory"),
        ({"path": str(outside)}, 403, "only inside its root directory"),
    ]:
        r = await api("GET", "notebook-parameters", params=params, expect=code)
        assert needle in r.body["message"], (params, r.body)


async def test_a_notebook_outside_the_root_is_refused(
    api: Call, jp_root_dir: Path, tmp_path: Path
) -> None:
    make_notebook(tmp_path / "far.ipynb", [("code", "x = 1", ["parameters"])])
    wf = {"name": "nb", "steps": [{"name": "far", "notebook": str(tmp_path / "far.ipynb")}]}
    r = await api("POST", "executions", body={"workflow": wf, "cluster": "local"}, expect=403)
    assert "far.ipynb" in " ".join(r.body["details"])
    r = await api("GET", "executions")
    assert r.body["executions"] == []
