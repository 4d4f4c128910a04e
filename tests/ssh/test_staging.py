"""Data in and out (issue 14) over the real test sshd, as the remote account whose home the
Jupyter side does not use: files streamed through the SSH transport (both clients), a DAG that
moves files notebook -> remote Slurm -> local cluster -> remote Slurm -> notebook."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.models import SubmitOptions
from jupyter_stax.core.states import StepState
from jupyter_stax.engine.engine import Engine
from jupyter_stax.engine.remote.transport import SSHTransport

from .sshd import Client, Sshd
from .test_remote_slurm import cluster

pytestmark = pytest.mark.ssh

HOSTILE = ["a b.csv", "it's.csv", 'say "hi".csv', "line\nbreak.csv", "$(touch pwned).csv",
           "-x.csv", "ünï.csv"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cut(
    transfer: Callable[[], object], halfway: Callable[[], bool], sshd: Any, what: str
) -> None:
    """Run ``transfer`` in a thread, cut it (``sshd.kill_connections()``) once ``halfway()``
    holds, and check that it ended with the transient TransportError."""
    import threading

    from jupyter_stax.engine.transport import TransportError

    from ..waiting import wait_for

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            transfer()
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=run)
    t.start()
    wait_for(lambda: halfway() or outcome, 120, f"the {what} to be half-way there")
    assert not outcome, f"the {what} ended before it could be cut: {outcome}"
    sshd.kill_connections()
    t.join(120)
    assert outcome and isinstance(outcome[0], TransportError), outcome


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_files_through_the_ssh_transport(
    sshd: Sshd, client: Client, tmp_path: Path, client_kind: str
) -> None:
    tr = SSHTransport(cluster(sshd, client, ssh=client_kind), tmp_path / "state")
    here = tmp_path / "here"
    (here / "d").mkdir(parents=True)
    big = os.urandom(50 << 20)
    (here / "big.bin").write_bytes(big)
    for n in HOSTILE:
        (here / "d" / n).write_text(n)
    (here / "empty").write_bytes(b"")
    remote = f"~/stax-test-{os.getpid()}-{client_kind}"
    items = [(here / "big.bin", "big.bin"), (here / "empty", "empty")] + [
        (here / "d" / n, f"d/{n}") for n in HOSTILE
    ]
    try:
        sent = tr.put_files(items, f"{remote}/step")
        assert sent["big.bin"] == (50 << 20, _sha(big))
        assert sent["d/line\nbreak.csv"] == (len("line\nbreak.csv"), _sha(b"line\nbreak.csv"))
        tr.run(["ln", "-s", "/etc/passwd", tr.resolve(f"{remote}/step/d/evil.csv")])
        tree = {e.path: (e.kind, e.size) for e in tr.list_tree(f"{remote}/step")}
        assert tree["big.bin"] == ("f", 50 << 20) and tree["d"] == ("d", 0)
        assert tree["d/evil.csv"] == ("l", 0) and tree["empty"] == ("f", 0)
        assert all(tree[f"d/{n}"] == ("f", len(n.encode())) for n in HOSTILE)
        assert tr.list_tree(f"{remote}/missing") == []
        # on the cluster: a copy between two directories, with sizes and sums
        copied = tr.copy_files(f"{remote}/step", ["big.bin", *(f"d/{n}" for n in HOSTILE)],
                               f"{remote}/other")
        assert copied["big.bin"] == (50 << 20, _sha(big))
        assert copied["d/$(touch pwned).csv"][1] == _sha(b"$(touch pwned).csv")
        # back to this machine: a link is never followed, even when asked for by name
        back = tmp_path / "back"
        names = ["big.bin", "empty", "d/evil.csv", *(f"d/{n}" for n in HOSTILE)]
        got = tr.get_files(f"{remote}/other", [n for n in names if n != "empty"], back)
        assert "d/evil.csv" not in got and not (back / "d" / "evil.csv").exists()
        assert (back / "big.bin").read_bytes() == big and got["big.bin"].status == "new"
        for n in HOSTILE:
            assert (back / "d" / n).read_text() == n
        assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
        # again: the same files are left alone; a local change is kept unless asked
        (back / "d" / "a b.csv").write_text("mine")
        again = tr.get_files(f"{remote}/other", ["big.bin", "d/a b.csv"], back)
        assert again["big.bin"].status == "unchanged" and again["d/a b.csv"].status == "kept"
        assert (back / "d" / "a b.csv").read_text() == "mine"
        forced = tr.get_files(f"{remote}/other", ["d/a b.csv"], back, overwrite=True)
        assert forced["d/a b.csv"].status == "replaced"
        assert (back / "d" / "a b.csv").read_text() == "a b.csv"
    finally:
        tr.run(["rm", "-rf", "--", tr.resolve(remote)])
        tr.close()


def test_a_dag_moves_files_across_clusters_and_back(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    far = cluster(sshd, client)
    nb = tmp_path / "notebook"
    nb.mkdir()
    big = os.urandom(50 << 20)
    (nb / "input.bin").write_bytes(big)
    (nb / "it's $(x).txt").write_text("hostile name\n")
    wf = {
        "name": "across",
        "steps": [
            {"name": "first", "cluster": "far", "inputs": ["input.bin", "it's $(x).txt"],
             "run": "mkdir -p out && sha256sum input.bin | cut -c1-64 > out/sum && "
                    "cat \"it's \\$(x).txt\" > out/name.txt && id -un > out/who",
             "outputs": ["out"], "fetch": "manual"},
            {"name": "second", "inputs": [{"from": "first", "path": "out/*"}],
             "run": "cat out/sum out/who > mid.txt", "outputs": ["mid.txt"]},
            {"name": "last", "cluster": "far", "inputs": [{"from": "second", "path": "mid.txt"}],
             "run": "mkdir -p results && cp mid.txt results/a.csv && echo done > summary.json",
             "outputs": ["results/*.csv", "summary.json"]},
        ],
    }
    outputs = tmp_path / "outs"

    async def body() -> object:
        reg = ClusterRegistry([far], work_dir=tmp_path / "runs")
        async with Engine(store=tmp_path / "state" / "stax.sqlite", clusters=reg) as e:
            ex = await e.submit(wf, "local", options=SubmitOptions(
                base_dir=str(nb), outputs_dir=str(outputs)))
            return await e.wait(ex.id, 300)

    import asyncio

    ex = asyncio.run(body())
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]
    first, second, last = ex.steps
    assert first.files and first.files.fetch == "manual"
    assert {r.path for r in first.files.outputs} == {"out/sum", "out/name.txt", "out/who"}
    assert first.files.inputs[0].sha256 == _sha(big) and first.files.inputs[0].size == 50 << 20
    # the middle step (local cluster) got the remote step's files: the sum the cluster computed
    mid = Path(second.directory, "mid.txt").read_text().split()
    assert mid == [_sha(big), "stax-remote"]
    assert second.files and second.files.fetch == "in place"
    # the last step's outputs came back, into <outputs>/<id>/<step>/, with their sums
    assert last.state is StepState.COMPLETED and last.files is not None
    assert last.files.fetch == "fetched"
    dest = outputs / ex.id / "last"
    assert last.files.fetched_to == str(dest)
    assert (dest / "results" / "a.csv").read_text().split() == mid
    assert (dest / "summary.json").read_text() == "done\n"
    recs = {r.path: r for r in last.files.outputs}
    assert recs["summary.json"].sha256 == _sha(b"done\n")
    assert recs["results/a.csv"].local == str(dest / "results" / "a.csv")
    # the manual step's outputs did not come back
    assert not (outputs / ex.id / "first").exists()


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_a_transfer_cut_mid_file_is_transient_and_the_next_try_completes(
    own_sshd: Sshd, own_client: Client, tmp_path: Path, client_kind: str
) -> None:
    """The server kills the connection while a 256 MB file streams in, then while it streams
    back: each call raises the transient TransportError (the engine tries again). The put's
    next try sends only what the cluster did not keep (counted); the fetch leaves no final
    name here, only its hidden partial file, and its next try gets only the rest (counted).
    Either way the kept bytes' sha256 is checked first. Uses its own sshd (``own_sshd``),
    never the shared one."""

    from jupyter_stax.engine import landing

    from .test_remote_slurm import HOME

    tr = SSHTransport(cluster(own_sshd, own_client, ssh=client_kind), tmp_path / "state")
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:  # sparse: a big file that costs nothing here
        f.truncate(256 << 20)
    rel = f"stax-cut-{os.getpid()}-{client_kind}"
    remote_file = HOME / rel / "big.bin"
    try:
        _cut(lambda: tr.put_files([(src, "big.bin")], f"~/{rel}"),
             lambda: remote_file.exists() and remote_file.stat().st_size > (16 << 20),
             own_sshd, "transfer")
        before = tr.sent
        sent = tr.put_files([(src, "big.bin")], f"~/{rel}")
        assert sent["big.bin"][0] == 256 << 20
        assert remote_file.stat().st_size == 256 << 20
        # the next try continued after the bytes the cluster kept (their sha256 checked): at
        # least the 16 MB seen there were not sent again; the file there is the file here
        assert 0 < tr.sent - before <= (256 - 16) << 20, tr.sent - before
        with open(src, "rb") as f:
            want = hashlib.file_digest(f, "sha256").hexdigest()
        assert sent["big.bin"][1] == want
        there = tr.run(["sha256sum", "--", tr.resolve(f"~/{rel}/big.bin")])
        assert there.stdout.split()[0] == want

        # the other way: a fetch cut mid-file leaves nothing half-written here, says it is
        # transient, and the next try lands the file whole (same size and sha256). ``here``
        # exists: landed file by file (a fresh tree: the test below)
        here = tmp_path / "back"
        here.mkdir()

        def part_size() -> int:
            return max((p.stat().st_size for p in here.glob(".big.bin.*.part")), default=0)

        _cut(lambda: tr.get_files(f"~/{rel}", ["big.bin"], here),
             lambda: part_size() > (16 << 20), own_sshd, "fetch")
        # no final name: only the hidden partial file, kept for the next try
        assert [p.name for p in here.iterdir()] == [landing.partial_name("big.bin")]
        kept = part_size()
        assert kept > (16 << 20)
        before = tr.received
        got = tr.get_files(f"~/{rel}", ["big.bin"], here)
        assert (got["big.bin"].size, got["big.bin"].sha256) == sent["big.bin"]
        assert (here / "big.bin").stat().st_size == 256 << 20
        # the next try continued from the kept bytes (checked against the cluster's): only
        # the rest crossed the wire
        assert tr.received - before == (256 << 20) - kept
        assert [p.name for p in here.iterdir()] == ["big.bin"]
    finally:
        tr.run(["rm", "-rf", "--", tr.resolve(f"~/{rel}")])
        tr.close()


@pytest.mark.parametrize("client_kind", ["asyncssh", "openssh"])
def test_a_cut_fetch_of_a_fresh_tree_keeps_what_landed_and_the_next_try_gets_only_the_rest(
    own_sshd: Sshd, own_client: Client, tmp_path: Path, client_kind: str
) -> None:
    """A fetch into a destination that does not exist yet lands in ONE hidden sibling
    directory. Cut while its last file (256 MB) streams: the destination still does not exist;
    the hidden directory keeps the small files landed whole and the big file's partial copy.
    The next try asks the cluster for the small files' sizes and sums (one of them changed
    there meanwhile: only that one comes again), continues the big file from the kept bytes
    (counted: ``SSHTransport.received``), and renames the directory into place. Uses its own
    sshd (``own_sshd``), never the shared one."""

    from jupyter_stax.engine import landing, landing_tree


    tr = SSHTransport(cluster(own_sshd, own_client, ssh=client_kind), tmp_path / "state")
    src = tmp_path / "src"
    small = [f"d/{n}" for n in HOSTILE] + [f"many/f{i:02d}.dat" for i in range(20)]
    data = {n: os.urandom(8 << 10) for n in small}
    for n, d in data.items():
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(d)
    rel = f"stax-cut-tree-{os.getpid()}-{client_kind}"
    names = [*small, "zz/big.bin"]  # in this order in the tar stream: the big one last
    here = tmp_path / "back"
    hidden = tmp_path / landing_tree.staging_name("back")
    def big_size() -> int:
        with contextlib.suppress(OSError):
            return (hidden / "zz" / "big.bin").stat().st_size
        return 0

    try:
        tr.put_files([(src / n, n) for n in small], f"~/{rel}")
        big = tr.resolve(f"~/{rel}/zz/big.bin")
        tr.run(["sh", "-c", 'mkdir -p -- "${1%/*}" && head -c 268435456 /dev/urandom > "$1"',
                "sh", big])
        want_big = tr.run(["sha256sum", "--", big]).stdout.split()[0]
        _cut(lambda: tr.get_files(f"~/{rel}", names, here),
             lambda: big_size() > (16 << 20), own_sshd, "fetch of the last file")
        assert not here.exists()  # a reader sees nothing of a half-fetched tree
        left = sorted(str(p.relative_to(hidden)) for p in hidden.rglob("*") if p.is_file())
        assert left == sorted([*small, f"zz/{landing.partial_name('big.bin')}"])
        for n in small:
            assert (hidden / n).read_bytes() == data[n]
        kept = (hidden / "zz" / landing.partial_name("big.bin")).stat().st_size
        assert kept > (16 << 20)
        changed = "many/f07.dat"  # changed on the cluster meanwhile (same size)
        data[changed] = os.urandom(8 << 10)
        (src / changed).write_bytes(data[changed])
        tr.put_files([(src / changed, changed)], f"~/{rel}")

        before = tr.received
        got = tr.get_files(f"~/{rel}", names, here)
        wire = tr.received - before
        # the rest of the big file, plus the changed small file in a tar stream (header,
        # padding, end blocks); the 26 others (208 KiB) did not come again
        rest = (256 << 20) - kept
        assert rest + (8 << 10) <= wire <= rest + (24 << 10), (wire, rest)
        assert (got["zz/big.bin"].size, got["zz/big.bin"].sha256) == (256 << 20, want_big)
        for n in small:
            assert (got[n].size, got[n].sha256, got[n].status) == (
                8 << 10, _sha(data[n]), "new"), n
            assert got[n].path == here / n and (here / n).read_bytes() == data[n]
        assert sorted(os.listdir(tmp_path)) == ["back", "src", "state"]  # hidden one gone
        assert sorted(os.listdir(here)) == ["d", "many", "zz"]
        assert os.listdir(here / "zz") == ["big.bin"]
        assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    finally:
        tr.run(["rm", "-rf", "--", tr.resolve(f"~/{rel}")])
        tr.close()


def test_files_move_between_two_remote_clusters_through_this_machine(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    """Two remote clusters (two entries, two connections) that are not asked to reach each
    other: the dependant's input goes from one to the other through the Jupyter side."""
    import asyncio

    one = cluster(sshd, client)
    two = cluster(sshd, client, name="far2", work_dir="~/stax-runs-two")
    wf = {
        "name": "relay",
        "steps": [
            {"name": "a", "cluster": "far", "run": "mkdir -p o && echo from-a > 'o/x y.txt'",
             "outputs": ["o"], "fetch": "manual"},
            {"name": "b", "cluster": "far2", "inputs": [{"from": "a", "path": "o/*"}],
             "run": "cat 'o/x y.txt' > b.txt", "outputs": ["b.txt"]},
        ],
    }

    async def body() -> object:
        reg = ClusterRegistry([one, two], work_dir=tmp_path / "runs")
        async with Engine(store=tmp_path / "state" / "stax.sqlite", clusters=reg) as e:
            ex = await e.submit(wf, "far", options=SubmitOptions(
                base_dir=str(tmp_path), outputs_dir=str(tmp_path / "outs")))
            return await e.wait(ex.id, 300)

    ex = asyncio.run(body())
    assert ex.state.value == "completed", [(s.name, s.state, s.reason) for s in ex.steps]
    a, b = ex.steps
    assert "/stax-runs-two/" in b.directory and "/stax-runs/" in a.directory
    assert b.files is not None
    assert [(r.path, r.source) for r in b.files.inputs] == [("o/x y.txt", "a:o/x y.txt")]
    assert (tmp_path / "outs" / ex.id / "b" / "b.txt").read_text() == "from-a\n"


