"""Data in and out (issue 14) on real schedulers: PSI/J's local executor and the project's
Slurm (both share this file system: outputs are recorded in place, not copied)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_stax.core.errors import InvalidWorkflow
from jupyter_stax.core.models import StepState, SubmitOptions
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.store import Store

from .conftest import arun

HOSTILE = ["a b.csv", "it's.csv", 'say "hi".csv', "line\nbreak.csv", "$(touch pwned).csv", "-x.csv"]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _notebook_side(base: Path) -> None:
    (base / "data").mkdir(parents=True)
    (base / "config.json").write_text('{"n": 3}\n')
    (base / "data" / "mesh-1.h5").write_bytes(os.urandom(5 << 20))
    (base / "data" / "mesh-2.h5").write_bytes(b"two")
    (base / "data" / "skip.txt").write_text("not an input")
    for n in HOSTILE:
        (base / "data" / n).write_text(n)


DAG = {
    "name": "data",
    "steps": [
        {
            "name": "prep",
            "inputs": ["config.json", "data/mesh-*.h5", "data/*.csv"],
            "run": "mkdir -p parts && cat config.json data/mesh-2.h5 > parts/a.bin && "
            "ls data | LC_ALL=C sort > parts/listing.bin && "
            "sha256sum data/mesh-1.h5 | cut -c1-64 > parts/mesh.sha && "
            "ln -s /etc/passwd parts/evil.bin",
            "outputs": ["parts"],
        },
        {
            "name": "sim",
            "inputs": [{"from": "prep", "path": "parts/*.bin"}, "data/*.csv"],
            "run": 'mkdir -p results && for f in data/*.csv; do cp "$f" results/; done && '
            "cat parts/a.bin > results/sum.csv",
            "outputs": ["results/*.csv", "missing/*.txt"],
        },
        {
            "name": "report",
            "inputs": [{"from": "sim", "path": "results/sum.csv"}],
            "run": "wc -c < results/sum.csv > summary.json",
            "outputs": ["summary.json"],
        },
    ],
}


def test_inputs_staged_outputs_recorded_in_place(
    cluster: str, engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    base = tmp_path / "notebook"
    _notebook_side(base)

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(DAG, cluster=cluster, options=SubmitOptions(base_dir=str(base)))
            return await eng.wait(ex.id, timeout=180)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]
    prep, sim, report = (ex.step(n) for n in ("prep", "sim", "report"))
    pd = Path(prep.directory)
    # the inputs are in the step directory, on the same relative paths, byte for byte
    assert (pd / "data" / "mesh-1.h5").read_bytes() == (base / "data" / "mesh-1.h5").read_bytes()
    assert (pd / "parts" / "mesh.sha").read_text().strip() == _sha(base / "data" / "mesh-1.h5")
    listing = (pd / "parts" / "listing.bin").read_text().split("\n")
    assert "skip.txt" not in listing and "mesh-2.h5" in listing
    assert not (base / "pwned").exists() and not (pd / "pwned").exists()
    # the records: each input's source, size and sha256
    assert prep.files is not None
    rec = {r.path: r for r in prep.files.inputs}
    assert set(rec) == {"config.json", "data/mesh-1.h5", "data/mesh-2.h5"} | {
        f"data/{n}" for n in HOSTILE
    }
    m = rec["data/mesh-1.h5"]
    assert (m.size, m.sha256, m.source) == (
        5 << 20,
        _sha(base / "data/mesh-1.h5"),
        str(base / "data/mesh-1.h5"),
    )
    # outputs: in place (no copy on a cluster that shares this file system), the link refused
    assert prep.files.fetch == "in place" and prep.files.fetched_to == prep.directory
    outs = {r.path: r for r in prep.files.outputs}
    assert set(outs) == {"parts/a.bin", "parts/listing.bin", "parts/mesh.sha"}
    assert outs["parts/a.bin"].local == str(pd / "parts" / "a.bin")
    assert outs["parts/a.bin"].sha256 == _sha(pd / "parts" / "a.bin")
    assert "parts/evil.bin is a symbolic link" in (prep.files.warning or "")
    assert not (base / "stax-outputs").exists()
    # the upstream's files (not its link) reached the dependant, hostile names too
    sd = Path(sim.directory)
    assert (sd / "parts" / "a.bin").read_text() == '{"n": 3}\ntwo'
    assert not (sd / "parts" / "evil.bin").exists() and not (sd / "parts" / "evil.bin").is_symlink()
    assert sim.files is not None
    assert {r.path for r in sim.files.outputs} == {"results/sum.csv"} | {
        f"results/{n}" for n in HOSTILE
    }
    for n in HOSTILE:
        assert (sd / "results" / n).read_text() == n
    assert {
        r.source
        for r in sim.files.inputs
        if r.source and ":" in r.source and not r.source.startswith("/")
    } >= {"prep:parts/a.bin"}
    assert "output pattern 'missing/*.txt' matched no file" in (sim.files.warning or "")
    assert any("missing/*.txt" in w for w in ex.warnings)
    assert report.files is not None
    assert Path(report.directory, "summary.json").read_text().strip() == str(len('{"n": 3}\ntwo'))
    # what a reader of the store sees (status --json, REST) is the same
    again = Store(Path(os.environ["JUPYTER_STAX_STORE"])).get(ex.id)
    assert again.step("prep").files == prep.files


def test_a_missing_input_refuses_the_submission(
    engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    wf = {"name": "m", "steps": [{"name": "a", "run": "true", "inputs": ["nope.json", "x/*.h5"]}]}

    async def main() -> None:
        async with engine_factory() as eng:
            with pytest.raises(InvalidWorkflow) as e:
                await eng.submit(wf, options=SubmitOptions(base_dir=str(tmp_path)))
            text = "\n".join(e.value.details)
            assert "step 'a': input 'nope.json': no such file" in text
            assert "step 'a': input 'x/*.h5'" in text
            assert eng.list() == []  # nothing stored, nothing submitted

    arun(main())


def test_a_failed_stage_in_fails_only_that_step(
    cluster: str, engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    """The input is there at submission, gone (removed by the first step) when the second
    step is staged: that step fails with the reason, its dependant is skipped, the other
    branch completes, and no job was submitted for it."""
    (tmp_path / "later.txt").write_text("x")
    (tmp_path / "other.txt").write_text("y")
    later = tmp_path / "later.txt"
    wf = {
        "name": "f",
        "steps": [
            {"name": "a", "run": f"rm -- '{later}'"},
            {"name": "b", "after": ["a"], "inputs": ["later.txt"], "run": "cat later.txt"},
            {"name": "c", "after": ["b"], "run": "true"},
            {"name": "d", "after": ["a"], "inputs": ["other.txt"], "run": "cat other.txt"},
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(
                wf, cluster=cluster, options=SubmitOptions(base_dir=str(tmp_path))
            )
            return await eng.wait(ex.id, timeout=180)

    ex = arun(main())
    b = ex.step("b")
    assert b.state is StepState.FAILED and b.native_id is None
    assert b.reason is not None and b.reason.startswith(
        "stage-in failed: input 'later.txt': no such file"
    )
    assert ex.step("c").state is StepState.SKIPPED
    assert ex.step("d").state is StepState.COMPLETED
    assert Path(ex.step("d").stdout).read_text() == "y"


@pytest.mark.slurm
def test_files_move_between_clusters(
    slurm: str, engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    """A step on the real Slurm takes the files of a step on the local cluster, and back."""
    (tmp_path / "in.txt").write_text("from the notebook\n")
    wf = {
        "name": "x",
        "steps": [
            {"name": "a", "inputs": ["in.txt"], "run": "cp in.txt a.out", "outputs": ["a.out"]},
            {
                "name": "b",
                "cluster": "slurm",
                "inputs": [{"from": "a", "path": "a.out"}],
                "run": "cat a.out > b.out; hostname >> b.out",
                "outputs": ["b.out"],
            },
            {"name": "c", "inputs": [{"from": "b", "path": "*.out"}], "run": "cat b.out a.out"},
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, options=SubmitOptions(base_dir=str(tmp_path)))
            return await eng.wait(ex.id, timeout=180)

    ex = arun(main())
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]
    assert ex.step("b").cluster == "slurm"
    out = Path(ex.step("c").stdout).read_text()
    assert out.startswith("from the notebook\n") and out.endswith("from the notebook\n")
    c = ex.step("c").files
    assert c is not None  # *.out took b's own file and the one it had from a
    assert [(r.path, r.source) for r in c.inputs] == [("a.out", "b:a.out"), ("b.out", "b:b.out")]


def test_stage_in_never_writes_through_a_link_in_the_step_directory(
    engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    """The first attempt replaces its input directory with a link to elsewhere and fails; the
    retry's stage-in refuses to write through that link (nothing lands outside)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    wf = {
        "name": "link",
        "steps": [
            {
                "name": "a",
                "inputs": ["data/x.txt"],
                "retries": 1,
                "run": f"rm -rf data && ln -s '{outside}' data && exit 1",
            }
        ],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(wf, options=SubmitOptions(base_dir=str(tmp_path)))
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    a = ex.step("a")
    # the retry never reached the scheduler: the first attempt is its history, no new job
    assert a.state is StepState.FAILED and a.native_id is None, (a.state, a.reason)
    assert [h.attempt for h in a.history] == [1] and a.history[0].exit_code == 1
    assert a.reason is not None and a.reason.startswith("stage-in failed: input 'data/x.txt'")
    assert "a link is never followed" in a.reason
    assert list(outside.iterdir()) == []


