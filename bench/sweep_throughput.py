"""Sweep throughput on Slurm: N trivial instances end to end through a jupyter_stax sweep vs a
raw ``sbatch --array`` + ``squeue`` loop, submitit's ``map_array`` and Parsl's
HighThroughputExecutor with its SlurmProvider (issue 15).

Variants (each run in a fresh process, interleaved across repeats; all poll every P seconds):

* ``stax``: one workflow with one sweep step of N instances (``run: true``, ``pack: auto`` or
  ``--pack``) on ``Cluster(scheduler="slurm", queue="debug", poll_interval=P)``; timed from
  ``submit()`` until ``wait()`` returns the final execution. A PATH shim logs every ``sbatch``
  and ``squeue`` call: printed are the submissions and the ``squeue`` calls per poll interval;
* ``array``: ``bash``: ``sbatch --array=0-(M-1) --wrap true`` per MaxArraySize chunk (one task
  per element: what an array without packing costs), then ``squeue -j <ids>`` every P seconds
  until none is left;
* ``submitit``: ``AutoExecutor.map_array`` of a no-op Python function over N values (chunks of
  MaxArraySize), then every ``result()`` (submitit's own polling);
* ``parsl``: a ``HighThroughputExecutor`` on a ``SlurmProvider`` (one block of one node,
  ``--peer-workers`` workers), N no-op ``python_app`` calls, then every ``result()``; timed from
  loading the config (the pilot job's queueing and start-up count, as the array's do).

``--scale N`` (default 100,000; 0: skip) adds the scale check: one sweep of N instances held
by Slurm (``--begin now+1h``: tracked, never started) on a cluster polled every 2 s, then for
``--scale-window`` seconds the engine process's CPU (all its threads: PSI/J's polling, the
tracker's passes, housekeeping) as a share of one core, its RSS, and the time of the reads the
status surfaces make (the store's execution list and the execution with its sweep summary). It
measures what tracking costs at rest; the throughput run above measures it moving.

``--own-slurm CPUS`` runs everything on a PRIVATE Slurm of 2 nodes advertising CPUS CPUs each
(``scripts/slurm/start-slurm.sh`` with its own state directory, ``--own-slurm-base``, ports
7817/7818 and its own munged; 6917/6918 are the user Slurm's of binder/start and demo.sh),
started for the invocation and stopped after it: the issue's "Slurm
advertising 2 x 16 CPUs" without restarting the shared test Slurm (others use it). The CPUs are
advertised, not real: on a 2-core machine 16 CPUs only let more instances, elements and workers
share the same 2 cores.

The peers run in their own virtual environment (``--peer-python``; e.g. ``python3 -m venv
/tmp/sweeps-bench-venv && /tmp/sweeps-bench-venv/bin/pip install submitit parsl``): they are
not dependencies of jupyter_stax. ``--peer-n`` sets their N (default: N; submitit starts one
Python per element and is slow at 10,000 on 2 cores; a raw array of one task per element
runs at a few elements/s here). Rates (instances/s) are compared, per
repeat, as ratios to the ``stax`` run of the same repeat.

    python bench/sweep_throughput.py --n 10000 --repeat 1 --poll 1 --tmpdir /dev/shm \\
        --peer-python /tmp/sweeps-bench-venv/bin/python --json /tmp/sweep.json
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

TARGET_RATE = 500.0  # instances/s
TARGET_SUBMISSIONS_1000 = 2
QUEUE = "debug"
WALLTIME = "00:10:00"
PEERS = ("array", "submitit", "parsl")


def _shim(d: Path, names: tuple[str, ...]) -> Path:
    """``d/shim/<name>`` for each command: logs time and arguments, then runs the real one."""
    shim = d / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    log = d / "shim.log"
    for name in names:
        real = shutil.which(name)
        if real is None:
            raise SystemExit(f"{name} is not on PATH")
        (shim / name).write_text(
            f'#!/bin/bash\necho "$(date +%s.%N) {name} $*" >> {log}\nexec {real} "$@"\n'
        )
        (shim / name).chmod(0o755)
    os.environ["PATH"] = f"{shim}{os.pathsep}{os.environ['PATH']}"
    return log


def _calls(log: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out[parts[1]] = out.get(parts[1], 0) + 1
    return out


def max_array_size() -> int:
    out = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
    ).stdout
    for line in out.splitlines():
        k, _, v = line.partition("=")
        if k.strip() == "MaxArraySize":
            return int(v)
    return 1001


# ---------------------------------------------------------------------- children
def child_stax(d: Path, n: int, poll: float, pack: str) -> dict[str, Any]:
    import psij.executors.batch.slurm  # noqa: F401  (one-time import cost outside the timing)

    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.core.models import Cluster
    from jupyter_stax.engine.engine import Engine

    log = _shim(d, ("sbatch", "squeue"))
    step: dict[str, Any] = {
        "name": "sim",
        "sweep": {"i": {"range": [0, n]}},
        "run": "true",
        "expected_seconds": 0.01,  # trivial instances: pack: auto packs many per element
    }
    if pack != "auto":
        step["pack"] = int(pack)
    wf = {"name": "bench", "steps": [step]}

    async def main() -> dict[str, Any]:
        cluster = Cluster(
            name="slurm",
            scheduler="slurm",
            queue=QUEUE,
            walltime=WALLTIME,
            poll_interval=poll,
            work_dir=str(d / "runs"),
        )
        async with Engine(
            store=d / "state" / "stax.sqlite", clusters=ClusterRegistry([cluster])
        ) as eng:
            with c.Meter() as m:
                ex = await eng.submit(wf, cluster="slurm")
                ex = await eng.wait(ex.id)
        sim = ex.step("sim")
        if ex.state.value != "completed":
            raise SystemExit(f"execution ended {ex.state.value}: {sim.reason}")
        r = m.result(n)
        calls = _calls(log)
        r.update(
            sbatch_calls=calls.get("sbatch", 0),
            squeue_calls=calls.get("squeue", 0),
            squeue_per_poll=calls.get("squeue", 0) / max(1.0, r["wall_s"] / poll),
            pack=sim.sweep.pack if sim.sweep else None,
            elements=sim.sweep.elements if sim.sweep else None,
        )
        return r

    return asyncio.run(main())


ARRAY_LOOP = r"""
set -u
N=$1 P=$2 DIR=$3 M=$4
ids=()
for ((off = 0; off < N; off += M)); do
  size=$(( N - off < M ? N - off : M ))
  id=$(sbatch --parsable -p {queue} -t {walltime} -J bench-array -D "$DIR" \
       -o /dev/null -e /dev/null --array=0-$((size - 1)) --wrap true) || exit 1
  ids+=("${{id%%;*}}")
