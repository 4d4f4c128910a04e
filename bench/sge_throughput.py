"""Throughput and latency on Grid Engine: N trivial steps through jupyter_stax vs a bash loop of
``qsub`` polled with ``qstat``; and the time from a job's end to the engine's commit of its
final state.

Throughput variants (each run in a fresh process, interleaved across repeats; both poll every P
seconds):

* ``stax``: one workflow of N independent steps (``run: true``) on
  ``Cluster(name="sge", scheduler="sge", queue="all.q", walltime="00:10:00", poll_interval=P)``;
  timed from ``submit()`` until ``wait()`` returns the final execution;
* ``qsub``: ``bash``: a loop of ``qsub -terse -b y -S /bin/bash -q all.q -l h_rt=00:10:00 -N ..
  -wd DIR -o DIR -j y true``, then ``qstat`` every P seconds until it lists none of them.

Latency (variant ``latency``, run after the throughput repeats, once per repeat): M independent
``sleep 1`` steps on the same cluster with the DEFAULT settings (no ``poll_interval``: the
engine's default). For each step:

    latency = time of the committed transition to ``completed`` (``Event.time`` from
              ``Engine.subscribe``) - the job's end (the epoch in the step's ``stax.exit``)

``qstat`` calls are counted with a PATH shim (as ``slurm_latency.py`` counts ``squeue``).

Reported: the wall ratio stax/qsub (target <= 1.1), medians over the repeats; latency median,
p90 and max over all steps of all repeats (target: median <= 1.5 s). Needs the project's Grid
Engine (``eval "$(scripts/sge/start-sge.sh)"``: SGE_ROOT, ``qstat`` on PATH); other users' jobs
in all.q slow every variant alike, which is why the variants are interleaved and only ratios
are compared.

    python bench/sge_throughput.py --n 100 --repeat 3 --poll 1 --latency-n 12 --json /tmp/sge.json
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

RATIO_TARGET = 1.1
LATENCY_MEDIAN_TARGET_S = 1.5
QUEUE = "all.q"
WALLTIME = "00:10:00"

SHIM = """#!/bin/bash
printf '%s %s\\n' "$EPOCHREALTIME" "$*" >> {log}
exec {real} "$@"
"""


def cluster(d: Path, poll: float | None) -> Any:
    from jupyter_stax.core.models import Cluster

    extra = {"poll_interval": poll} if poll else {}
    return Cluster(
        name="sge",
        scheduler="sge",
        queue=QUEUE,
        walltime=WALLTIME,
        work_dir=str(d / "runs"),
        **extra,
    )


def child_stax(d: Path, n: int, poll: float) -> dict[str, Any]:
    import jupyter_stax.psij_sge  # noqa: F401  (one-time import cost outside the timing)
    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.engine.engine import Engine

    async def main() -> dict[str, Any]:
        wf = {"name": "bench", "steps": [{"name": f"s{i:05d}", "run": "true"} for i in range(n)]}
        async with Engine(
            store=d / "state" / "stax.sqlite", clusters=ClusterRegistry([cluster(d, poll)])
        ) as eng:
            with c.Meter() as m:
                ex = await eng.submit(wf, cluster="sge")
                ex = await eng.wait(ex.id)
        if ex.state.value != "completed":
            bad = [
                f"{s.name}: {s.state.value} {s.reason}"
                for s in ex.steps
                if s.state.value != "completed"
            ]
            raise SystemExit(f"execution ended {ex.state.value}: {ex.counts()}; e.g. {bad[:3]}")
        return m.result(n)

    return asyncio.run(main())


QSUB_LOOP = r"""
set -u
N=$1 P=$2 DIR=$3
ids=$DIR/ids
: > "$ids"
for i in $(seq "$N"); do
  id=$(qsub -terse -b y -S /bin/bash -q {queue} -l h_rt={walltime} -N "bench-qsub-$i" \
       -wd "$DIR" -o "$DIR" -j y true) || exit 1
  echo "$id" >> "$ids"