def test_each_attempt_keeps_its_inputs_and_outputs(
    engine_factory: Callable[..., Engine], stax_env: Path, tmp_path: Path
) -> None:
    """Provenance per attempt: a step that fails once and is retried keeps, in its history, what
    its first attempt staged (source, size, sha256) and kept; the current attempt has its own
    record (the input changed in between: the two sha256 differ)."""
    cfg = tmp_path / "config.json"
    cfg.write_text("one\n")
    flag = tmp_path / "failed-once"
    wf = {
        "name": "p",
        "steps": [{
            "name": "a", "retries": 1, "inputs": ["config.json"], "outputs": ["out.txt"],
            # the first attempt changes the input (before the retry stages it again) and fails
            "run": f"cp config.json out.txt; if [ ! -e '{flag}' ]; then touch '{flag}'; "
            f"echo two > '{cfg}'; exit 3; fi",
        }],
    }

    async def main() -> object:
        async with engine_factory() as eng:
            ex = await eng.submit(
                wf, cluster="local", options=SubmitOptions(base_dir=str(tmp_path))
            )
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    a = ex.step("a")
    assert a.state is StepState.COMPLETED and a.attempt == 2, (a.state, a.reason)
    [first] = a.history
    assert first.attempt == 1 and first.exit_code == 3
    assert first.files is not None and first.files.attempt == 1
    [i1] = first.files.inputs
    assert (i1.path, i1.source, i1.size) == ("config.json", str(cfg), 4)
    assert i1.sha256 == hashlib.sha256(b"one\n").hexdigest()
    assert a.files is not None and a.files.attempt == 2
    [i2] = a.files.inputs
    assert i2.sha256 == hashlib.sha256(b"two\n").hexdigest() and i2.size == 4
    [o2] = a.files.outputs
    assert (o2.path, o2.sha256) == ("out.txt", hashlib.sha256(b"two\n").hexdigest())
    # and the store gives the same back (what status --json and the REST API show)
    store = Store(stax_env / "state" / "stax.sqlite")
    try:
        again = store.get(ex.id).step("a")
    finally:
        store.close()
    assert again.history[0].files == first.files and again.files == a.files


def test_stage_in_progress_is_committed_on_the_step(
    engine_factory: Callable[..., Engine], tmp_path: Path
) -> None:
    """While a step's inputs are staged its reason says how far it got (bytes of the total,
    rate), committed like any change (the sidebar and the monitor show a step's reason); the
    line is gone once the job is submitted."""
    (tmp_path / "big.bin").write_bytes(os.urandom(50 << 20))
    wf = {"name": "g", "steps": [{"name": "a", "inputs": ["big.bin"], "run": "wc -c big.bin"}]}
    seen: list[str] = []

    async def main() -> object:
        async with engine_factory() as eng:
            eng.subscribe(lambda e: seen.append(e.step_run.reason or "") if e.step_run else None)
            ex = await eng.submit(
                wf, cluster="local", options=SubmitOptions(base_dir=str(tmp_path))
            )
            return await eng.wait(ex.id, timeout=120)

    ex = arun(main())
    assert ex.state.value == "completed"
    lines = [r for r in seen if r.startswith("staging inputs: ")]
    assert lines, seen
    assert lines[-1].startswith("staging inputs: 50.0 MiB of 50.0 MiB (100%)"), lines
    assert ex.step("a").reason is None
