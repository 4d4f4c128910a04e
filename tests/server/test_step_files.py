"""A step's files over REST (the sidebar's file list and Download): listed with sizes, one
file streamed as an attachment, and nothing but the step's own regular files ever served."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from urllib.parse import quote

from .conftest import Call, wait_final

HOSTILE = "it's a \"file\" $(x) -y.bin"


async def test_list_and_download_a_steps_files_and_refuse_everything_else(
    api: Call, raw: Call, tmp_path: Path
) -> None:
    run = (
        "mkdir -p results && printf 'a,b\\n1,2\\n' > results/t.csv && "
        "head -c 3000000 /dev/urandom > big.bin && "
        f"printf odd > {shlex.quote(HOSTILE)} && ln -s /etc/passwd results/evil.csv && "
        "ln -s /etc results/etc"
    )
    wf = {"name": "f", "steps": [{"name": "a", "run": run}]}
    ex = (await api("POST", "executions", body={"workflow": wf}, expect=201)).body
    done = await wait_final(api, ex["id"])
    assert done["state"] == "completed", done["steps"][0]["reason"]
    eid, d = ex["id"], Path(done["steps"][0]["directory"])

    listing = (await api("GET", f"executions/{eid}/steps/a/files")).body
    sizes = {f["path"]: f["size"] for f in listing["files"]}
    assert sizes["results/t.csv"] == 8 and sizes["big.bin"] == 3000000 and sizes[HOSTILE] == 3
    assert "stax.out" in sizes  # the step's own logs are files of it too
    assert "results/evil.csv" not in sizes and listing["links"] == 2
    assert listing["directory"] == str(d) and listing["cluster"] == "local"
    assert not listing["truncated"]

    # a download: the bytes, as an attachment named after the file
    r = await raw("GET", f"executions/{eid}/steps/a/download?path={quote('big.bin')}")
    assert r.code == 200 and r.body == (d / "big.bin").read_bytes()
    assert r.headers["Content-Disposition"].startswith('attachment; filename="big.bin"')
    assert r.headers["Content-Type"] == "application/octet-stream"
    r = await raw("GET", f"executions/{eid}/steps/a/download?path={quote(HOSTILE, safe='')}")
    assert r.code == 200 and r.body == b"odd"
    assert "filename*=UTF-8''" + quote(HOSTILE, safe="") in r.headers["Content-Disposition"]

    # never without authentication
    r = await raw("GET", f"executions/{eid}/steps/a/download?path=big.bin", auth=False)
    assert r.code == 403 and r.body != (d / "big.bin").read_bytes()
    r = await raw("GET", f"executions/{eid}/steps/a/files", auth=False)
    assert r.code == 403

    # never out of the step directory: '..', absolute paths, links out, links through
    (d.parent / "secret").write_text("secret\n")
    for path, code in (
        ("../secret", 400), ("/etc/passwd", 400), ("a/../../secret", 400), ("", 400),
        ("results/evil.csv", 403), ("results/etc/passwd", 403), ("nope.txt", 404),
    ):
        r = await raw("GET", f"executions/{eid}/steps/a/download?path={quote(path, safe='')}")
        assert r.code == code, (path, r.code, r.body)
        assert "root:" not in json.dumps(r.body) and "secret\\n" not in json.dumps(r.body)
    # a directory is not a file
    r = await raw("GET", f"executions/{eid}/steps/a/download?path=results")
    assert r.code == 403 and "not a regular file" in r.body["message"]
    # a FIFO would block the reader: refused
    os.mkfifo(d / "fifo")
    r = await raw("GET", f"executions/{eid}/steps/a/download?path=fifo")
    assert r.code == 403 and "not a regular file" in r.body["message"]
    r = await raw("GET", f"executions/{eid}/steps/nope/files")
    assert r.code == 404
