"""Function tasks (``@stax.task``): how long a call keeps the notebook (target: < 5 ms median
over 100 calls of one batch), and N trivial tasks submit-to-all-results against the same number
of bash steps (``true``) in one workflow, on the same cluster (target on local: <= 1.3x), the
two interleaved over ``--rounds`` rounds (medians), with the CPU seconds each side cost (this
process, the engine daemon and its jobs, the warm task workers).

Both sides run in this process on an isolated store with its background engine (as a kernel
without a Jupyter server does). The tasks' side includes reading every result back; the one
Python probe of the cluster is paid before and reported apart.

``--parts ROUNDS``: where one trivial task's time goes outside the engine (python start with
and without site, importing cloudpickle, the task's step script before and now, with and without
the warm worker, the runner's own work); ``--handover N``: the CPU of the job's bash, the
worker and its children per task (N hand-overs one after the other; the children that run on
counted too). ``--submitit DIR``: 50
tasks on Slurm against submitit (``pip install --target DIR submitit``, never a dependency of
the project): calls vs its per-call ``submit``, ``.map`` vs its ``map_array`` (target <= 1.1x).

    python bench/function_tasks.py --n 100 --rounds 3 --cluster local
    python bench/function_tasks.py --parts 30
    python bench/function_tasks.py --handover 300
    python bench/function_tasks.py --cluster slurm --n 50 --submitit /tmp/submitit
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu_seconds(markers: tuple[str, ...]) -> float:
    return sum(_cpu_parts(markers).values())


def _cpu_parts(markers: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds (user + system, the reaped children's included) of this process and of
    every process whose command line contains one of ``markers`` (the engine daemon of this
    store, the warm task workers): what a run costs, whatever else loads the machine."""
    import resource

    tick = os.sysconf("SC_CLK_TCK")
    parts: dict[str, float] = {}
    r = resource.getrusage(resource.RUSAGE_SELF)
    parts["kernel (this process)"] = r.ru_utime + r.ru_stime
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts["its children"] = r.ru_utime + r.ru_stime
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if not any(m in cmd for m in markers):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        what = "task workers" if markers[-1] in cmd else "engine"
        own = sum(int(x) for x in fields[11:13]) / tick  # utime stime
        kids = sum(int(x) for x in fields[13:15]) / tick  # cutime cstime: reaped children
        parts[f"{what} itself"] = parts.get(f"{what} itself", 0.0) + own
        parts[f"{what}'s jobs"] = parts.get(f"{what}'s jobs", 0.0) + kids
    return parts


def _ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:6.1f} ms, min {min(xs) * 1000:6.1f} ms"


def parts(reps: int) -> None:
    """Where a trivial task's time goes on this machine, outside the engine: processes started
    one after the other, the cases interleaved, ``reps`` rounds (wall time of each)."""
    import subprocess
    import sysconfig

    import cloudpickle

    from jupyter_stax.core.functask import call_header, render_task_step, task_source
    from jupyter_stax.core.pystep import render_python_step

    py = sys.executable
    d = Path(tempfile.mkdtemp(prefix="stax-bench-ftparts-"))

    def inc(x: int) -> int:
        return x + 1

    src = task_source(call_header("inc", None) + cloudpickle.dumps((inc, [((1,), {})])))
    (d / "plain.sh").write_text(render_python_step(src))  # before: python3 with site
    (d / "fast.sh").write_text(render_task_step(src))
    env = {**os.environ, "STAX_STEP_DIR": str(d), "STAX_STEP": "inc", "STAX_PYTHON": py}
    warm = {**env, "STAX_TASK_WORKER": "1"}
    sp = sysconfig.get_paths()["purelib"]
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "bash -c true": (["bash", "-c", "true"], env),
        "python3 -c pass (site)": ([py, "-c", "pass"], env),
        "python3 -S -c pass": ([py, "-S", "-c", "pass"], env),
        "python3 -c 'import cloudpickle'": ([py, "-c", "import cloudpickle"], env),
        "python3 -S, import cloudpickle": (
            [py, "-S", "-c", f"import sys; sys.path.append({sp!r}); import cloudpickle"], env),
        "task step before (site, runner)": (["bash", "-c", ". ./plain.sh"], env),
        "task step, no worker (python3 -S)": (["bash", "-c", ". ./fast.sh"], env),
        "task step, warm worker (bash)": (["bash", "-c", ". ./fast.sh"], warm),
    }
    subprocess.run(cases["task step, warm worker (bash)"][0], env=warm, cwd=d, check=True)
    from jupyter_stax.core.functask import _worker_source
    from jupyter_stax.core.taskworker import identity, worker_dir, worker_name

    name = worker_name(_worker_source()[1], identity(warm))
    pid_file = Path(worker_dir() or "/nonexistent") / (name + ".pid")
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:  # the first task started it
        time.sleep(0.05)
    import resource

    def children_cpu() -> float:  # the cases' process trees, and the warm workers' CPU
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        workers = _cpu_parts(("stax-taskworker-",))
        return r.ru_utime + r.ru_stime + sum(
            v for k, v in workers.items() if k.startswith("task workers"))

    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(reps):
        for k, (cmd, e) in cases.items():
            c = children_cpu()
            t = time.perf_counter()
            subprocess.run(cmd, env=e, cwd=d, check=True)
            times[k].append(time.perf_counter() - t)
            cpu[k].append(children_cpu() - c)
    # the runner's own work in this process: unpickle the call, call, pickle and write
    import base64

    ns: dict[str, object] = {}
    exec(src.rpartition("_stax_task_main(")[0], ns)
    call = src.rpartition('_stax_task_main("""\n')[2].rpartition('\n"""')[0]
    os.environ.update(STAX_STEP_DIR=str(d), STAX_STEP="inc")
    inner = []
    for _ in range(reps):
        t = time.perf_counter()
        ns["_stax_task_main"](call)  # type: ignore[operator]
        inner.append(time.perf_counter() - t)
    print(f"parts of a trivial task ({reps} rounds, interleaved; load {os.getloadavg()[0]:.1f});"
          " wall, then CPU (the process tree and the warm worker; 10 ms clock ticks)")
    for k, v in times.items():
        print(f"  {k:34s} {_ms(v)};  CPU median {statistics.median(cpu[k]) * 1000:5.1f} ms")
    print(f"  {'runner in-process (unpickle+write)':34s} {_ms(inner)}")
    print(f"  (call size {len(base64.b64decode(call))} bytes)")


