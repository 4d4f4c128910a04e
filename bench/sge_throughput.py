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

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

RATIO_TARGET = 1.1
LATENCY_MEDIAN_TARGET_S = 1.5
QUEUE = "all.q"
WALLTIME = "00:10:00"


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

    return c.stax_throughput(d, cluster(d, poll), n)


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
    script = QSUB_LOOP.format(queue=QUEUE, walltime=WALLTIME)
    return c.shell_loop(d, script, n, poll, "qsub loop")


def child_latency(d: Path, n: int, run: str) -> dict[str, Any]:
    import jupyter_stax.psij_sge  # noqa: F401  (one-time import cost outside the timing)

    return c.latency_run(d, cluster(d, None), n, run, "qstat")


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
        lat_s = c.latency_summary(lat)
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
