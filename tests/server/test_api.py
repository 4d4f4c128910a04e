"""The REST API on a real Jupyter server, with PSI/J's local executor: every endpoint's happy
path and each of its error codes. Bad input is a 400 with a message, never a 500."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax import operations
from jupyter_stax.server.app import StaxApp

from .conftest import Call, wait_final, wait_step


def wf(*steps: dict[str, Any], name: str = "t", **kw: Any) -> dict[str, Any]:
    return {"name": name, "steps": list(steps), **kw}


ECHO = wf({"name": "a", "run": "echo hello"})


async def submit(api: Call, workflow: Any = ECHO, **kw: Any) -> dict[str, Any]:
    r = await api("POST", "executions", body={"workflow": workflow, **kw}, expect=201)
    return dict(r.body)


# ---------------------------------------------------------------------- clusters
async def test_clusters_lists_file_settings_and_local_with_work_dirs(
    api: Call, stax_env: Path
) -> None:
    r = await api("GET", "clusters")
    by_name = {c["name"]: c for c in r.body}
    assert list(by_name) == ["local", "slurm", "pbs1"]
    assert by_name["slurm"]["queue"] == "debug" and by_name["slurm"]["scheduler"] == "slurm"
    assert by_name["pbs1"]["scheduler"] == "pbs"  # from c.StaxApp.clusters
    assert {c["work_dir"] for c in r.body} == {str(stax_env / "runs")}


async def test_cluster_local_has_live_numbers(api: Call) -> None:
    r = await api("GET", "clusters/local")
    assert r.body["name"] == "local" and r.body["note"] is None
    s = r.body["summary"]
    assert s["scheduler"] == "local" and s["cpus"] == os.cpu_count()
    assert len(s["load_average"]) == 3 and s["running_steps"] == 0


async def test_cluster_without_live_numbers_says_why(api: Call) -> None:
    r = await api("GET", "clusters/pbs1")
    assert r.body["summary"] is None and "pbs" in r.body["note"]


async def test_unknown_cluster_is_404_with_a_hint(api: Call) -> None:
    r = await api("GET", "clusters/slrum", expect=404)
    assert r.body["error"] == "UnknownCluster" and "did you mean 'slurm'" in r.body["message"]


def _fake_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str) -> None:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    cmd = bin_dir / name
    cmd.write_text(f"#!/bin/sh\n{body}\n")
    cmd.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


async def test_slurm_summary_command_failure_is_503_with_its_message(
    api: Call, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_command(
        tmp_path,
        monkeypatch,
        "sinfo",
        "echo 'sinfo: error: Unable to contact slurm controller (connect failure)' >&2; exit 1",
    )
    r = await api("GET", "clusters/slurm", expect=503)
    assert r.body["error"] == "SchedulerUnavailable"
    assert "Unable to contact slurm controller" in r.body["message"]
    assert "exit 1" in r.body["message"]


async def test_slurm_summary_command_timeout_is_503(
    api: Call, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_command(tmp_path, monkeypatch, "sinfo", "exec sleep 10")
    monkeypatch.setattr(operations, "COMMAND_TIMEOUT", 0.5)
    r = await api("GET", "clusters/slurm", expect=503)
    assert "did not answer within 0.5 s" in r.body["message"]


async def test_slurm_summary_from_fake_commands(
    api: Call, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_command(tmp_path, monkeypatch, "sinfo", "printf '3|idle\\n2|mixed\\n1|down*\\n'")
    _fake_command(tmp_path, monkeypatch, "squeue", "printf 'PD\\nPD\\nR\\n'")
    s = (await api("GET", "clusters/slurm")).body["summary"]
    assert s["scheduler"] == "slurm" and s["partition"] == "debug"
    assert s["nodes"]["total"] == 6 and s["nodes"]["idle"] == 3
    assert s["nodes"]["allocated"] == 2 and s["nodes"]["unavailable"] == 1
    assert s["jobs"] == {"queued": 2, "running": 1, "completing": 0}


# ---------------------------------------------------------------------- images
async def test_images_without_a_catalog_say_how_to_configure_one(api: Call) -> None:
    r = await api("GET", "images")
    assert r.body["images"] == [] and r.body["sources"] == [] and "image_catalogs" in r.body["note"]
    r = await api("GET", "images", params={"cluster": "local"})
    assert r.body["images"] == [] and r.body["cluster"] == "local"
    r = await api("GET", "images", params={"cluster": "nope"}, expect=404)
    assert r.body["error"] == "UnknownCluster"


async def test_images_with_fit_per_cluster_and_a_stax_step_over_rest(
    api: Call, stax_app: StaxApp, stax_env: Path
) -> None:
    from ..images import MARKER, busybox_available, charliecloud_image

    img = charliecloud_image(stax_env / "busy")
    catalog = stax_env / "images.yaml"
    catalog.write_text(
        f"stax:\n  busy:\n    variants:\n      - image: {img}\n"
        "      - {name: busy-arm, image: /nowhere, labels: {cpu: aarch64}}\n"
    )
    specs = [str(catalog), f"sif:{stax_env / 'none.sif'}"]
    stax_app.image_catalogs = specs
    stax_app.require_engine().image_catalogs = specs
    r = await api("GET", "images", params={"cluster": "local"})
    by = {i["name"]: i for i in r.body["images"]}
    assert by["busy-x86_64"]["fits"] is True and by["busy-arm"]["fits"] is False
    fail = [x for x in by["busy-arm"]["rules"] if x["outcome"] == "fail"]
    assert fail == [{"rule": "cpu", "outcome": "fail", "message": "cpu aarch64 != x86_64"}]
    assert by["busy-x86_64"]["labels"]["cpu"] == "x86_64"
    assert r.body["runtime"] and r.body["traits"]["cpu"] == "x86_64"
    assert len(r.body["problems"]) == 1 and "SIF images" in r.body["problems"][0]
    # a step in a StaX over REST: refused with the rule when nothing fits ...
    wf = {"name": "w", "steps": [{"name": "a", "image": "busy-arm", "run": "true"}]}
    r = await api("POST", "executions", body={"workflow": wf}, expect=400)
    assert r.body["error"] == "ImageMismatch"
    assert r.body["message"] == (
        "step 'a': StaX image 'busy-arm' does not fit cluster 'local': cpu aarch64 != x86_64"
    )
    # ... and run in the image when one does (ch-run installed)
    if not busybox_available():
        return
    wf = {"name": "w", "steps": [{"name": "a", "image": "busy", "run": "cat /etc/stax-marker"}]}
    ex = (await api("POST", "executions", body={"workflow": wf}, expect=201)).body
    assert ex["steps"][0]["resolved_image"]["name"] == "busy-x86_64"
    got = await wait_final(api, ex["id"])
    assert got["state"] == "completed", got["steps"][0]["reason"]
    log = (await api("GET", f"executions/{ex['id']}/steps/a/log")).body
    assert log["data"] == MARKER + "\n"


# ---------------------------------------------------------------------- submit
async def test_submit_object_then_get_by_prefix_and_logs(
    api: Call, jp_base_url: str, stax_env: Path
) -> None:
    r = await api("POST", "executions", body={"workflow": ECHO}, expect=201)
    ex = r.body
    assert r.headers["Location"] == f"{jp_base_url}stax/api/executions/{ex['id']}"
    assert ex["cluster"] == "local" and ex["workflow"]["name"] == "t"
    assert ex["work_dir"] == str(stax_env / "runs" / ex["id"])
    done = await wait_final(api, ex["id"])
    assert done["state"] == "completed"
    got = (await api("GET", f"executions/{ex['id'][:5]}")).body
    assert got["id"] == ex["id"] and got["steps"][0]["exit_code"] == 0
    log = (await api("GET", f"executions/{ex['id']}/steps/a/log")).body
    assert log == {"data": "hello\n", "offset": 0, "next_offset": 6, "size": 6, "eof": True}


async def test_submit_yaml_text_with_params_steps_and_options(api: Call) -> None:
    text = (
        "name: y\nparams: {who: nobody}\nsteps:\n"
        "  - {name: a, run: 'echo {{who}}'}\n"
        "  - {name: b, after: [a], run: 'echo never'}\n"
    )
    ex = await submit(
        api,
        text,
        params={"who": "x; echo injected"},
        steps=["a"],
        options={"on_failure": "stop"},
        cluster="local",
    )
    assert [s["name"] for s in ex["steps"]] == ["a"]
    assert ex["workflow"]["on_failure"] == "stop" and ex["params"] == {"who": "x; echo injected"}
    await wait_final(api, ex["id"])
    log = (await api("GET", f"executions/{ex['id']}/steps/a/log")).body
    assert log["data"] == "x; echo injected\n"


@pytest.mark.parametrize(
    ("body", "error", "needle"),
    [
        (b"{not json", "BadRequest", "not valid JSON"),
        (b"", "BadRequest", "needs a JSON object"),
        (b"[1, 2]", "BadRequest", "must be a JSON object"),
        ({"cluster": "local"}, "BadRequest", "workflow: Field required"),
        ({"workflow": ECHO, "params": [1]}, "BadRequest", "params: Input should be a valid"),
        ({"workflow": ECHO, "options": {"detached": "maybe"}}, "BadRequest", "options.detached"),
        ({"workflow": ECHO, "colour": "red"}, "BadRequest", "colour: unknown field"),
        ({"workflow": 42}, "BadRequest", "workflow"),
        ({"workflow": "name: x\nsteps: [\n"}, "InvalidWorkflow", "not valid YAML at line"),
        ({"workflow": "/etc/passwd.yaml"}, "InvalidWorkflow", "must be a mapping"),
        ({"workflow": {"name": "x", "steps": [{"name": "a"}]}}, "InvalidWorkflow", "needs 'run'"),
        (
            {"workflow": wf({"name": "a", "run": "true", "after": ["b"]})},
            "InvalidWorkflow",
            "depends on unknown step 'b'",
        ),
        ({"workflow": ECHO, "steps": ["zz"]}, "InvalidWorkflow", "unknown step(s) zz"),
        (
            {"workflow": wf({"name": "a", "run": "echo {{x}}"})},
            "InvalidWorkflow",
            "uses {{x}} but no value is given",
        ),
    ],
)
async def test_bad_submissions_are_400_with_what_was_wrong(
    api: Call, body: Any, error: str, needle: str
) -> None:
    r = await api("POST", "executions", body=body, expect=400)
    assert r.body["error"] == error
    assert needle in r.body["message"] + "\n".join(r.body["details"]), r.body


async def test_submit_to_unknown_cluster_is_404(api: Call) -> None:
    r = await api("POST", "executions", body={"workflow": ECHO, "cluster": "nope"}, expect=404)
    assert r.body["error"] == "UnknownCluster"


async def test_submit_without_cluster_uses_the_default_cluster_setting(
    api: Call, stax_app: StaxApp
) -> None:
    assert (await submit(api))["cluster"] == "local"
    stax_app.default_cluster = "elsewhere"
    r = await api("POST", "executions", body={"workflow": ECHO}, expect=404)
    assert "unknown cluster 'elsewhere'" in r.body["message"]


# ---------------------------------------------------------------------- list
async def test_list_pages_with_cursor_and_filters(api: Call) -> None:
    ids = [(await submit(api))["id"] for _ in range(3)]
    for eid in ids:
        await wait_final(api, eid)
    first = (await api("GET", "executions", params={"limit": 2})).body
    assert [e["id"] for e in first["executions"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = (
        await api("GET", "executions", params={"limit": 2, "cursor": first["next_cursor"]})
    ).body
    assert [e["id"] for e in second["executions"]] == [ids[0]]
    assert second["next_cursor"] is None
    e = second["executions"][0]
    assert e["done"] == e["total"] == 1 and e["counts"] == {"completed": 1}
    assert e["name"] == "t" and e["state"] == "completed" and e["finished_at"]
    done = (await api("GET", "executions", params={"state": "completed"})).body
    assert len(done["executions"]) == 3
    none = (await api("GET", "executions", params={"state": "failed"})).body
    assert none == {"executions": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": "0"}, "at least 1"),
        ({"limit": "501"}, "at most 500"),
        ({"limit": "ten"}, "integer"),
        ({"state": "sleeping"}, "state must be one of"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJiZWZvcmUiOiAieCJ9"}, "cursor"),  # {"before": "x"}
    ],
)
async def test_bad_list_queries_are_400(api: Call, params: dict[str, str], needle: str) -> None:
    r = await api("GET", "executions", params=params, expect=400)
    assert needle in r.body["message"]


async def test_unknown_execution_is_404(api: Call) -> None:
    for method, path in [
        ("GET", "executions/ffffffff"),
        ("DELETE", "executions/ffffffff"),
        ("POST", "executions/ffffffff/retry"),
        ("GET", "executions/ffffffff/steps/a/log"),
    ]:
        r = await api(method, path, expect=404)
        assert r.body["error"] == "NotFound" and "ffffffff" in r.body["message"]


# ---------------------------------------------------------------------- cancel / retry
async def test_cancel_then_conflict(api: Call) -> None:
    ex = await submit(
        api, wf({"name": "a", "run": "sleep 60"}, {"name": "b", "after": ["a"], "run": "true"})
    )
    await wait_step(api, ex["id"], "a", {"running"})
    r = await api("DELETE", f"executions/{ex['id']}", expect=202)
    assert r.body["cancel_requested"] is True
    done = await wait_final(api, ex["id"], timeout=30)
    assert done["state"] == "canceled"
    assert {s["name"]: s["state"] for s in done["steps"]} == {"a": "canceled", "b": "canceled"}
    r = await api("DELETE", f"executions/{ex['id']}", expect=409)
    assert r.body["error"] == "Conflict" and "already canceled" in r.body["message"]


async def test_retry_runs_failed_steps_again_and_keeps_earlier_logs(api: Call) -> None:
    script = (
        "if [ -e ../flag ]; then echo second; else touch ../flag; echo first; "
        "echo oops >&2; exit 3; fi"
    )
    ex = await submit(api, wf({"name": "a", "run": script}))
    failed = await wait_final(api, ex["id"])
    assert failed["state"] == "failed" and failed["steps"][0]["exit_code"] == 3
    err = (await api("GET", f"executions/{ex['id']}/steps/a/log", params={"stream": "stderr"})).body
    assert err["data"] == "oops\n" and err["eof"]
    r = await api("POST", f"executions/{ex['id']}/retry", expect=202)
    assert r.body["steps"][0]["state"] == "pending"
    done = await wait_final(api, ex["id"])
    assert done["state"] == "completed" and done["steps"][0]["attempt"] == 2
    step_log = f"executions/{ex['id']}/steps/a/log"
    assert (await api("GET", step_log)).body["data"] == "second\n"
    old = (await api("GET", step_log, params={"attempt": 1})).body
    assert old["data"] == "first\n" and old["eof"]
    assert (await api("GET", step_log, params={"attempt": 2})).body["data"] == "second\n"
    r = await api("GET", step_log, params={"attempt": 3}, expect=404)
    assert "no attempt 3" in r.body["message"]
    r = await api("POST", f"executions/{ex['id']}/retry", expect=409)
    assert "completed" in r.body["message"]


async def test_retry_of_a_running_execution_is_409(api: Call) -> None:
    ex = await submit(api, wf({"name": "a", "run": "sleep 30"}))
    r = await api("POST", f"executions/{ex['id']}/retry", expect=409)
    assert "still" in r.body["message"]
    await api("DELETE", f"executions/{ex['id']}", expect=202)
    await wait_final(api, ex["id"])


# ---------------------------------------------------------------------- logs
UTF8 = "héllo wörld € 𝄞 ok\n" * 7


async def test_log_chunks_never_split_a_character(api: Call) -> None:
    ex = await submit(api, wf({"name": "a", "run": f"printf '%s' '{UTF8}'"}))
    await wait_final(api, ex["id"])
    path = f"executions/{ex['id']}/steps/a/log"
    for limit in (1, 2, 3, 5, 7):
        text, offset, chunks = "", 0, 0
        while True:
            c = (await api("GET", path, params={"offset": offset, "limit": limit})).body
            assert c["offset"] == offset and "\ufffd" not in c["data"]
            assert c["size"] == len(UTF8.encode())
            text += c["data"]
            offset = c["next_offset"]
            chunks += 1
            if c["eof"]:
                break
            assert c["next_offset"] > c["offset"] and chunks < 1000
        assert text == UTF8
        assert offset == len(UTF8.encode())
    # beyond the end: nothing, and eof (the step is final)
    c = (await api("GET", path, params={"offset": 10_000})).body
    assert c["data"] == "" and c["eof"] and c["next_offset"] == 10_000
    # a huge limit is cut to the cap, not refused
    c = (await api("GET", path, params={"limit": 10**12})).body
    assert c["data"] == UTF8


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"stream": "stdin"}, "stream must be one of stdout, stderr"),
        ({"offset": "-1"}, "offset must be at least 0"),
        ({"limit": "-5"}, "limit must be at least 0"),
        ({"offset": "x"}, "offset must be an integer"),
        ({"attempt": "0"}, "attempt must be at least 1"),
    ],
)
async def test_bad_log_queries_are_400(api: Call, params: dict[str, str], needle: str) -> None:
    ex = await submit(api)
    r = await api("GET", f"executions/{ex['id']}/steps/a/log", params=params, expect=400)
    assert needle in r.body["message"]
    await wait_final(api, ex["id"])


async def test_log_of_a_step_not_started_is_an_empty_chunk(api: Call) -> None:
    ex = await submit(
        api, wf({"name": "a", "run": "sleep 30"}, {"name": "b", "after": ["a"], "run": "true"})
    )
    c = (await api("GET", f"executions/{ex['id']}/steps/b/log", params={"offset": 5})).body
    assert c == {"data": "", "offset": 0, "next_offset": 0, "size": 0, "eof": False}
    await api("DELETE", f"executions/{ex['id']}", expect=202)
    await wait_final(api, ex["id"])


async def test_log_refuses_paths_out_of_the_step(api: Call, raw: Call) -> None:
    ex = await submit(api)
    done = await wait_final(api, ex["id"])
    eid = ex["id"]
    for step in ("..", "%2E%2E", "%2Fetc%2Fpasswd", "..%2F..%2F..%2Fetc%2Fpasswd", "a%2F..%2Fa"):
        r = await raw("GET", f"executions/{eid}/steps/{step}/log")
        assert r.code == 404, (step, r.body)
        assert r.body["error"] == "NotFound" and "passwd" not in json.dumps(r.body["details"])
    # a step directory whose stax.out was replaced by a link to /etc/passwd
    out = Path(done["steps"][0]["stdout"])
    out.unlink()
    out.symlink_to("/etc/passwd")
    r = await raw("GET", f"executions/{eid}/steps/a/log")
    assert r.code == 403 and r.body["error"] == "Forbidden"
    assert "outside the step directory" in r.body["message"]
    assert "root:" not in json.dumps(r.body)
    # ... or to a file in a sibling directory, through a relative link
    out.unlink()
    (out.parent.parent / "secret").write_text("secret\n")
    out.symlink_to("../secret")
    r = await raw("GET", f"executions/{eid}/steps/a/log")
    assert r.code == 403
    # a link that stays inside the step directory is fine
    out.unlink()
    (out.parent / "real.out").write_text("inside\n")
    out.symlink_to("real.out")
    assert (await raw("GET", f"executions/{eid}/steps/a/log")).body["data"] == "inside\n"
    # a FIFO would block the reader: refused
    out.unlink()
    os.mkfifo(out)
    r = await raw("GET", f"executions/{eid}/steps/a/log")
    assert r.code == 403 and "not a regular file" in r.body["message"]


# ---------------------------------------------------------------------- everything else
async def test_unknown_endpoints_and_methods_answer_json(api: Call, raw: Call) -> None:
    r = await api("GET", "nope", expect=404)
    assert "openapi.json" in r.body["message"]
    r = await api("GET", "executions/x/y/z", expect=404)
    r = await raw("PUT", "executions")
    assert r.code == 405 and r.body["error"] == "HTTPError"
    r = await raw("PATCH", "clusters/local")
    assert r.code == 405 and set(r.body) == {"message", "details", "error"}


async def test_openapi_is_served_with_this_servers_base_url(api: Call, jp_base_url: str) -> None:
    doc = (await api("GET", "openapi.json")).body
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": jp_base_url, "description": "this Jupyter server"}]
    assert "/stax/api/executions/{execution_id}/steps/{step}/log" in doc["paths"]


async def test_not_started_is_503(jp_serverapp: Any, jp_fetch: Any) -> None:
    # the extension's start hook has not run (the server is still starting)
    resp = await jp_fetch("stax", "api", "executions", raise_error=False)
    body = json.loads(resp.body)
    assert resp.code == 503 and "starting" in body["message"]
    assert body["error"] == "ServiceUnavailable"


async def test_unused_server_config_does_not_break(stax_app: StaxApp) -> None:
    assert stax_app.image_catalogs == []
    assert stax_app.default_cluster == "local" and stax_app.lease_timeout == 15.0


async def test_a_bug_is_a_500_with_a_body_and_a_logged_traceback(
    api: Call,
    stax_app: StaxApp,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(execution_id: str) -> Any:
        raise RuntimeError("the store fell over")

    assert stax_app.engine is not None
    monkeypatch.setattr(stax_app.operations, "get", broken)
    r = await api("GET", "executions/abc", expect=500)
    assert r.body["error"] == "RuntimeError" and "the store fell over" in r.body["message"]
    logged = [rec for rec in caplog.records if rec.name == "jupyter_stax.server"]
    assert logged and logged[-1].exc_info is not None


async def test_software_descriptions_over_rest_are_inline_never_server_paths(
    api: Call, stax_env: Path
) -> None:
    desc = {"execution": {"type": "binary", "binary": "echo", "args": "hello {{who}}"}}
    (stax_env / "desc.json").write_text(json.dumps(desc))
    wf = {"name": "sw", "params": {"who": "x"}, "steps": [{"name": "a", "software": "desc.json"}]}
    r = await api("POST", "executions", body={"workflow": wf}, expect=400)
    assert "the server does not read files named in requests" in r.body["message"]
    wf["steps"] = [{"name": "a", "software": desc}]
    ex = (await api("POST", "executions", body={"workflow": wf}, expect=201)).body
    assert (await wait_final(api, ex["id"]))["state"] == "completed"
    log = (await api("GET", f"executions/{ex['id']}/steps/a/log")).body
    assert log["data"] == "hello x\n"


async def test_images_over_rest_are_catalog_names_never_server_paths(
    api: Call, stax_app: StaxApp, stax_env: Path
) -> None:
    """The one rule for paths named in requests (operations/requests.py): an image path on the
    server is refused unless a configured catalog lists it."""
    catalog = stax_env / "images.yaml"
    catalog.write_text(
        "stax:\n  far:\n    variants:\n      - {image: /nowhere, labels: {cpu: aarch64}}\n"
    )
    stax_app.image_catalogs = [str(catalog)]
    stax_app.require_engine().image_catalogs = [str(catalog)]
    secret = stax_env / "secret.sif"
    secret.write_text("not an image")

    def wf(**step: Any) -> dict[str, Any]:
        return {"name": "w", "steps": [{"name": "a", "run": "true", **step}]}

    for path in (str(secret), str(stax_env), "./x", "~/img", f"oci:{stax_env}", "app.sif"):
        r = await api("POST", "executions", body={"workflow": wf(image=path)}, expect=400)
        assert r.body["error"] == "InvalidWorkflow", path
        assert r.body["message"].startswith("the server does not read files named in requests")
        assert "StaxApp.image_catalogs" in r.body["message"]
        assert r.body["details"] == [f"step 'a': image {path!r} is a path on the server"]
    # the container image of a software description is an image too
    desc = {
        "execution": {"type": "binary", "binary": "true"},
        "container": {"engine": "SINGULARITY", "image": str(secret)},
    }
    body = {"workflow": {"name": "w", "steps": [{"name": "a", "software": desc}]}}
    r = await api("POST", "executions", body=body, expect=400)
    assert r.body["details"] == [f"step 'a': image {str(secret)!r} is a path on the server"]
    # a reference the admin's catalog lists passes the rule (and is judged: it does not fit)
    r = await api("POST", "executions", body={"workflow": wf(image="/nowhere")}, expect=400)
    assert r.body["error"] == "ImageMismatch"
    # ... and so do catalog names
    r = await api("POST", "executions", body={"workflow": wf(image="far")}, expect=400)
    assert r.body["error"] == "ImageMismatch"