def live_children(pid: int) -> str:
    """The worker's children (pids), from /proc."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().strip() or "none"
    except OSError:
        return "?"


def handover(n: int) -> None:
    """``n`` trivial tasks handed to the warm worker one after the other (the step script as
    the engine renders it, run by ``bash -c '. ./stax.step.sh'``): CPU per task of the job's
    bash (with its fork for the pipe), of the worker itself and of its forked children, with
    the minor page faults (copy-on-write) of each; against ``bash -c true``."""
    import resource
    import subprocess

    import cloudpickle

    from jupyter_stax.core.functask import (
        _worker_source,
        call_header,
        render_task_step,
        task_source,
    )
    from jupyter_stax.core.taskworker import identity, worker_dir, worker_name

    d = Path(tempfile.mkdtemp(prefix="stax-bench-handover-"))

    def inc(x: int) -> int:
        return x + 1

    src = task_source(call_header("inc", None) + cloudpickle.dumps((inc, [((1,), {})])))
    (d / "stax.step.sh").write_text(render_task_step(src))
    env = {**os.environ, "STAX_STEP_DIR": str(d), "STAX_STEP": "inc",
           "STAX_PYTHON": sys.executable, "STAX_TASK_WORKER": "1"}
    job = ["bash", "-c", ". ./stax.step.sh"]
    subprocess.run(job, env=env, cwd=d, check=True)  # starts the worker
    name = worker_name(_worker_source()[1], identity(env))
    pid_file = Path(worker_dir() or "/nonexistent") / (name + ".pid")
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int | str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()

    def worker_stat() -> tuple[float, float, int]:  # own CPU, children's CPU, children's faults
        f = stat(worker)
        cpu, faults = int(f[13]) + int(f[14]), int(f[8])  # of the children that ended
        live = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
        for c in live:  # the children that run on (reused, since this tree's warm worker)
            try:
                g = stat(c)
            except FileNotFoundError:
                continue
            cpu += int(g[11]) + int(g[12])
            faults += int(g[7])
        return (int(f[11]) + int(f[12])) / tick, cpu / tick, faults

    def kids() -> tuple[float, int]:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime, r.ru_minflt

    for _ in range(5):
        subprocess.run(job, env=env, cwd=d, check=True)
    (k0, f0), w0 = kids(), worker_stat()
    for _ in range(n):
        subprocess.run(job, env=env, cwd=d, check=True)
    (k1, f1), w1 = kids(), worker_stat()
    for _ in range(n):
        subprocess.run(["bash", "-c", "true"], env=env, cwd=d, check=True)
    k2, _ = kids()
    print(f"{n} hand-overs one after the other (load {os.getloadavg()[0]:.1f}), CPU a task:")
    print(f"  the job's bash {(k1 - k0) / n * 1000:.2f} ms ({(f1 - f0) / n:.0f} faults); "
          f"bash -c true {(k2 - k1) / n * 1000:.2f} ms")
    print(f"  the worker {(w1[0] - w0[0]) / n * 1000:.2f} ms, its forked child "
          f"{(w1[1] - w0[1]) / n * 1000:.2f} ms ({(w1[2] - w0[2]) / n:.0f} faults)")
    print(f"  children of the worker now: {live_children(worker)}")


def vs_submitit(a: argparse.Namespace, d: Path) -> None:
    """N trivial tasks on Slurm, submit to all results, against submitit on the same Slurm
    (imported from ``--submitit DIR``, a ``pip install --target DIR submitit``: never a
    dependency of the project): jupyter_stax's calls (one job each) vs submitit's per-call
    ``executor.submit``, and ``.map`` (``pack=1``: one array element per task) vs submitit's
    ``map_array``; the four interleaved, their order rotating, ``--rounds`` rounds."""
    import jupyter_stax as stax
    from jupyter_stax.kernel.probe import ensure_python

    sys.path.insert(0, a.submitit)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [a.submitit, *filter(None, [os.environ.get("PYTHONPATH")])]
    )  # the jobs import submitit from there (Slurm passes the environment on)
    import logging

    import submitit  # type: ignore[import-not-found]

    # without Slurm accounting (the test Slurm) it warns on each sacct; it reads its files then
    logging.getLogger("submitit").setLevel(logging.ERROR)

    @stax.task(cluster=a.cluster, time="00:05:00")
    def inc(x: int) -> int:
        return x + 1

    @stax.task(cluster=a.cluster, time="00:05:00", pack=1, name="inc_map")
    def inc_map(x: int) -> int:
        return x + 1

    def plain_inc(x: int) -> int:
        return x + 1

    svc = stax.connect()
    ensure_python(svc, a.cluster, None)
    executor = submitit.AutoExecutor(folder=str(d / "submitit" / "%j"), cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_partition=a.partition)
    want = [i + 1 for i in range(a.n)]

    def stax_calls() -> None:
        with stax.batch():
            futs = [inc(i) for i in range(a.n)]
        assert stax.gather(futs, timeout=1800) == want

    def stax_map() -> None:
        with stax.batch():
            futs = inc_map.map(range(a.n))
        assert stax.gather(futs, timeout=1800) == want

    def submitit_calls() -> None:
        jobs = [executor.submit(plain_inc, i) for i in range(a.n)]
        assert [j.result() for j in jobs] == want

    def submitit_map_array() -> None:
        jobs = executor.map_array(plain_inc, range(a.n))
        assert [j.result() for j in jobs] == want

    variants = [stax_calls, submitit_calls, stax_map, submitit_map_array]
    times: dict[str, list[float]] = {f.__name__: [] for f in variants}
    for r in range(a.rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for f in order:
            t = time.perf_counter()
            f()
            times[f.__name__].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"cluster {a.cluster} (Slurm), {a.n} trivial tasks, submit to all results, "
          f"{a.rounds} rounds interleaved; submitit {submitit.__version__}")
    for k, v in times.items():
        print(f"  {k:20s} median {med[k]:6.2f} s  [{', '.join(f'{x:.2f}' for x in v)}]")
    print(f"  ratio calls: stax / submitit submit: {med['stax_calls'] / med['submitit_calls']:.2f}"
          " (target <= 1.1)")
    print(f"  ratio map: stax .map / submitit map_array: "
          f"{med['stax_map'] / med['submitit_map_array']:.2f} (target <= 1.1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--cluster", default="local")
    ap.add_argument("--clusters-file", help="a clusters file (default: none, only local)")
    ap.add_argument("--rounds", type=int, default=3, help="tasks and bash steps, interleaved")
    ap.add_argument("--no-worker", action="store_true",
                    help="tasks without the warm task worker (STAX_TASK_WORKER=0)")
    ap.add_argument("--submitit", metavar="DIR",
                    help="compare with submitit on Slurm (DIR: pip install --target DIR submitit)")
    ap.add_argument("--partition", default="debug", help="the Slurm partition (submitit)")
    ap.add_argument("--parts", type=int, metavar="ROUNDS",
                    help="only time the parts of one task's process (python start, imports, "
                    "the runner, the warm worker), ROUNDS rounds")
    ap.add_argument("--handover", type=int, metavar="N",
                    help="only N tasks handed to the warm worker one after the other: CPU of "
                    "the job's bash, the worker and its forked child per task")
    a = ap.parse_args()
    if a.parts:
        parts(a.parts)
        return
    if a.handover:
        handover(a.handover)
        return
    d = Path(tempfile.mkdtemp(prefix="stax-bench-ftasks-"))
    os.environ.update(
        JUPYTER_STAX_STORE=str(d / "state" / "stax.sqlite"),
        JUPYTER_STAX_WORK_DIR=str(d / "runs"),
        JUPYTER_STAX_NO_SERVER="1",
    )
    if a.clusters_file:
        os.environ["JUPYTER_STAX_CLUSTERS"] = a.clusters_file
    else:  # only local, and the test Slurm's partition as the tests have it
        (d / "clusters.yaml").write_text(
            "clusters:\n  slurm:\n    scheduler: slurm\n"
            f"    queue: {a.partition}\n    walltime: '00:10:00'\n    poll_interval: 1\n"
        )
        os.environ["JUPYTER_STAX_CLUSTERS"] = str(d / "clusters.yaml")
    if a.submitit:
        vs_submitit(a, d)
        return

    import jupyter_stax as stax
    from jupyter_stax.kernel.probe import ensure_python

    env = {"STAX_TASK_WORKER": "0"} if a.no_worker else {}

    @stax.task(cluster=a.cluster, time="00:05:00", env=env)
    def inc(x: int) -> int:
        return x + 1

    svc = stax.connect()
    t = time.perf_counter()
    ensure_python(svc, a.cluster, None)
    probe_s = time.perf_counter() - t

    calls: list[float] = []
    submits: list[float] = []
    tasks: list[float] = []
    bash: list[float] = []
    cpu: dict[str, list[float]] = {"tasks": [], "bash": []}
    markers = (str(d / "state"), "stax-taskworker-")
    split: dict[str, list[dict[str, float]]] = {"tasks": [], "bash": []}

    def run_tasks() -> None:
        t0 = time.perf_counter()
        with stax.batch():
            futs = []
            for i in range(a.n):
                c = time.perf_counter()
                futs.append(inc(i))
                calls.append(time.perf_counter() - c)
            t_sub = time.perf_counter()
        submits.append(time.perf_counter() - t_sub)
        values = stax.gather(futs, timeout=900)
        tasks.append(time.perf_counter() - t0)
        assert values == [i + 1 for i in range(a.n)], values[:5]

    maps: list[float] = []

    def run_map() -> None:
        t0 = time.perf_counter()
        with stax.batch():
            futs = inc.map(range(a.n))
        assert stax.gather(futs, timeout=900) == [i + 1 for i in range(a.n)]
        maps.append(time.perf_counter() - t0)

    def run_bash() -> None:
        wf = stax.Workflow("bash-steps")
        for i in range(a.n):
            wf.step(f"s{i}", "true", time="00:05:00")
        t0 = time.perf_counter()
        run = wf.submit(cluster=a.cluster)
        run.wait(timeout=900)
        bash.append(time.perf_counter() - t0)
        assert run.state == "completed", run.state

    for r in range(a.rounds):  # interleaved, the order alternating
        for f in (run_tasks, run_bash, run_map) if r % 2 == 0 else (run_bash, run_tasks, run_map):
            c0 = _cpu_parts(markers)
            f()
            c1 = _cpu_parts(markers)
            if f is run_map:
                continue
            which = "tasks" if f is run_tasks else "bash"
            cpu[which].append(sum(c1.values()) - sum(c0.values()))
            split[which].append({k: v - c0.get(k, 0.0) for k, v in c1.items()})

    med = statistics.median(calls) * 1000
    tm, bm = statistics.median(tasks), statistics.median(bash)
    print(f"cluster {a.cluster}, {a.n} tasks, {a.rounds} rounds interleaved"
          f"{' (warm worker off)' if a.no_worker else ''}; load {os.getloadavg()[0]:.1f}")
    print(f"  call: median {med:.3f} ms, max {max(calls) * 1000:.3f} ms "
          f"(target < 5 ms median: {'met' if med < 5 else 'NOT met'})")
    print(f"  batch submission (end of the block): median {statistics.median(submits):.2f} s; "
          f"probe (once): {probe_s:.2f} s")
    print(f"  {a.n} tasks, submit to all results: median {tm:.2f} s "
          f"[{', '.join(f'{x:.2f}' for x in tasks)}]")
    print(f"  {a.n} bash steps, submit to completed: median {bm:.2f} s "
          f"[{', '.join(f'{x:.2f}' for x in bash)}]")
    print(f"  ratio of medians tasks / bash steps: {tm / bm:.2f} (target <= 1.3 on local)")
    print(f"  (not the target's measure) {a.n} elements of one .map (pack: auto): median "
          f"{statistics.median(maps):.2f} s, {statistics.median(maps) / bm:.2f}x the bash steps")
    ct, cb = statistics.median(cpu["tasks"]), statistics.median(cpu["bash"])
    print(f"  CPU (this process, the engine, its jobs, the task workers): tasks median "
          f"{ct:.2f} s, bash steps {cb:.2f} s; {ct / a.n * 1000:.1f} vs {cb / a.n * 1000:.1f} ms "
          f"a step, ratio {ct / cb:.2f}")
    for which, runs in split.items():
        keys = sorted({k for r in runs for k in r})
        print(f"    {which}: " + ", ".join(
            f"{k} {statistics.median(r.get(k, 0.0) for r in runs):.2f} s" for k in keys))


if __name__ == "__main__":
    main()
