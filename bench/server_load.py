"""Load on the REST API of one real Jupyter server (jupyter_stax, ``local`` cluster).

    python bench/server_load.py [--duration 30] [--clients 20] [--submitters 2] [--json PATH]

Starts ``jupyter server`` with the extension on a temporary store, submits a few executions and
waits for them, then runs ``--clients`` concurrent clients (threads, one keep-alive HTTP
connection each) for ``--duration`` seconds:

* ``clients - submitters`` pollers alternate ``GET executions/{id}`` (a random pre-submitted
  execution) and ``GET executions``;
* ``submitters`` each ``POST executions`` a small two-step workflow once per second (these run
  for real on the local cluster while the pollers poll).

Prints requests/s, errors (any status other than the expected one, or no answer), latency
percentiles per request kind, and how many of the submitted executions completed; ``--json``
writes the same. Like the other benchmarks it asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server.real_server import RealServer  # noqa: E402

SMALL = {
    "name": "small",
    "steps": [
        {"name": "a", "run": "echo a"},
        {"name": "b", "after": ["a"], "run": "echo b"},
    ],
}


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = None if body is None else json.dumps(body).encode()
        try:
            self.conn.request(method, "/stax/api/" + path, body=data, headers=self.headers)
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.submitted: list[str] = []

    def record(self, kind: str, seconds: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.latency.setdefault(kind, []).append(seconds)
            if not ok:
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if len(self.error_samples) < 10:
                    self.error_samples.append(f"{kind}: {detail}")


def timed(
    stats: Stats,
    client: Client,
    kind: str,
    expect: int,
    method: str,
    path: str,
    body: Any = None,
) -> bytes | None:
    """One request; its latency and whether it got the ``expect`` status are recorded."""
    t = time.perf_counter()
    try:
        status, data = client.call(method, path, body)
    except (OSError, http.client.HTTPException) as e:
        stats.record(kind, time.perf_counter() - t, False, f"{type(e).__name__}: {e}")
        return None
    ok = status == expect
    stats.record(kind, time.perf_counter() - t, ok, f"{status} {data[:200]!r}")
    return data if ok else None


def poller(server: RealServer, ids: list[str], stats: Stats, stop: threading.Event) -> None:
    c = Client(server.port, server.token)
    rnd = random.Random()
    while not stop.is_set():
        timed(stats, c, "GET executions/{id}", 200, "GET", f"executions/{rnd.choice(ids)}")
        if stop.is_set():
            break
        timed(stats, c, "GET executions", 200, "GET", "executions?limit=20")


def submitter(server: RealServer, stats: Stats, stop: threading.Event) -> None:
    c = Client(server.port, server.token)
    next_at = time.monotonic()
    while not stop.is_set():
        data = timed(stats, c, "POST executions", 201, "POST", "executions", {"workflow": SMALL})
        if data is not None:
            with stats.lock:
                stats.submitted.append(json.loads(data)["id"])
        next_at += 1.0
        stop.wait(max(0.0, next_at - time.monotonic()))


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def wait_final(server: RealServer, ids: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while True:
        for eid in ids:
            if states.get(eid) not in ("completed", "failed", "canceled"):
                states[eid] = server.call("GET", f"executions/{eid}")[1]["state"]
        if all(s in ("completed", "failed", "canceled") for s in states.values()):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out: dict[str, int] = {}
    for s in states.values():
        out[s] = out.get(s, 0) + 1
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    p.add_argument("--submitters", type=int, default=2, help="of which submit (default 2)")
    p.add_argument("--presubmit", type=int, default=5, help="executions made before (default 5)")
    p.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)

    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    tmp = Path(tempfile.mkdtemp(prefix="stax-server-load.", dir=base))
    server = RealServer(tmp / "jupyter", store=tmp / "stax.sqlite", work_dir=tmp / "runs")
    try:
        server.start()
        assert server.proc is not None
        ids = []
        for _ in range(args.presubmit):
            code, ex = server.call("POST", "executions", {"workflow": SMALL})
            assert code == 201, ex
            ids.append(ex["id"])
        wait_final(server, ids, 60)

        stats = Stats()
        stop = threading.Event()
        threads = [
            threading.Thread(target=submitter, args=(server, stats, stop), daemon=True)
            for _ in range(args.submitters)
        ] + [
            threading.Thread(target=poller, args=(server, ids, stats, stop), daemon=True)
            for _ in range(args.clients - args.submitters)
        ]
        cpu0 = cpu_seconds(server.proc.pid)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(args.duration)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(server.proc.pid) - cpu0
        final = wait_final(server, list(stats.submitted), 120)
        log_tracebacks = server.log().count("Traceback")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    total = sum(len(v) for v in stats.latency.values())
    errors = sum(stats.errors.values())
    kinds = {}
    for kind, lat in sorted(stats.latency.items()):
        kinds[kind] = {
            "requests": len(lat),
            "per_s": len(lat) / elapsed,
            "errors": stats.errors.get(kind, 0),
            "p50_ms": 1000 * percentile(lat, 50),
            "p90_ms": 1000 * percentile(lat, 90),
            "p99_ms": 1000 * percentile(lat, 99),
            "max_ms": 1000 * max(lat),
            "mean_ms": 1000 * statistics.fmean(lat),
        }
    result = {
        "duration_s": elapsed,
        "clients": args.clients,
        "submitters": args.submitters,
        "presubmitted": args.presubmit,
        "requests": total,
        "requests_per_s": total / elapsed,
        "errors": errors,
        "error_samples": stats.error_samples,
        "kinds": kinds,
        "submitted": len(stats.submitted),
        "submitted_final_states": final,
        "server_cpu_s": cpu,
        "server_cpu_percent": 100 * cpu / elapsed,
        "server_log_tracebacks": log_tracebacks,
        "cpus": os.cpu_count(),
    }
    print(
        f"{args.clients} clients ({args.clients - args.submitters} polling, {args.submitters} "
        f"submitting 1/s) for {elapsed:.1f} s against one jupyter server (local cluster)"
    )
    print(f"  requests: {total} ({total / elapsed:.0f}/s), errors: {errors}")
    print(f"  server CPU: {cpu:.1f} s ({100 * cpu / elapsed:.0f}% of one core)")
    width = max(len(k) for k in kinds)
    for kind, k in kinds.items():
        print(
            f"  {kind:<{width}}  {k['requests']:>6} ({k['per_s']:>6.1f}/s)  "
            f"p50 {k['p50_ms']:6.1f} ms  p90 {k['p90_ms']:6.1f} ms  p99 {k['p99_ms']:6.1f} ms  "
            f"max {k['max_ms']:6.1f} ms  errors {k['errors']}"
        )
    print(f"  submitted during the load: {len(stats.submitted)}, final states: {final}")
    for line in stats.error_samples:
        print(f"  error: {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"JSON results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
