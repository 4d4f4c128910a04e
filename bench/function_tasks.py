"""Function tasks (``@stax.task``): how long a call keeps the notebook (target: < 5 ms median
over 100 calls of one batch), and N trivial tasks submit-to-all-results against the same number
of bash steps (``true``) in one workflow, on the same cluster, in one run (target on local:
<= 1.3x).

Both sides run in this process on an isolated store with its background engine (as a kernel
without a Jupyter server does). The tasks' side includes its one Python probe (the first batch
on a cluster pays it; it is reported apart too) and reading every result back.

    python bench/function_tasks.py --n 100 --cluster local
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--cluster", default="local")
    ap.add_argument("--clusters-file", help="a clusters file (default: none, only local)")
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="stax-bench-ftasks-"))
    os.environ.update(
        JUPYTER_STAX_STORE=str(d / "state" / "stax.sqlite"),
        JUPYTER_STAX_WORK_DIR=str(d / "runs"),
        JUPYTER_STAX_NO_SERVER="1",
    )
    if a.clusters_file:
        os.environ["JUPYTER_STAX_CLUSTERS"] = a.clusters_file
    else:
        (d / "clusters.yaml").write_text("clusters: {}\n")
        os.environ["JUPYTER_STAX_CLUSTERS"] = str(d / "clusters.yaml")

    import jupyter_stax as stax
    from jupyter_stax.kernel.probe import ensure_python

    @stax.task(cluster=a.cluster, time="00:05:00")
    def inc(x: int) -> int:
        return x + 1

    svc = stax.connect()
    t = time.perf_counter()
    ensure_python(svc, a.cluster, None)
    probe_s = time.perf_counter() - t

    # call latency (IPython imported once before: the first call of a kernel pays that)
    calls: list[float] = []
    t0 = time.perf_counter()
    with stax.batch():
        futs = []
        for i in range(a.n):
            c = time.perf_counter()
            futs.append(inc(i))
            calls.append(time.perf_counter() - c)
        t_sub = time.perf_counter()
    submit_s = time.perf_counter() - t_sub
    values = stax.gather(futs, timeout=900)
    tasks_s = time.perf_counter() - t0
    assert values == [i + 1 for i in range(a.n)], values[:5]

    wf = stax.Workflow("bash-steps")
    for i in range(a.n):
        wf.step(f"s{i}", "true", time="00:05:00")
    t0 = time.perf_counter()
    run = wf.submit(cluster=a.cluster)
    run.wait(timeout=900)
    bash_s = time.perf_counter() - t0

    med = statistics.median(calls) * 1000
    print(f"cluster {a.cluster}, {a.n} tasks")
    print(f"  call: median {med:.3f} ms, max {max(calls) * 1000:.3f} ms "
          f"(target < 5 ms median: {'met' if med < 5 else 'NOT met'})")
    print(f"  batch submission (end of the block): {submit_s:.2f} s; probe (once): {probe_s:.2f} s")
    print(f"  {a.n} tasks, submit to all results: {tasks_s:.2f} s")
    print(f"  {a.n} bash steps, submit to completed: {bash_s:.2f} s")
    print(f"  ratio tasks / bash steps: {tasks_s / bash_s:.2f} (target <= 1.3 on local)")


if __name__ == "__main__":
    main()