done
list=$(IFS=,; echo "${{ids[*]}}")
while [ -n "$(squeue -h -t PD,R,CG -j "$list" -o %i)" ]; do sleep "$P"; done
"""


def child_array(d: Path, n: int, poll: float, _pack: str) -> dict[str, Any]:
    out = d / "runs"
    out.mkdir(parents=True)
    script = ARRAY_LOOP.format(queue=QUEUE, walltime=WALLTIME)
    m_size = max_array_size()
    with c.Meter() as m:
        p = subprocess.run(
            ["bash", "-c", script, "bash", str(n), str(poll), str(out), str(m_size)]
        )
    if p.returncode != 0:
        raise SystemExit(f"sbatch --array loop failed with exit code {p.returncode}")
    r = m.result(n)
    r.pop("cpu_per_job_ms")
    return r


def _noop(x: int) -> int:
    return x


def child_submitit(d: Path, n: int, poll: float, _pack: str) -> dict[str, Any]:
    import submitit

    m_size = max_array_size()
    ex = submitit.AutoExecutor(folder=d / "submitit", cluster="slurm")
    ex.update_parameters(slurm_partition=QUEUE, timeout_min=10, slurm_array_parallelism=m_size)
    with c.Meter() as m:
        jobs = []
        for off in range(0, n, m_size):
            jobs += ex.map_array(_noop, range(off, min(n, off + m_size)))
        got = [j.result() for j in jobs]
    if got != list(range(n)):
        raise SystemExit("submitit returned wrong results")
    r = m.result(n)
    r.pop("cpu_per_job_ms")
    return r


def child_parsl(d: Path, n: int, poll: float, _pack: str, workers: int = 4) -> dict[str, Any]:
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SingleNodeLauncher
    from parsl.providers import SlurmProvider

    @parsl.python_app
    def noop(x: int) -> int:
        return x

    # parsl's interchange and worker pool are scripts of its environment
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"

    with c.Meter() as m:
        cfg = Config(
            executors=[
                HighThroughputExecutor(
                    label="htex",
                    max_workers_per_node=workers,
                    address="127.0.0.1",
                    provider=SlurmProvider(
                        partition=QUEUE,
                        nodes_per_block=1,
                        init_blocks=1,
                        max_blocks=1,
                        walltime=WALLTIME,
                        launcher=SingleNodeLauncher(),
                        worker_init=f"export PATH={os.path.dirname(sys.executable)}:$PATH",
                    ),
                )
            ],
            run_dir=str(d / "parsl"),
            strategy="none",
        )
        dfk = parsl.load(cfg)
        futures = [noop(i) for i in range(n)]
        got = [f.result() for f in futures]
    dfk.cleanup()
    if got != list(range(n)):
        raise SystemExit("parsl returned wrong results")
    r = m.result(n)
    r.pop("cpu_per_job_ms")
    return r


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_scale(d: Path, n: int, poll: float, _pack: str, window: float = 30.0) -> dict[str, Any]:
    """The scale check (see the module docstring): N held instances tracked."""
    import resource
    import time

    import psij.executors.batch.slurm  # noqa: F401

    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.core.models import Cluster, StepState
    from jupyter_stax.engine.engine import Engine

    wf = {
        "name": "scale",
        "steps": [
            {"name": "sim", "sweep": {"i": {"range": [0, n]}}, "run": "true",
             "expected_seconds": 5}
        ],
    }

    async def main() -> dict[str, Any]:
        cluster = Cluster(
            name="slurm", scheduler="slurm", queue=QUEUE, walltime=WALLTIME,
            poll_interval=2.0, work_dir=str(d / "runs"),
            custom_attributes={"slurm.begin": "now+3600"},
        )
        rss0 = _rss_mb()
        async with Engine(
            store=d / "state" / "stax.sqlite", clusters=ClusterRegistry([cluster])
        ) as eng:
            t0 = time.perf_counter()
            ex = await eng.submit(wf, cluster="slurm")
            while eng.get(ex.id).step("sim").state is not StepState.QUEUED:
                await asyncio.sleep(0.2)
            submit_s = time.perf_counter() - t0
            await asyncio.sleep(2 * 2.0)  # settle: the first polls and summary writes
            cpu0, w0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(window)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - w0
            rss = _rss_mb()
            reads = []
            for _ in range(20):
                r0 = time.perf_counter()
                eng.store.list_executions(limit=50)
                r1 = time.perf_counter()
                got = eng.get(ex.id)
                reads.append((r1 - r0, time.perf_counter() - r1))
            sim = got.step("sim")
            await eng.cancel(ex.id)
            await eng.wait(ex.id, timeout=120)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "instances": n,
            "elements": sim.sweep.elements if sim.sweep else None,
            "submit_s": submit_s,
            "window_s": wall,
            "wall_s": wall,
            "cpu_share": cpu / wall,
            "rss_mb": rss,
            "rss_before_mb": rss0,
            "rss_peak_mb": peak,
            "list_ms_p50": 1000 * sorted(a for a, _ in reads)[len(reads) // 2],
            "get_ms_p50": 1000 * sorted(b for _, b in reads)[len(reads) // 2],
        }

    return asyncio.run(main())


CHILDREN = {
    "scale": child_scale,
    "stax": child_stax,
    "array": child_array,
    "submitit": child_submitit,
    "parsl": child_parsl,
}


REPO = Path(__file__).resolve().parent.parent


def start_own_slurm(cpus: int, base: str) -> dict[str, str]:
    """A private 2-node Slurm (see the module docstring); returns the environment of its
    clients (SLURM_CONF)."""
    env = {
        **os.environ, "SLURM_BASE": base, "SLURMCTLD_PORT": "7817", "SLURMD_PORT": "7818",
        "SLURM_NODES": "2", "SLURM_CPUS": str(cpus),
    }
    p = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm" / "start-slurm.sh")], env=env,
        capture_output=True, text=True, timeout=300,
    )
    if p.returncode != 0:
        raise SystemExit(f"the private Slurm did not start:\n{p.stderr[-2000:]}")
    return {"SLURM_CONF": f"{base}/etc/slurm.conf"}


def stop_own_slurm(base: str) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm" / "stop-slurm.sh")],
        env={**os.environ, "SLURM_BASE": base}, capture_output=True, timeout=300,
    )


def _n_of(text: str) -> dict[str, int]:
    return {k: int(v) for k, _, v in (x.partition("=") for x in text.split(",") if x)}


def main() -> None:
    p = c.parser(__doc__.split("\n")[0], n=10_000)
    p.add_argument("--poll", type=float, default=1.0, help="polling interval, s (default 1)")
    p.add_argument("--pack", default="auto", help="stax: auto or N instances per element")
    p.add_argument("--variants", default="stax,array,submitit,parsl", help="comma-separated")
    p.add_argument("--peer-python", default=None, help="python of the peers' environment")
    p.add_argument("--peer-n", type=int, default=None, help="N of the peers (default N)")
    p.add_argument(
        "--n-of", default="", metavar="V=N,...", help="N of single variants, e.g. submitit=500"
    )
    p.add_argument("--scale", type=int, default=100_000,
                   help="instances of the scale check (0: skip it; default 100,000)")
    p.add_argument("--scale-window", type=float, default=30.0,
                   help="seconds the scale check measures (default 30)")
    p.add_argument("--own-slurm", type=int, default=0, metavar="CPUS",
                   help="run on a private 2-node Slurm advertising CPUS CPUs per node")
    p.add_argument("--own-slurm-base", default="/tmp/stax-bench-slurm",
                   help="state directory of the private Slurm (default /tmp/stax-bench-slurm)")
    a = p.parse_args()
    if a.child == "scale":
        c.emit(child_scale(Path(a.dir), a.scale, a.poll, a.pack, a.scale_window))
        return
    if a.child:
        n = a.peer_n if a.child in PEERS and a.peer_n else a.n
        n = _n_of(a.n_of).get(a.child, n)
        if a.child in ("submitit", "parsl") and a.peer_python and sys.executable != a.peer_python:
            os.execv(a.peer_python, [a.peer_python, __file__, *sys.argv[1:]])
        c.emit(CHILDREN[a.child](Path(a.dir), n, a.poll, a.pack))
        return

    if a.own_slurm:
        os.environ.update(start_own_slurm(a.own_slurm, a.own_slurm_base))
        try:
            _main(a)
        finally:
            stop_own_slurm(a.own_slurm_base)
        return
    _main(a)


def _main(a: Any) -> None:
    c.need_slurm()
    variants = [v for v in a.variants.split(",") if v]
    for v in variants:
        if v in ("submitit", "parsl") and not a.peer_python:
            raise SystemExit(f"{v} needs --peer-python (a venv with submitit and parsl)")
    cluster = c.slurm_cluster_info()
    print(f"Machine load average at start: {os.getloadavg()[0]:.2f} (1 min)")
    print(
        f"Sweep throughput: {a.n} trivial instances (peers: {a.peer_n or a.n}; "
        f"{a.n_of or 'no other N'}), poll every "
        f"{a.poll:g} s, {a.repeat} repeat(s); cluster: {cluster.get('nodes')} nodes, "
        f"{cluster.get('cpus')} CPUs, MaxArraySize {max_array_size()}, "
        f"{cluster.get('jobs_in_queue_at_start')} jobs queued by others at start"
    )
    args = ["--n", str(a.n), "--poll", str(a.poll), "--pack", a.pack]
    if a.peer_python:
        args += ["--peer-python", a.peer_python]
    if a.peer_n:
        args += ["--peer-n", str(a.peer_n)]
    if a.n_of:
        args += ["--n-of", a.n_of]
    start_load = os.getloadavg()
    runs = c.interleaved(
        __file__, variants, a.repeat, args, timeout=a.timeout, keep=a.keep, tmpdir=a.tmpdir
    )
    print()
    result: dict[str, Any] = {
        "benchmark": "sweep_throughput",
        "machine": c.machine(),
        "slurm": cluster,
        "n": a.n,
        "peer_n": a.peer_n or a.n,
        "repeat": a.repeat,
        "pack": a.pack,
        "tmpdir": c.filesystem(a.tmpdir),
        "poll_interval": a.poll,
        "own_slurm_cpus": a.own_slurm or None,
        "loadavg_start": start_load,
        "runs": runs,
    }
    for v in variants:
        s = c.summary(r["jobs_per_s"] for r in runs[v])
        result.setdefault("rate", {})[v] = s
        print(f"  {v:<9} {c.fmt(s, ' instances/s', 1)}")
    if "stax" in variants:
        s = result["rate"]["stax"]
        print(f"jupyter_stax rate: {s['median']:.1f} instances/s  "
              f"[{c.verdict(s['median'], TARGET_RATE, lower_is_better=False)}]")
        for v in variants:
            if v != "stax":
                r = c.summary(
                    a_["jobs_per_s"] / b["jobs_per_s"]
                    for a_, b in zip(runs["stax"], runs[v], strict=True)
                )
                result.setdefault("ratio_rate_stax_over", {})[v] = r
                print(f"  rate jupyter_stax / {v:<9} = {c.fmt(r)}")
        st = runs["stax"]
        subs = c.summary(r["sbatch_calls"] for r in st)
        per_poll = c.summary(r["squeue_per_poll"] for r in st)
        result["stax_calls"] = {"sbatch": subs, "squeue_per_poll": per_poll}
        print(
            f"jupyter_stax: sbatch calls {c.fmt(subs, '', 0)}; squeue calls per poll "
            f"{c.fmt(per_poll)}; pack {st[0].get('pack')}, elements {st[0].get('elements')}"
            + (
                f"  [submissions for {a.n}: "
                f"{c.verdict(subs['max'], TARGET_SUBMISSIONS_1000)}]"
                if a.n <= 1000
                else ""
            )
        )
    result["background_cpus"] = c.print_background(runs)
    if a.scale:
        sc = c.run_child(
            __file__, "scale",
            ["--scale", str(a.scale), "--scale-window", str(a.scale_window)],
            timeout=a.timeout, keep=a.keep, tmpdir=a.tmpdir,
        )
        result["scale"] = sc
        print(
            f"Scale: {sc['instances']:,} instances tracked ({sc['elements']} elements, held), "
            f"2 s poll: engine CPU {100 * sc['cpu_share']:.1f} % of a core "
            f"[{c.verdict(100 * sc['cpu_share'], 5)}], RSS {sc['rss_mb']:.0f} MB "
            f"(peak {sc['rss_peak_mb']:.0f} MB) [{c.verdict(sc['rss_mb'], 300)}]; store reads: "
            f"list {sc['list_ms_p50']:.1f} ms, execution {sc['get_ms_p50']:.1f} ms "
            f"[{c.verdict(max(sc['list_ms_p50'], sc['get_ms_p50']), 100)}]; submission of the "
            f"{sc['instances']:,} took {sc['submit_s']:.1f} s"
        )
    result["loadavg_end"] = os.getloadavg()
    print(f"Machine load average at the end: {result['loadavg_end'][0]:.2f} (1 min)")
    c.write_json(a.json, result)



if __name__ == "__main__":
    main()
