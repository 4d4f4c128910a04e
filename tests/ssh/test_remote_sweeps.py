"""Sweeps on a remote Slurm over the real test sshd (``stax-remote@127.0.0.1``): the array is
submitted through the cluster's transport, the instances' files and records live on the
cluster (owned by the remote account), every records read is ONE exec channel, the arrays'
state comes from the one ``squeue`` per poll (elements summed up under the array's id), and
the instances are listed through the same transport."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_stax.core.clusters import ClusterRegistry
from jupyter_stax.core.states import ExecutionState, StepState
from jupyter_stax.operations import Operations

from .sshd import REMOTE_USER, Client, Sshd
from .test_remote_slurm import cluster, engine, transport, until

pytestmark = pytest.mark.ssh

WORKFLOW = {
    "name": "remote-sweep",
    "steps": [
        {
            "name": "ok",
            "sweep": {"n": [1, 2], "seed": {"range": [0, 2]}},
            "pack": 1,
            "max_parallel": 2,
            "run": "echo {{n}} {{seed}} > out.txt; id -un > who",
        },
        {"name": "collect", "after": ["ok"], "run": "cat ../ok/*/out.txt | wc -l"},
        {"name": "bad", "sweep": {"x": [0, 1, 2]}, "run": "[ {{x}} != 1 ] || exit 5"},
    ],
}


def test_a_sweep_runs_on_the_remote_slurm_as_one_array(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    far = cluster(sshd, client)

    async def body() -> None:
        async with engine(tmp_path, far) as e:
            t0 = time.monotonic()
            ex = await e.submit(WORKFLOW, "far")
            done = await e.wait(ex.id, 240)
            elapsed = time.monotonic() - t0
            got = {s.name: (s.state, s.reason) for s in done.steps}
            assert got == {
                "ok": (StepState.COMPLETED, None),
                "collect": (StepState.COMPLETED, None),
                "bad": (StepState.FAILED, "1 of 3 instances did not complete: 1 (exit 5)"),
            }, got
            assert done.state is ExecutionState.FAILED
            ok = done.step("ok")
            assert ok.native_id and "," not in ok.native_id  # ONE array, over SSH
            assert ok.sweep is not None and ok.sweep.counts == {"completed": 4}
            tr = transport(e)
            assert tr.read_chunk(done.step("collect").stdout, 0, 100) == b"4\n"
            uid = pwd.getpwnam(REMOTE_USER).pw_uid
            for i in range(4):  # each instance's files on the cluster, the remote account's
                d = Path(ok.directory, str(i))
                assert (d / "who").read_text() == f"{REMOTE_USER}\n"
                for f in ("stax.job.sh", "stax.start", "stax.exit", "out.txt"):
                    assert os.stat(d / f).st_uid == uid, f
            # every records read (the sweeps' and the plain step's): ONE exec channel
            assert tr.record_reads and all(n == 1 for _, n in tr.record_reads), tr.record_reads
            # the arrays' states: ONE squeue per poll (poll_interval 1 s), never one per
            # element or per array
            assert tr.kinds.get("squeue", 0) <= elapsed / far.effective_poll_interval + 2, (
                tr.kinds, elapsed
            )
            assert tr.connection.stats.connects == 1
            # the instances listed through the engine's transport: ONE command, failed first
            ops = Operations(store=lambda: e.store, registry=lambda: ClusterRegistry([far]),
                             transport=e.transport)
            # the engine's last work for the ended run (leftover removals, a last records read)
            # may still be under way: count from when its connection is quiet (no exec for
            # 1.5 s, more than its poll), as the DAG test of test_remote_slurm.py does
            last = [tr.connection.stats.execs, time.monotonic()]

            def quiet() -> bool:
                n = tr.connection.stats.execs
                if n != last[0]:
                    last[:] = [n, time.monotonic()]
                return time.monotonic() - last[1] >= 1.5

            await until(quiet, 60, "the engine's connection to be quiet")
            before = tr.connection.stats.execs
            page = await asyncio.to_thread(ops.instances, ex.id, "bad")
            assert tr.connection.stats.execs == before + 1
            assert page.counts == {"completed": 2, "failed": 1}
            assert [(i.index, i.state, i.exit_code) for i in page.items] == [
                (1, "failed", 5), (0, "completed", 0), (2, "completed", 0)
            ]

    asyncio.run(body())


def test_a_detached_sweep_on_the_remote_slurm_is_reconciled_per_instance(
    sshd: Sshd, client: Client, slurm: str, tmp_path: Path
) -> None:
    """``--detach`` over SSH: the array and its dependant are queued with Slurm's dependency,
    the engine stops, Slurm runs everything as the remote account, and an engine that adopts
    the execution later reads every instance's records over SSH."""
    from jupyter_stax.core.models import SubmitOptions

    far = cluster(sshd, client)
    wf = {"name": "remote-detached-sweep", "steps": WORKFLOW["steps"][:2]}  # ok -> collect

    async def body() -> None:
        async with engine(tmp_path, far, keep_jobs=True) as first:
            ex = await first.submit(wf, "far", options=SubmitOptions(detached=True))
            assert all(s.native_id for s in ex.steps)
        collect = Path(ex.step("collect").directory)

        def ended() -> bool:
            return (collect / "stax.exit").exists()

        deadline = time.monotonic() + 180
        while not await asyncio.to_thread(ended):  # Slurm alone, no engine alive
            assert time.monotonic() < deadline, "Slurm did not run collect after the array"
            await asyncio.sleep(0.5)
        async with engine(tmp_path, far, adopt=True) as second:
            done = await second.wait(ex.id, 120)
            got = {s.name: (s.state, s.reason) for s in done.steps}
            assert got == {
                "ok": (StepState.COMPLETED, None), "collect": (StepState.COMPLETED, None)
            }, got
            ok = done.step("ok")
            assert ok.sweep is not None and ok.sweep.counts == {"completed": 4}
            assert transport(second).read_chunk(done.step("collect").stdout, 0, 100) == b"4\n"
            assert all(n == 1 for _, n in transport(second).record_reads)

    asyncio.run(body())


