"""Throughput on the ``local`` cluster: N trivial steps through jupyter_stax vs PSI/J directly.

Variants (each run in a fresh Python process, interleaved across repeats):

* ``stax``: one workflow of N independent steps (``run: true``) submitted to an Engine on the
  ``local`` cluster; timed from the ``submit()`` call until ``wait()`` returns the final
  execution;
* ``psij``: the same N jobs (``/bin/bash -c true``, each with its own directory, stdout and
  stderr) submitted in a loop to ``psij.JobExecutor.get_instance("local")``, then waited for.

Runs go to /dev/shm (tmpfs) when it exists (``--tmpdir`` to change): on ext4 each run's file
creations get slower after earlier runs deleted thousands of files, which makes the numbers drift
(both variants, jupyter_stax more: it writes two scripts per step).

* ``base`` (with ``--baseline TREE``): the ``stax`` run with another checkout of jupyter_stax
  first on ``PYTHONPATH`` (e.g. main's, to measure a change against it in ONE invocation,
  interleaved with the other two: this machine is shared and its speed drifts).

Reported: wall ratio stax/psij (target <= 1.15) and the CPU time of the Python process itself
(user+sys of all its threads, ``getrusage(RUSAGE_SELF)``, children excluded) per job, for both,
and their difference (target <= 2 ms per step); the CPU of the jobs' processes per job
(``RUSAGE_CHILDREN``: the processes the run started and reaped, with their own reaped
descendants).

    python bench/local_throughput.py --n 1000 --repeat 3 --json /tmp/local.json
    python bench/local_throughput.py --n 1000 --repeat 5 --baseline /work/main
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

WALL_TARGET = 1.15
CPU_TARGET_MS = 2.0


def workflow(n: int, run: str = "true") -> dict[str, Any]:
    return {"name": "bench", "steps": [{"name": f"s{i:05d}", "run": run} for i in range(n)]}


def child_stax(d: Path, n: int, workers: int | None = None) -> dict[str, Any]:
    # one-time import costs stay outside the timed section, as in child_psij (PSI/J's import
    # alone is ~0.15 s of CPU, which the engine would otherwise pay inside it)
    import psij.executors.local  # noqa: F401

    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.core.models import Cluster
    from jupyter_stax.engine.engine import Engine

    async def main() -> dict[str, Any]:
        clusters = ClusterRegistry(
            [Cluster(name="local", scheduler="local", work_dir=str(d / "runs"))]
        )
        wf = workflow(n)
        kw: dict[str, Any] = {} if workers is None else {"submit_workers": workers}
        async with Engine(store=d / "state" / "stax.sqlite", clusters=clusters, **kw) as eng:
            with c.Meter() as m:
                ex = await eng.submit(wf, cluster="local")
                ex = await eng.wait(ex.id)
        if ex.state.value != "completed":
            raise SystemExit(f"execution ended {ex.state.value}: {ex.counts()}")
        import jupyter_stax

        return {**m.result(n), "tree": str(Path(jupyter_stax.__file__).parents[1])}

    return asyncio.run(main())


def child_psij(d: Path, n: int) -> dict[str, Any]:
    import psij

    runs = d / "runs"
    with c.Meter() as m:
        ex = psij.JobExecutor.get_instance(
            "local", config=psij.JobExecutorConfig(work_directory=d / "psij")
        )
        jobs = []
        for i in range(n):
            jd = runs / f"j{i:05d}"
            jd.mkdir(parents=True)
            spec = psij.JobSpec(
                executable="/bin/bash",
                arguments=["-c", "true"],
                directory=jd,
                stdout_path=jd / "out",
                stderr_path=jd / "err",
            )
            job = psij.Job(spec)
            ex.submit(job)
            jobs.append(job)
        for job in jobs:
            job.wait()
    bad = [j.status for j in jobs if j.status.state != psij.JobState.COMPLETED]
    if bad:
        raise SystemExit(f"{len(bad)} jobs did not complete, e.g. {bad[0]}")
    return m.result(n)


def main() -> None:
    p = c.parser(__doc__.split("\n")[0], n=1000, tmpdir=c.shm())
    p.add_argument(
        "--baseline",
        metavar="TREE",
        help="also run the jupyter_stax variant from this checkout (variant 'base'), "
        "interleaved, and print the ratios against it",
    )
    p.add_argument(
        "--submit-workers",
        type=int,
        metavar="K",
        help="the engine's submit_workers in the jupyter_stax runs (default: the engine's)",
    )
    a = p.parse_args()
    if a.child:
        d = Path(a.dir)
        if a.child == "psij":
            c.emit(child_psij(d, a.n))
        else:
            c.emit(child_stax(d, a.n, a.submit_workers))
        return

    fs = c.filesystem(a.tmpdir)
    print(
        f"local throughput: {a.n} trivial jobs, {a.repeat} repeat(s), fresh process per run; "
        f"files in {fs['path']} ({fs['fstype']})"
    )
    variants = ["stax", "psij"]
    env_for = None
    if a.baseline:
        base = str(Path(a.baseline).resolve())
        variants.append("base")

        def env_for(v: str) -> dict[str, str]:
            if v != "base":
                return {}
            return {"PYTHONPATH": base + os.pathsep + os.environ.get("PYTHONPATH", "")}

        print(f"baseline ('base'): jupyter_stax from {base}")
    runs = c.interleaved(
        __file__,
        variants,
        a.repeat,
        ["--n", str(a.n)]
        + ([] if a.submit_workers is None else ["--submit-workers", str(a.submit_workers)]),
        timeout=a.timeout,
        keep=a.keep,
        tmpdir=a.tmpdir,
        env_for=env_for,
    )
    for v in ("stax", "base"):
        trees = sorted({r["tree"] for r in runs.get(v, [])})
        if trees:
            print(f"{v}: jupyter_stax imported from {', '.join(trees)}")
    wall = c.summary(c.ratios(runs, "stax", "psij"))
    cpu_stax = c.summary(r["cpu_per_job_ms"] for r in runs["stax"])
    cpu_psij = c.summary(r["cpu_per_job_ms"] for r in runs["psij"])
    diff = c.summary(
        a["cpu_per_job_ms"] - b["cpu_per_job_ms"]
        for a, b in zip(runs["stax"], runs["psij"], strict=True)
    )
    rate = {v: c.summary(r["jobs_per_s"] for r in runs[v]) for v in runs}
    print()
    v = c.verdict(wall["median"], WALL_TARGET)
    print(f"jupyter_stax / PSI/J direct (wall) = {c.fmt(wall)}  [{v}]")
    print(f"  jobs/s: jupyter_stax {c.fmt(rate['stax'], digits=1)}")
    print(f"          PSI/J direct {c.fmt(rate['psij'], digits=1)}")
    print(f"process CPU per job: jupyter_stax {c.fmt(cpu_stax, ' ms')}")
    print(f"                     PSI/J direct {c.fmt(cpu_psij, ' ms')}")
    print(
        f"  difference (jupyter_stax - PSI/J) = {c.fmt(diff, ' ms')}  "
        f"[{c.verdict(diff['median'], CPU_TARGET_MS)}]"
    )
    kids = {v: c.summary(r["children_cpu_s"] / a.n * 1000.0 for r in runs[v]) for v in runs}
    print(f"jobs' processes, CPU per job: jupyter_stax {c.fmt(kids['stax'], ' ms')}")
    print(f"                              PSI/J direct {c.fmt(kids['psij'], ' ms')}")
    extra: dict[str, Any] = {}
    if "base" in runs:
        extra = {
            "baseline": a.baseline,
            "base_wall_ratio": c.summary(c.ratios(runs, "base", "psij")),
            "stax_over_base_wall": c.summary(c.ratios(runs, "stax", "base")),
            "base_cpu_per_job_ms": c.summary(r["cpu_per_job_ms"] for r in runs["base"]),
        }
        print(f"baseline: base / PSI/J direct (wall) = {c.fmt(extra['base_wall_ratio'])}  "
              f"[{c.verdict(extra['base_wall_ratio']['median'], WALL_TARGET)}]")
        print(f"          jupyter_stax / base (wall) = {c.fmt(extra['stax_over_base_wall'])}")
        print(f"          jobs/s {c.fmt(rate['base'], digits=1)}; process CPU per job "
              f"{c.fmt(extra['base_cpu_per_job_ms'], ' ms')}; jobs' processes "
              f"{c.fmt(kids['base'], ' ms')}")
    bg = c.print_background(runs)
    c.write_json(
        a.json,
        {
            "benchmark": "local_throughput",
            "machine": c.machine(),
            "n": a.n,
            "repeat": a.repeat,
            "tmpdir": c.filesystem(a.tmpdir),
            "runs": runs,
            "wall_ratio": wall,
            "wall_ratio_target": WALL_TARGET,
            "cpu_per_job_ms": {"stax": cpu_stax, "psij": cpu_psij, "difference": diff},
            "cpu_difference_target_ms": CPU_TARGET_MS,
            "jobs_per_s": rate,
            "children_cpu_per_job_ms": kids,
            "background_cpus": bg,
            **extra,
        },
    )


if __name__ == "__main__":
    main()
