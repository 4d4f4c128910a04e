"""Latency on Slurm: from a job's end to the engine's commit of its final state; and how often
the engine runs ``squeue``.

N independent ``sleep 1`` steps (one workflow) run on a Slurm cluster with the DEFAULT settings
(``Cluster(name="slurm", scheduler="slurm", queue="debug", walltime="00:10:00")``, no
``poll_interval``: the engine's default). For each step:

    latency = time of the committed transition to ``completed`` (``Event.time`` from
              ``Engine.subscribe``) - the job's end (the epoch in the step's ``stax.exit``)

Reported: median, p90 and max over all steps of all repeats (target: median <= 1.5 s).

``squeue`` calls are counted with a PATH shim: a directory holding an ``squeue`` script that logs
each call (time and arguments) and execs the real one; it is first on the engine's PATH. Reported:
calls per second during the run, the distinct argument lists (one status command for all jobs,
never one per job) and the intervals between calls (one call per poll).

    python bench/slurm_latency.py --n 30 --repeat 3 --json /tmp/latency.json
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

MEDIAN_TARGET_S = 1.5

def child_stax(d: Path, n: int, run: str, poll: float | None) -> dict[str, Any]:
    import psij.executors.batch.slurm  # noqa: F401  (one-time import cost outside the timing)

    from jupyter_stax.core.models import Cluster

    extra = {"poll_interval": poll} if poll else {}
    cluster = Cluster(
        name="slurm",
        scheduler="slurm",
        queue="debug",
        walltime="00:10:00",
        work_dir=str(d / "runs"),
        **extra,
    )
    return c.latency_run(d, cluster, n, run, "squeue")


def main() -> None:
    p = c.parser(__doc__.split("\n")[0], n=30)
    p.add_argument("--run", default="sleep 1", help="each step's script (default 'sleep 1')")
    p.add_argument(
        "--poll",
        type=float,
        default=0.0,
        help="cluster poll_interval, s (default: unset, i.e. the engine's default)",
    )
    a = p.parse_args()
    if a.child:
        c.emit(child_stax(Path(a.dir), a.n, a.run, a.poll or None))
        return

    c.need_slurm()
    cluster = c.slurm_cluster_info()
    print(
        f"Slurm latency: {a.n} x {a.run!r}, poll_interval "
        f"{a.poll if a.poll else 'unset (engine default)'}, {a.repeat} repeat(s); cluster: "
        f"{cluster.get('nodes')} nodes, {cluster.get('cpus')} CPUs"
    )
    args = ["--n", str(a.n), "--run", a.run, "--poll", str(a.poll)]
    runs = c.interleaved(
        __file__, ["stax"], a.repeat, args, timeout=a.timeout, keep=a.keep, tmpdir=a.tmpdir
    )
    rs = runs["stax"]
    lat = [x for r in rs for x in r["latencies_s"]]
    lat_s = c.latency_summary(lat)
    per_run_median = c.summary(statistics.median(r["latencies_s"]) for r in rs)
    rate = c.summary(r["squeue_calls_per_s"] for r in rs)
    gaps = [r["squeue_gap_median_s"] for r in rs if r["squeue_gap_median_s"] is not None]
    gap = c.summary(gaps) if gaps else None
    commands = sorted({cmd for r in rs for cmd in r["squeue_commands"]})
    calls = sum(r["squeue_calls"] for r in rs)
    print()
    print(
        f"end of job -> committed final state: median {lat_s['median']:.2f} s, "
        f"p90 {lat_s['p90']:.2f} s, max {lat_s['max']:.2f} s (min {lat_s['min']:.2f} s; "
        f"{lat_s['n']} steps)  [{c.verdict(lat_s['median'], MEDIAN_TARGET_S)}]"
    )
    print(f"  median per run: {c.fmt(per_run_median, ' s')}")
    print(
        f"squeue: {calls} calls for {a.n} jobs x {a.repeat} run(s); {c.fmt(rate, '/s', 3)}; "
        f"median gap between calls {c.fmt(gap, ' s') if gap else '-'}"
    )
    print(f"  distinct squeue commands: {len(commands)}")
    for cmd in commands:
        print(f"    squeue {cmd}")
    per_poll = c.summary(r["calls_per_poll"] for r in rs)
    interval = rs[0]["poll_interval_s"]
    mins = [r["squeue_gap_min_s"] for r in rs if r["squeue_gap_min_s"] is not None]
    gap_min = min(mins) if mins else math.inf
    shortest = f"{gap_min:.2f} s" if mins else "- (one call)"
    print(f"  calls per poll interval ({interval:g} s): {c.fmt(per_poll)}; shortest gap {shortest}")
    # one call per poll for all jobs: a single command line, <= 1 call per interval, and never
    # two calls closer than the interval (no per-job or per-step extra queries)
    one_per_poll = len(commands) == 1 and per_poll["max"] <= 1.05 and gap_min >= 0.9 * interval
    print(f"  one squeue per poll, for all jobs: {'yes' if one_per_poll else 'NO'}")
    bg = c.print_background(runs)
    c.write_json(
        a.json,
        {
            "benchmark": "slurm_latency",
            "machine": c.machine(),
            "slurm": cluster,
            "n": a.n,
            "run": a.run,
            "poll_interval": a.poll or None,
            "repeat": a.repeat,
            "tmpdir": c.filesystem(a.tmpdir),
            "runs": rs,
            "latency_s": lat_s,
            "latency_median_per_run_s": per_run_median,
            "latency_median_target_s": MEDIAN_TARGET_S,
            "squeue_calls_per_s": rate,
            "squeue_gap_s": gap,
            "squeue_commands": commands,
            "squeue_calls_per_poll": per_poll,
            "one_status_command_per_poll": one_per_poll,
            "background_cpus": bg,
        },
    )


if __name__ == "__main__":
    main()