def test_a_sweep_on_a_remote_workstation(sshd: Sshd, client: Client, tmp_path: Path) -> None:
    """A sweep on a remote WORKSTATION (``scheduler: local`` with a ``host``: no scheduler):
    ONE detached process over SSH runs every instance, as the remote account, each in its own
    directory with its own records; ``max_parallel`` holds (from the instances' own start and
    exit records); hostile values stay data; an automatic retry reruns only the failed
    instance; the dependant sees every instance's output; the runner leaves no claims;
    without ``max_parallel`` as many run at once as the workstation has CPUs; a running
    sweep's cancel ends the runner's process group."""
    from .test_workstation import box, engine, session

    wsbox = box(sshd, client)
    canary = "$(touch ../../pwned)"
    wf = {
        "name": "desk-sweep",
        "steps": [
            {
                "name": "sim",
                "sweep": {"x": [0, 1, 2, 3], "v": ["a b", canary]},
                "max_parallel": 2,
                "retries": 1,
                "run": "echo $STAX_SWEEP_INDEX >> ../runs.log\n"
                "printf '%s %s\\n' {{x}} {{v}} > out.txt; id -un > who\n"
                "[ {{x}} != 3 ] || [ {{v}} != 'a b' ] || [ -e ../retried ] || "
                "{ touch ../retried; exit 5; }",
            },
            {"name": "collect", "after": ["sim"], "run": "cat ../sim/*/out.txt | sort"},
        ],
    }
    long: dict[str, Any] = {"name": "desk-cancel", "steps": [{"name": "slow", "run": "sleep 600"}]}

    async def body() -> None:
        async with engine(tmp_path, wsbox) as e:
            ex = await e.submit(wf, "box")
            done = await e.wait(ex.id, 120)
            got = {s.name: (s.state, s.reason) for s in done.steps}
            assert got == {
                "sim": (StepState.COMPLETED, None), "collect": (StepState.COMPLETED, None)
            }, got
            sim = done.step("sim")
            assert sim.attempt == 2 and sim.history[-1].reason == (
                "1 of 8 instances did not complete: 6 (exit 5)"
            ), (sim.attempt, [h.reason for h in sim.history])
            assert sim.sweep is not None and sim.sweep.counts == {"completed": 8}
            d = Path(sim.directory)
            runs = sorted(map(int, (d / "runs.log").read_text().split()))
            assert runs == [0, 1, 2, 3, 4, 5, 6, 6, 7]  # only the failed one, again
            uid = pwd.getpwnam(REMOTE_USER).pw_uid
            spans = []
            for i in range(8):
                x, v = i // 2, ["a b", canary][i % 2]
                one = d / str(i)
                assert (one / "out.txt").read_text() == f"{x} {v}\n"
                assert (one / "who").read_text() == f"{REMOTE_USER}\n"
                for f in ("stax.job.sh", "stax.start", "stax.exit", "stax.out"):
                    assert os.stat(one / f).st_uid == uid, (i, f)
                start = (one / "stax.start").read_text().split()
                end = (one / "stax.exit").read_text().split()
                assert start[0] == end[0] == ("2" if i == 6 else "1") and end[1] == "0"
                spans.append((float(start[3].replace(",", ".")), float(end[2].replace(",", "."))))
            assert not (tmp_path / "pwned").exists() and not Path(d.parent, "pwned").exists()
            for t, _ in spans:  # never more than max_parallel instances at once
                assert sum(1 for a, b in spans if a <= t <= b) <= 2, spans
            out = e._transports["box"].read_chunk(done.step("collect").stdout, 0, 4096)
            assert out.decode().splitlines() == sorted(
                f"{i // 2} {['a b', canary][i % 2]}" for i in range(8)
            )
            await until(lambda: not list(d.glob(".stax.claims.*")), 30, "the claims removed")

            # no max_parallel: as many at once as the workstation has CPUs (counted there;
            # the test's workstation is this machine)
            cpus = len(os.sched_getaffinity(0))  # what `nproc` says there
            long["steps"][0]["sweep"] = {"i": {"range": [0, cpus + 1]}}
            ex = await e.submit(long, "box")
            slow = Path(e.get(ex.id).step("slow").directory)
            # the instances can start before the engine has the runner's pid back from the
            # workstation (seen at load 59): wait for both
            await until(lambda: len(list(slow.glob("*/stax.start"))) >= cpus, 60, "running")
            deadline = time.monotonic() + 60
            while not e.get(ex.id).step("slow").native_id and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # the engine's loop runs meanwhile
            pid = int(e.get(ex.id).step("slow").native_id or 0)
            assert pid and len(session(pid)) >= 1 + 2 * cpus  # the runner, lanes, instances
            assert len(list(slow.glob("*/stax.start"))) == cpus  # the lanes are busy
            await e.cancel(ex.id)
            done = await e.wait(ex.id, 60)
            assert done.step("slow").state is StepState.CANCELED, done.step("slow").reason
            assert done.step("slow").sweep is not None
            assert done.step("slow").sweep.counts == {"canceled": cpus + 1}
            await until(lambda: not session(pid), 30, "every process of the sweep to end")

    asyncio.run(body())