done
# plain qstat lists this user's unfinished jobs (others of ours may run meanwhile: filter)
while qstat | awk 'NR > 2 {{print $1}}' | grep -Fxq -f "$ids"; do sleep "$P"; done
"""


def child_qsub(d: Path, n: int, poll: float) -> dict[str, Any]:
    out = d / "runs"
    out.mkdir(parents=True)
    script = QSUB_LOOP.format(queue=QUEUE, walltime=WALLTIME)
    with c.Meter() as m:
        p = subprocess.run(["bash", "-c", script, "bash", str(n), str(poll), str(out)])
    if p.returncode != 0:
        raise SystemExit(f"qsub loop failed with exit code {p.returncode}")
    r = m.result(n)
    r.pop("cpu_per_job_ms")  # the work is in bash and its children: not comparable
    return r


def child_latency(d: Path, n: int, run: str) -> dict[str, Any]:
    real = shutil.which("qstat")
    if real is None:
        raise SystemExit("qstat is not on PATH")
    (d / "shim").mkdir(parents=True, exist_ok=True)
    log = d / "qstat.log"
    (d / "shim" / "qstat").write_text(SHIM.format(log=log, real=real))
    (d / "shim" / "qstat").chmod(0o755)
    os.environ["PATH"] = f"{d / 'shim'}{os.pathsep}{os.environ.get('PATH', '')}"

    import jupyter_stax.psij_sge  # noqa: F401
    from jupyter_stax.core import jobscript as js
    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.engine.engine import Engine, Event

    events: dict[str, float] = {}

    def on_event(ev: Event) -> None:
        if ev.step is not None and ev.state == "completed":
            events[ev.step] = ev.time

    async def main() -> tuple[Any, float, float, float]:
        cl = cluster(d, None)
        wf = {"name": "latency", "steps": [{"name": f"s{i:03d}", "run": run} for i in range(n)]}
        async with Engine(store=d / "state" / "stax.sqlite", clusters=ClusterRegistry([cl])) as eng:
            eng.subscribe(on_event)
            t0 = time.time()
            ex = await eng.submit(wf, cluster="sge")
            ex = await eng.wait(ex.id)
            t1 = time.time()
        return ex, t0, t1, cl.effective_poll_interval

    t_start = time.perf_counter()
    ex, t0, t1, interval = asyncio.run(main())
    wall = time.perf_counter() - t_start
    if ex.state.value != "completed":
        raise SystemExit(f"execution ended {ex.state.value}: {ex.counts()}")
    latencies = []
    for s in ex.steps:
        rec = js.read_exit_record(Path(s.directory))
        if rec is None or s.name not in events:
            raise SystemExit(f"step {s.name}: no exit record or no completed event")
        latencies.append(events[s.name] - rec.time)
    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        stamp, _, args = line.partition(" ")
        calls.append((float(stamp.replace(",", ".")), args))
    during = [t for t, _ in calls if t0 <= t <= t1]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    return {
        "wall_s": wall,
        "latencies_s": latencies,
        "qstat_calls": len(during),
        "qstat_calls_per_s": len(during) / (t1 - t0),
        "qstat_commands": sorted({a for _, a in calls}),
        "qstat_gap_median_s": statistics.median(gaps) if gaps else None,
        "poll_interval_s": interval,
        "calls_per_poll": len(during) / max(1, math.ceil((t1 - t0) / interval)),
    }


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def need_sge() -> dict[str, Any]:
    """all.q's slots (``qstat -g c``); exits with what to do when Grid Engine is not usable."""
    if not os.environ.get("SGE_ROOT") or shutil.which("qstat") is None:
        raise SystemExit(
            "SGE_ROOT is unset or qstat is not on PATH; start the project's Grid Engine with "
            'eval "$(bash scripts/sge/start-sge.sh)"'
        )
    p = subprocess.run(["qstat", "-g", "c"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise SystemExit(f"qstat -g c failed: {(p.stdout + p.stderr).strip()}")
    for line in p.stdout.splitlines():
        f = line.split()
        if f and f[0] == QUEUE and len(f) >= 6:
            mine = subprocess.run(["qstat"], capture_output=True, text=True, timeout=30).stdout
            return {
                "queue": QUEUE,
                "slots_total": int(f[5]),
                "slots_available": int(f[4]),
                "jobs_in_queue_at_start": max(0, len(mine.splitlines()) - 2),
            }
    raise SystemExit(f"queue {QUEUE} is not in `qstat -g c`:\n{p.stdout}")


def main() -> None:
    p = c.parser(__doc__.split("\n")[0], n=100)
    p.add_argument(
        "--poll", type=float, default=1.0, help="throughput polling interval, s (default 1)"
    )
    p.add_argument("--variants", default="stax,qsub", help="throughput variants (comma-separated)")
    p.add_argument(
        "--latency-n", type=int, default=12, help="latency steps per repeat (0: skip; default 12)"
    )
    p.add_argument("--run", default="sleep 1", help="each latency step's script (default sleep 1)")
    a = p.parse_args()
    if a.child == "latency":
        c.emit(child_latency(Path(a.dir), a.n, a.run))
        return
    if a.child:
        c.emit({"stax": child_stax, "qsub": child_qsub}[a.child](Path(a.dir), a.n, a.poll))
        return

    info = need_sge()
    load0 = os.getloadavg()
    variants = [v for v in a.variants.split(",") if v]
    print(
        f"SGE throughput: {a.n} trivial jobs, poll every {a.poll:g} s, {a.repeat} repeat(s); "
        f"{info['queue']}: {info['slots_available']} of {info['slots_total']} slots free, "
        f"{info['jobs_in_queue_at_start']} jobs of this user queued at start; "
        f"load average {load0[0]:.2f}"
    )
    runs = c.interleaved(
        __file__,
        variants,
        a.repeat,
        ["--n", str(a.n), "--poll", str(a.poll)],
        timeout=a.timeout,
        keep=a.keep,
        tmpdir=a.tmpdir,
    )
    print()
    result: dict[str, Any] = {
        "benchmark": "sge_throughput",
        "machine": c.machine(),
        "sge": info,
        "load_average_start": load0,
        "n": a.n,
        "repeat": a.repeat,
        "tmpdir": c.filesystem(a.tmpdir),
        "poll_interval": a.poll,
        "runs": runs,
        "ratio_target": RATIO_TARGET,
    }
    for v in variants:
        s = c.summary(r["wall_s"] for r in runs[v])
        result.setdefault("wall_s", {})[v] = s
        print(f"  {v:<5} wall {c.fmt(s, ' s')}; {a.n / s['median']:.1f} jobs/s")
    if "stax" in variants and "qsub" in variants:
        r = c.summary(c.ratios(runs, "stax", "qsub"))
        result["ratio_stax_qsub"] = r
        print(f"jupyter_stax / qsub loop = {c.fmt(r)}  [{c.verdict(r['median'], RATIO_TARGET)}]")
    if "stax" in variants:
        cs = c.summary(r["cpu_per_job_ms"] for r in runs["stax"])
        result["cpu_per_job_ms"] = {"stax": cs}
        print(f"process CPU per step, jupyter_stax: {c.fmt(cs, ' ms')}")
    result["background_cpus"] = c.print_background(runs)

    if a.latency_n > 0:
        print(f"\nSGE latency: {a.latency_n} x {a.run!r}, poll_interval unset (engine default)")
        lat_runs = c.interleaved(
            __file__,
            ["latency"],
            a.repeat,
            ["--n", str(a.latency_n), "--run", a.run],
            timeout=a.timeout,
            keep=a.keep,
            tmpdir=a.tmpdir,
        )["latency"]
        lat = [x for r in lat_runs for x in r["latencies_s"]]
        lat_s = {
            "median": statistics.median(lat),
            "p90": pct(lat, 0.9),
            "max": max(lat),
            "min": min(lat),
            "n": len(lat),
        }
        rate = c.summary(r["qstat_calls_per_s"] for r in lat_runs)
        per_poll = c.summary(r["calls_per_poll"] for r in lat_runs)
        commands = sorted({cmd for r in lat_runs for cmd in r["qstat_commands"]})
        print(
            f"end of job -> committed final state: median {lat_s['median']:.2f} s, "
            f"p90 {lat_s['p90']:.2f} s, max {lat_s['max']:.2f} s (min {lat_s['min']:.2f} s; "
            f"{lat_s['n']} steps)  "
            f"[{c.verdict(lat_s['median'], LATENCY_MEDIAN_TARGET_S)}]"
        )
        print(
            f"qstat: {c.fmt(rate, '/s', 3)}; per poll interval "
            f"({lat_runs[0]['poll_interval_s']:g} s) {c.fmt(per_poll)}; distinct commands: "
            + "; ".join(f"qstat {cmd}" for cmd in commands)
        )
        result.update(
            latency_runs=lat_runs,
            latency_n=a.latency_n,
            latency_run=a.run,
            latency_s=lat_s,
            latency_median_target_s=LATENCY_MEDIAN_TARGET_S,
            qstat_calls_per_s=rate,
            qstat_calls_per_poll=per_poll,
            qstat_commands=commands,
        )
    result["load_average_end"] = os.getloadavg()
    c.write_json(a.json, result)


if __name__ == "__main__":
    main()
