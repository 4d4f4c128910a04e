"""Throughput on Slurm: N trivial jobs through jupyter_stax vs PSI/J directly vs a bash loop of
``sbatch --wrap true``.

Variants (each run in a fresh process, interleaved across repeats; all poll every P seconds):

* ``stax``: one workflow of N independent steps (``run: true``) on
  ``Cluster(name="slurm", scheduler="slurm", queue="debug", walltime="00:10:00",
  poll_interval=P)``; timed from ``submit()`` until ``wait()`` returns the final execution;
* ``psij``: N jobs (``/bin/bash -c true``, own directory, stdout, stderr, job name, queue,
  duration) submitted in a loop to PSI/J's ``SlurmJobExecutor`` (``queue_polling_interval=P``),
  then waited for;
* ``sbatch``: ``bash``: a loop of ``sbatch --parsable --wrap true``, then ``squeue -h -t PD,R,CG
  -j <ids>`` every P seconds until it lists none of them.

Reported: wall ratios stax/psij (target <= 1.1) and stax/sbatch, medians over the repeats.
Needs SLURM_CONF (``scripts/slurm/start-slurm.sh``); other users' jobs on the cluster slow every
variant alike, which is why the variants are interleaved and only ratios are compared.

    python bench/slurm_throughput.py --n 200 --repeat 3 --poll 1 --json /tmp/slurm.json
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

PSIJ_TARGET = 1.1
QUEUE = "debug"
WALLTIME = "00:10:00"


def child_stax(d: Path, n: int, poll: float) -> dict[str, Any]:
    import psij.executors.batch.slurm  # noqa: F401  (one-time import cost outside the timing)

    from jupyter_stax.core.models import Cluster

    cluster = Cluster(
        name="slurm",
        scheduler="slurm",
        queue=QUEUE,
        walltime=WALLTIME,
        poll_interval=poll,
        work_dir=str(d / "runs"),
    )
    return c.stax_throughput(d, cluster, n)


def child_psij(d: Path, n: int, poll: float) -> dict[str, Any]:
    import psij
    from psij.executors.batch.slurm import SlurmExecutorConfig

    runs = d / "runs"
    with c.Meter() as m:
        ex = psij.JobExecutor.get_instance(
            "slurm",
            config=SlurmExecutorConfig(
                work_directory=d / "psij",
                queue_polling_interval=poll,  # type: ignore[arg-type]
                initial_queue_polling_delay=min(poll, 0.5),  # type: ignore[arg-type]
            ),
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
                attributes=psij.JobAttributes(
                    queue_name=QUEUE,
                    duration=timedelta(minutes=10),
                    custom_attributes={"slurm.job-name": f"bench-psij-{i}"},
                ),
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


SBATCH_LOOP = r"""
set -u
N=$1 P=$2 DIR=$3
ids=()
for i in $(seq "$N"); do
  id=$(sbatch --parsable -p {queue} -t {walltime} -J "bench-sbatch-$i" -D "$DIR" \
       -o "$DIR/%j.out" -e "$DIR/%j.err" --wrap true) || exit 1
  ids+=("${{id%%;*}}")
done
list=$(IFS=,; echo "${{ids[*]}}")
while [ -n "$(squeue -h -t PD,R,CG -j "$list" -o %i)" ]; do sleep "$P"; done
"""


def child_sbatch(d: Path, n: int, poll: float) -> dict[str, Any]:
    script = SBATCH_LOOP.format(queue=QUEUE, walltime=WALLTIME)
    return c.shell_loop(d, script, n, poll, "sbatch loop")


CHILDREN = {"stax": child_stax, "psij": child_psij, "sbatch": child_sbatch}


def main() -> None:
    p = c.parser(__doc__.split("\n")[0], n=200)
    p.add_argument(
        "--poll", type=float, default=1.0, help="scheduler polling interval, s (default 1)"
    )
    p.add_argument("--variants", default="stax,psij,sbatch", help="comma-separated subset to run")
    a = p.parse_args()
    if a.child:
        c.emit(CHILDREN[a.child](Path(a.dir), a.n, a.poll))
        return

    c.need_slurm()
    variants = [v for v in a.variants.split(",") if v]
    cluster = c.slurm_cluster_info()
    print(
        f"Slurm throughput: {a.n} trivial jobs, poll every {a.poll:g} s, {a.repeat} repeat(s); "
        f"cluster: {cluster.get('nodes')} nodes, {cluster.get('cpus')} CPUs, "
        f"{cluster.get('jobs_in_queue_at_start')} jobs queued by others at start"
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
        "benchmark": "slurm_throughput",
        "machine": c.machine(),
        "slurm": cluster,
        "slurm_conf": os.environ.get("SLURM_CONF"),
        "n": a.n,
        "repeat": a.repeat,
        "tmpdir": c.filesystem(a.tmpdir),
        "poll_interval": a.poll,
        "runs": runs,
        "psij_target": PSIJ_TARGET,
    }
    for v in variants:
        s = c.summary(r["wall_s"] for r in runs[v])
        result.setdefault("wall_s", {})[v] = s
        print(f"  {v:<7} wall {c.fmt(s, ' s')}; {a.n / s['median']:.1f} jobs/s")
    if "stax" in variants and "psij" in variants:
        r = c.summary(c.ratios(runs, "stax", "psij"))
        result["ratio_stax_psij"] = r
        print(f"jupyter_stax / PSI/J direct = {c.fmt(r)}  [{c.verdict(r['median'], PSIJ_TARGET)}]")
    if "stax" in variants and "sbatch" in variants:
        r = c.summary(c.ratios(runs, "stax", "sbatch"))
        result["ratio_stax_sbatch"] = r
        print(f"jupyter_stax / sbatch loop  = {c.fmt(r)}")
    if "stax" in variants and "psij" in variants:
        cs = c.summary(r["cpu_per_job_ms"] for r in runs["stax"])
        cp = c.summary(r["cpu_per_job_ms"] for r in runs["psij"])
        result["cpu_per_job_ms"] = {"stax": cs, "psij": cp}
        print(f"process CPU per job: jupyter_stax {c.fmt(cs, ' ms')}; PSI/J {c.fmt(cp, ' ms')}")
    result["background_cpus"] = c.print_background(runs)
    c.write_json(a.json, result)


if __name__ == "__main__":
    main()
