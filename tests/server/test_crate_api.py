"""``GET executions/{id}/crate``: the Workflow Run RO-Crate of a finished execution as a zip
download, only with the token; 409 while it runs, 404 for an unknown id."""

from __future__ import annotations

from pathlib import Path

from ..crates import check_crate, ids
from .conftest import Call, wait_final


async def test_the_crate_is_a_zip_download_for_the_token_holder_only(
    api: Call, raw: Call, tmp_path: Path
) -> None:
    workflow = {
        "name": "rest",
        "params": {"msg": "x"},
        "steps": [
            {"name": "a", "run": "printf '%s' {{msg}}"},
            {"name": "b", "after": ["a"], "run": "echo bad >&2; exit 2"},
        ],
    }
    hostile = 'a"b\nc $(id) ../..'
    ex = (
        await api(
            "POST", "executions", body={"workflow": workflow, "params": {"msg": hostile}},
            expect=201,
        )
    ).body
    await wait_final(api, ex["id"])
    r = await raw("GET", f"executions/{ex['id']}/crate", auth=False)
    assert r.code == 403 and r.body["error"] == "HTTPError", r.body
    r = await raw("GET", f"executions/{ex['id']}/crate")
    assert r.code == 200, r.body
    assert r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Disposition"] == (
        f'attachment; filename="rest-{ex["id"]}.crate.zip"'
    )
    z = tmp_path / "got.crate.zip"
    z.write_bytes(r.body)
    g = check_crate(z)
    a = g[f"#{ex['id']}-a-1"]
    assert {g[i]["name"]: g[i]["value"] for i in ids(a["object"])} == {"msg": hostile}
    b = g[f"#{ex['id']}-b-1"]
    assert b["error"] == "failed: exit code 2: bad"  # the recorded reason, stderr tail included
    assert g["./"]["license"] == {"@id": "#license-not-given"}
    # a prefix of the id works, like every other route; ?license= names the crate's license
    r = await raw("GET", f"executions/{ex['id'][:5]}/crate?license=CC0-1.0")
    assert r.code == 200
    z.write_bytes(r.body)
    assert check_crate(z)["./"]["license"] == "CC0-1.0"


async def test_a_running_execution_is_409_and_an_unknown_one_404(api: Call, raw: Call) -> None:
    ex = (
        await api(
            "POST", "executions",
            body={"workflow": {"name": "slow", "steps": [{"name": "s", "run": "sleep 60"}]}},
            expect=201,
        )
    ).body
    r = await api("GET", f"executions/{ex['id']}/crate", expect=409)
    assert "still" in r.body["message"] and "wait" in r.body["message"]
    await api("DELETE", f"executions/{ex['id']}", expect=202)
    await wait_final(api, ex["id"])
    r = await api("GET", "executions/nope/crate", expect=404)
    assert "no execution" in r.body["message"]
    # canceled is final: now it exports
    r = await raw("GET", f"executions/{ex['id']}/crate")
    assert r.code == 200 and r.body[:2] == b"PK"
