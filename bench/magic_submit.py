"""How long ``%stax_submit`` of an N-step workflow keeps a notebook cell busy (target: under
300 ms for 100 steps, whatever the scheduler does).

A REAL ipykernel (jupyter_client) loads the magics and defines N steps (``true``) with
``%%stax_task`` (not timed). Then, ``--repeat`` times, one cell runs
``run = %stax_submit --cluster C`` and times it inside the kernel (``perf_counter`` around the
magic: validation, the store or REST call, the live monitor's widgets); the cell's round trip as
the client sees it is recorded too. After each timed cell the execution is canceled (not timed).

Service modes:

* ``no-server``: the kernel's own store and background engine (``LocalService``);
* ``server``: a real ``jupyter server`` with jupyter_stax; the kernel talks REST to it, as
  kernels of a server do (``$JUPYTER_STAX_SERVER_URL``).

In the same run, for scale: submitting the same N jobs with PSI/J directly
(``JobExecutor.submit`` in a loop, what a blocking submit would cost) and, on Slurm, a loop of
raw ``sbatch --wrap true``. Ratios are magic / PSI/J and magic / sbatch.

    python bench/magic_submit.py --n 100 --repeat 7 --cluster slurm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server.real_server import RealServer, child_env  # noqa: E402

TARGET_S = 0.300


def kernel_env(d: Path) -> dict[str, str]:
    return child_env(
        JUPYTER_STAX_STORE=str(d / "state" / "stax.sqlite"),
        JUPYTER_STAX_WORK_DIR=str(d / "runs"),
        JUPYTER_STAX_CLUSTERS=str(d / "clusters.yaml"),
    )


def run_cell(kc: Any, code: str, timeout: float = 300) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"cell failed: {code[:80]!r}: {''.join(out)}")
    return "".join(out)


def measure_magic(mode: str, n: int, repeat: int, cluster: str, d: Path) -> dict[str, Any]:
    from jupyter_client.manager import KernelManager

    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(d.parent / "clusters.yaml", d / "clusters.yaml")
    env = kernel_env(d)
    server = None
    if mode == "server":
        server = RealServer(
            d / "jupyter",
            store=d / "state" / "stax.sqlite",
            work_dir=d / "runs",
            clusters_file=d / "clusters.yaml",
        )
        server.start()
        env.update(JUPYTER_STAX_SERVER_URL=server.url, JUPYTER_STAX_TOKEN=server.token)
    else:
        env["JUPYTER_STAX_NO_SERVER"] = "1"
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(d))
    kc = km.client()
    kc.start_channels()
    inside: list[float] = []
    roundtrip: list[float] = []
    try:
        kc.wait_for_ready(timeout=60)
        run_cell(
            kc,
            "%load_ext jupyter_stax\nimport time\nip = get_ipython()\n"
            f"for i in range({n}):\n"
            "    ip.run_cell_magic('stax_task', f's{i:04d}', 'true')\n",
        )
        service = run_cell(kc, "import jupyter_stax as s; print(type(s.connect()).__name__)")
        for _ in range(repeat + 1):  # the first one warms imports up and is left out
            t0 = time.perf_counter()
            out = run_cell(
                kc,
                "_t = time.perf_counter()\n"
                f"run = %stax_submit --cluster {cluster}\n"
                "print(time.perf_counter() - _t, run.id, len(run.steps))",
            )
            rt = time.perf_counter() - t0
            dt, _eid, steps = out.split()[-3:]
            assert int(steps) == n, out
            run_cell(kc, "run.cancel(); run.wait(300, check=False); None")
            inside.append(float(dt))
            roundtrip.append(rt)
        inside, roundtrip = inside[1:], roundtrip[1:]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        if server is not None:
            server.stop()
    return {"mode": mode, "service": service.strip(), "inside_s": inside, "cell_s": roundtrip}


def measure_psij(n: int, repeat: int, cluster: str, d: Path) -> list[float]:
    import psij

    ex = psij.JobExecutor.get_instance("slurm" if cluster == "slurm" else "local")
    times = []
    for r in range(repeat):
        jobs = []
        base = d / f"psij-{r}"
        t0 = time.perf_counter()
        for i in range(n):
            jd = base / f"j{i}"
            jd.mkdir(parents=True)
            spec = psij.JobSpec(
                executable="/bin/true",
                directory=jd,
                stdout_path=jd / "out",
                stderr_path=jd / "err",
                attributes=psij.JobAttributes(duration=__import__("datetime").timedelta(minutes=5)),
            )
            job = psij.Job(spec)
            ex.submit(job)
            jobs.append(job)
        times.append(time.perf_counter() - t0)
        for job in jobs:
            job.wait()
    return times


def measure_sbatch(n: int, repeat: int, d: Path) -> list[float]:
    times = []
    for r in range(repeat):
        out = d / f"sbatch-{r}"
        out.mkdir()
        ids = []
        t0 = time.perf_counter()
        for _ in range(n):
            p = subprocess.run(
                ["sbatch", "--parsable", "-o", f"{out}/%j.out", "--wrap", "true"],
                capture_output=True,
                text=True,
                check=True,
            )
            ids.append(p.stdout.strip().split(";")[0])
        times.append(time.perf_counter() - t0)
        subprocess.run(["scancel", *ids], capture_output=True)
    return times


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cluster", choices=("local", "slurm"), default="local")
    ap.add_argument("--modes", default="no-server,server")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.cluster == "slurm" and not os.environ.get("SLURM_CONF"):
        raise SystemExit(
            '--cluster slurm needs SLURM_CONF (eval "$(scripts/slurm/start-slurm.sh)")'
        )
    d = Path(tempfile.mkdtemp(prefix="stax-bench-magic-"))
    (d / "clusters.yaml").write_text(
        "clusters:\n  slurm:\n    scheduler: slurm\n    queue: debug\n    poll_interval: 1\n"
    )
    results: dict[str, Any] = {"n": a.n, "repeat": a.repeat, "cluster": a.cluster, "modes": []}
    try:
        for mode in a.modes.split(","):
            r = measure_magic(mode, a.n, a.repeat, a.cluster, d / mode)
            results["modes"].append(r)
        results["psij_submit_s"] = measure_psij(a.n, a.repeat, a.cluster, d)
        if a.cluster == "slurm":
            results["sbatch_loop_s"] = measure_sbatch(a.n, a.repeat, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)

    psij_med = med(results["psij_submit_s"])
    print(f"\n%stax_submit of {a.n} steps on '{a.cluster}', {a.repeat} runs each (medians)")
    print(f"  PSI/J direct, {a.n} submit() calls:      {psij_med * 1000:8.1f} ms")
    if "sbatch_loop_s" in results:
        sb = med(results["sbatch_loop_s"])
        print(f"  raw sbatch loop, {a.n} jobs:             {sb * 1000:8.1f} ms")
    for r in results["modes"]:
        inside, cell = med(r["inside_s"]), med(r["cell_s"])
        line = (
            f"  magic, {r['mode']:<9} ({r['service']}): {inside * 1000:7.1f} ms in the kernel "
            f"(max {max(r['inside_s']) * 1000:.1f}), cell round trip {cell * 1000:.1f} ms; "
            f"vs PSI/J {inside / psij_med:.3f}"
        )
        if "sbatch_loop_s" in results:
            line += f", vs sbatch {inside / med(results['sbatch_loop_s']):.3f}"
        verdict = "MET" if inside < TARGET_S else "MISSED"
        print(line + f"  [target {TARGET_S * 1000:.0f} ms: {verdict}]")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