def test_a_failed_fetch_keeps_the_step_completed_with_the_command_that_fetches_again(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    """The outputs directory cannot be made (a file is in its place): the step completes, the
    fetch is recorded failed with the reason and the command; once the place is free, the
    one fetch operation brings the files."""
    import asyncio

    from jupyter_stax.core.staging import FetchRequest
    from jupyter_stax.engine.store import Store
    from jupyter_stax.operations import Operations

    far = cluster(sshd, client)
    blocker = tmp_path / "outs"
    blocker.write_text("a file where the outputs directory should be")
    wf = {"name": "ff", "steps": [
        {"name": "s", "cluster": "far", "run": "echo result > r.txt", "outputs": ["r.txt"]}]}
    reg = ClusterRegistry([far], work_dir=tmp_path / "runs")
    store_path = tmp_path / "state" / "stax.sqlite"

    async def body() -> object:
        async with Engine(store=store_path, clusters=reg) as e:
            ex = await e.submit(wf, "far", options=SubmitOptions(
                base_dir=str(tmp_path), outputs_dir=str(blocker)))
            return await e.wait(ex.id, 300)

    ex = asyncio.run(body())
    s = ex.step("s")
    assert s.state is StepState.COMPLETED and ex.state.value == "completed"
    assert s.files is not None and s.files.fetch == "failed"
    assert s.files.warning is not None
    assert s.files.warning.startswith("outputs of step 's' not fetched: ")
    assert s.files.warning.endswith(f"fetch them with `jupyter stax fetch {ex.id} s`")
    assert any(w.startswith("step 's': outputs of step 's' not fetched") for w in ex.warnings)
    blocker.unlink()
    store = Store(store_path)
    got = Operations(lambda: store, lambda: reg).fetch(ex.id, FetchRequest(step="s"))
    assert [x.fetch for x in got.steps] == ["fetched"]
    assert (blocker / ex.id / "s" / "r.txt").read_text() == "result\n"
    assert store.get(ex.id).step("s").files.fetch == "fetched"  # type: ignore[union-attr]


def test_a_stage_in_cut_by_stopping_the_server_says_so_and_completes_once_it_is_back(
    own_sshd: Sshd, own_client: Client, tmp_path: Path
) -> None:
    """The login node's sshd is STOPPED while a 256 MB input streams to a remote workstation:
    the step says why it is not submitted yet (its reason, from the dropped transfer and then
    the refused connection), nothing is submitted for it while the server is down, and once the
    server is back the stage-in is tried again and the step completes with the whole file,
    its provenance recorded. Uses its own sshd (``own_sshd``), never the shared one."""
    import asyncio

    from .test_remote_slurm import until
    from .test_workstation import box, engine

    nb = tmp_path / "nb"
    nb.mkdir()
    with open(nb / "big.bin", "wb") as f:  # sparse: costs nothing here
        f.truncate(256 << 20)
    wf = {"name": "cut", "steps": [{
        "name": "a", "inputs": ["big.bin"], "run": "wc -c < big.bin > n.txt",
        "outputs": ["n.txt"],
    }]}

    async def body() -> None:
        async with engine(tmp_path, box(own_sshd, own_client)) as e:
            ex = await e.submit(wf, "box", options=SubmitOptions(base_dir=str(nb)))

            def step() -> Any:
                return e.get(ex.id).steps[0]

            def partial() -> int:
                with contextlib.suppress(OSError):
                    return (Path(step().directory) / "big.bin").stat().st_size
                return 0

            await until(lambda: partial() > (16 << 20), 120, "the input to be half-way there")
            own_sshd.stop()
            try:
                await until(lambda: (step().reason or "").startswith("not yet submitted: "),
                            60, "the step to say why it waits")
                assert step().native_id is None and step().state is StepState.PENDING
            finally:
                own_sshd.start()
            done = await e.wait(ex.id, 240)
            a = done.steps[0]
            assert a.state is StepState.COMPLETED, (a.state, a.reason)
            assert a.files is not None and a.files.inputs[0].size == 256 << 20
            assert a.files.outputs[0].path == "n.txt"
            assert Path(a.files.outputs[0].local or "").read_text().strip() == str(256 << 20)

    asyncio.run(body())
