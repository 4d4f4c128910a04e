"""``jupyter stax fetch`` and the step fields through the real command (issue 14): inputs
relative to the workflow file, outputs recorded in place on a local cluster (status --json),
copies with --to, and the overwrite policy (a different local file is kept unless asked)."""

from __future__ import annotations

import hashlib
import json

import pytest

from ..waiting import wait_for
from .test_cli import Stax, cli  # noqa: F401 (the fixture)

WF = """\
name: files
steps:
  - name: sim
    inputs: [data/in.txt, "data/*.csv"]
    run: mkdir -p results && cp data/in.txt results/a.csv && cp "data/x y.csv" results/
    outputs: ["results/*.csv"]
  - name: quiet
    run: echo hi > note.txt
"""


def test_fetch_in_place_to_a_directory_and_the_overwrite_policy(cli: Stax) -> None:  # noqa: F811
    wf_dir = cli.cwd / "project"
    (wf_dir / "data").mkdir(parents=True)
    (wf_dir / "data" / "in.txt").write_text("1,2\n")
    (wf_dir / "data" / "x y.csv").write_text("x,y\n")
    (wf_dir / "wf.yaml").write_text(WF)
    r = cli("run", "project/wf.yaml", "--wait", "--no-server")  # inputs: beside the file
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    st = cli.status(eid)
    sim = next(s for s in st["steps"] if s["name"] == "sim")
    files = sim["files"]
    assert {f["path"] for f in files["inputs"]} == {"data/in.txt", "data/x y.csv"}
    assert files["fetch"] == "in place"
    outs = {f["path"]: f for f in files["outputs"]}
    assert set(outs) == {"results/a.csv", "results/x y.csv"}
    assert outs["results/a.csv"]["sha256"] == hashlib.sha256(b"1,2\n").hexdigest()
    assert outs["results/a.csv"]["local"] == f"{sim['directory']}/results/a.csv"

    # on demand: a local cluster's outputs are where they are (nothing copied)
    out = cli.ok("fetch", eid, "--no-server")
    assert "step sim (local): 2 file(s), 8 B, in place (not copied)" in out
    assert not (cli.cwd / "stax-outputs").exists() and not (wf_dir / "stax-outputs").exists()

    # --to copies them; a second fetch leaves identical files alone
    res = json.loads(cli.ok("fetch", eid, "sim", "--to", "here", "--json", "--no-server"))
    (step,) = res["steps"]
    assert step["fetch"] == "fetched" and step["directory"] == str(cli.cwd / "here")
    assert (cli.cwd / "here" / "results" / "x y.csv").read_text() == "x,y\n"
    # --progress: the bar's lines on stderr (a file here; on a terminal one line redrawn)
    r = cli("fetch", eid, "sim", "--to", "there", "--progress", "--no-server")
    assert r.returncode == 0, r.stderr
    assert "fetching outputs of sim: 8 B of 8 B (100%)" in r.stderr
    assert "fetching" not in r.stdout
    # a local change is never overwritten silently
    (cli.cwd / "here" / "results" / "a.csv").write_text("mine\n")
    out = cli.ok("fetch", eid, "sim", "--to", "here", "--no-server")
    assert "kept 1 local file(s) that differ from the step's (results/a.csv)" in out
    assert f"`jupyter stax fetch {eid} sim --overwrite` replaces them" in out
    assert (cli.cwd / "here" / "results" / "a.csv").read_text() == "mine\n"
    cli.ok("fetch", eid, "sim", "--to", "here", "--overwrite", "--no-server")
    assert (cli.cwd / "here" / "results" / "a.csv").read_text() == "1,2\n"

    # a pattern of other files; a step without outputs needs one
    out = cli.ok("fetch", eid, "quiet", "note.txt", "--to", "q", "--no-server")
    assert (cli.cwd / "q" / "note.txt").read_text() == "hi\n"
    r = cli("fetch", eid, "quiet", "--no-server")
    assert r.returncode == 1 and "step 'quiet' declares no outputs; name a pattern" in r.stderr
    r = cli("fetch", eid, "sim", "../../etc/passwd", "--no-server")
    assert r.returncode == 1 and "reaches outside the step directory" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_input_submits_nothing(cli: Stax) -> None:  # noqa: F811
    cli.write("wf.yaml", "name: m\nsteps:\n  - name: a\n    inputs: [gone.json]\n    run: 'true'\n")
    r = cli("run", "wf.yaml", "--no-server")
    assert r.returncode == 2
    assert "step 'a': input 'gone.json': no such file" in r.stderr
    assert json.loads(cli.ok("list", "--json", "--no-server")) == []


@pytest.mark.slurm
def test_detached_run_stages_in_before_queueing_and_records_outputs_later(
    cli: Stax,  # noqa: F811
    slurm: str,
) -> None:
    """--detach: inputs are staged before the DAG is queued; the outputs are recorded when the
    next status (through the engine it starts) sees the steps completed."""
    (cli.cwd / "in.txt").write_text("detached\n")
    cli.write(
        "wf.yaml",
        "name: det\nsteps:\n"
        "  - name: a\n    inputs: [in.txt]\n    run: cp in.txt out.txt\n    outputs: [out.txt]\n"
        "  - name: b\n    after: [a]\n    run: cat ../a/out.txt > b.txt\n    outputs: ['*.txt']\n",
    )
    r = cli("run", "wf.yaml", "--cluster", "slurm", "--detach", "--no-server")
    assert r.returncode == 0, r.stderr
    eid = r.stdout.split()[1]
    st = wait_for(
        lambda: (s := cli.status(eid))["state"] == "completed"
        and all(x["files"] and x["files"]["fetch"] == "in place" for x in s["steps"])
        and s,
        180,
        "the detached run to complete and its outputs to be recorded",
    )
    a, b = st["steps"]
    assert [f["path"] for f in a["files"]["inputs"]] == ["in.txt"]
    assert [f["path"] for f in a["files"]["outputs"]] == ["out.txt"]
    assert [f["path"] for f in b["files"]["outputs"]] == ["b.txt"]


def test_the_terminal_bar_redraws_one_line_and_ends_it() -> None:
    import io

    from jupyter_stax.cli_progress import TerminalBar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    b = TerminalBar(out)
    b("fetching outputs of a: 4 B of 8 B (50%)", 4, 8)
    b("fetching outputs of a: 8 B of 8 B (100%)", 8, 8)
    b.close()
    b.close()  # once
    assert out.getvalue() == (
        "\r\x1b[K[############............] fetching outputs of a: 4 B of 8 B (50%)"
        "\r\x1b[K[########################] fetching outputs of a: 8 B of 8 B (100%)\n"
    )
