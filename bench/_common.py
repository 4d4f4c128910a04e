"""Shared helpers of the benchmarks: argument parsing, one fresh subprocess per measured run,
statistics, output; and what the Slurm and Grid Engine benchmarks share (the engine's run of N
trivial steps, a shell loop of the scheduler's own commands, the end-of-job latency with the
status command counted through a PATH shim).

Every benchmark script runs in two roles:

* the driver (what you start): runs each variant ``--repeat`` times, interleaved, each time in a
  fresh Python subprocess with its own temporary store and work directory, then prints ratios
  computed from THIS run only (never against stored numbers);
* the child (``--child VARIANT``): does one measured run and prints one ``BENCH_RESULT {json}``
  line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- arguments
def shm() -> str | None:
    """/dev/shm when it is a writable directory (tmpfs on Linux), else None."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def parser(
    description: str, n: int, repeat: int = 3, tmpdir: str | None = None
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--n", type=int, default=n, help=f"jobs per run (default {n})")
    p.add_argument(
        "--repeat", type=int, default=repeat, help=f"runs of each variant (default {repeat})"
    )
    p.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds allowed for one run (default 1800)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument(
        "--tmpdir",
        default=tmpdir,
        help="where each run's store and work directory go (default: "
        f"{tmpdir or 'the system temp dir'}); /dev/shm (tmpfs) keeps file-system noise (e.g. "
        "ext4 inode allocation slowing down after earlier runs deleted their files) out",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    return p


# ---------------------------------------------------------------------- measuring
def cpu_self() -> float:
    """User + system CPU seconds of this process (all its threads, not its children)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_split() -> tuple[float, float]:
    """(user, system) CPU seconds of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used (``/proc/stat``; 0 if unreadable)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def background_load(seconds: float = 1.0) -> float:
    """CPUs kept busy by others while we run nothing (sampled for ``seconds`` before a run):
    the machine is shared, and other users' load inflates wall and CPU times alike."""
    b0 = machine_busy()
    time.sleep(seconds)
    return (machine_busy() - b0) / seconds


class Meter:
    """Wall and CPU time of a measured section: ``with Meter() as m: ...; m.result()``."""

    def __enter__(self) -> Meter:
        self.split0, self.busy0 = cpu_split(), machine_busy()
        self.cpu0, self.kids0, self.t0 = cpu_self(), cpu_children(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.t1, self.cpu1, self.kids1 = time.perf_counter(), cpu_self(), cpu_children()
        self.split1, self.busy1 = cpu_split(), machine_busy()

    def result(self, n: int) -> dict[str, float]:
        return {
            "wall_s": self.t1 - self.t0,
            "cpu_s": self.cpu1 - self.cpu0,
            "cpu_per_job_ms": (self.cpu1 - self.cpu0) / n * 1000.0,
            "user_per_job_ms": (self.split1[0] - self.split0[0]) / n * 1000.0,
            "sys_per_job_ms": (self.split1[1] - self.split0[1]) / n * 1000.0,
            "children_cpu_s": self.kids1 - self.kids0,
            "jobs_per_s": n / (self.t1 - self.t0),
            # CPU seconds the whole machine used meanwhile (ours, our jobs' and anybody else's)
            "machine_busy_s": self.busy1 - self.busy0,
        }


def emit(result: dict[str, Any]) -> None:
    """Child side: hand one result to the driver."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------- driving
def run_child(
    script: str,
    variant: str,
    args: Sequence[str],
    *,
    timeout: float,
    keep: bool = False,
    env: dict[str, str] | None = None,
    label: str = "",
    tmpdir: str | None = None,
) -> dict[str, Any]:
    """Run ``script --child variant`` in a fresh interpreter with a fresh temporary directory
    (store, work dir, PSI/J state); return its result dict."""
    d = Path(tempfile.mkdtemp(prefix=f"stax-bench-{variant}-", dir=tmpdir))
    e = dict(os.environ)
    e.update(
        JUPYTER_STAX_STORE=str(d / "state" / "stax.sqlite"),
        JUPYTER_STAX_WORK_DIR=str(d / "runs"),
        JUPYTER_STAX_CLUSTERS=str(d / "no-clusters.yaml"),
        PYTHONPATH=str(ROOT) + os.pathsep + e.get("PYTHONPATH", ""),
    )
    e.update(env or {})
    cmd = [sys.executable, script, "--child", variant, "--dir", str(d), *args]
    background = background_load()
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)
    except subprocess.TimeoutExpired as ex:
        raise SystemExit(f"{variant}: no result after {timeout:g} s ({ex})") from None
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if p.returncode != 0 or not lines:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"{variant}: run failed (exit code {p.returncode})")
    r: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    r["variant"] = variant
    r["background_cpus"] = background
    print(
        f"  {label}{variant:<12} wall {r['wall_s']:8.2f} s"
        + (f"  cpu/job {r['cpu_per_job_ms']:6.2f} ms" if "cpu_per_job_ms" in r else "")
        + f"  background load {background:4.2f} CPUs"
        + f"  (process lifetime {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    return r


def interleaved(
    script: str,
    variants: Sequence[str],
    repeat: int,
    args: Sequence[str],
    *,
    timeout: float,
    keep: bool = False,
    env_for: Callable[[str], dict[str, str]] | None = None,
    tmpdir: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Each repeat runs every variant once; the order rotates so no variant always goes first."""
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for i in range(repeat):
        k = i % len(variants)
        order = list(variants[k:]) + list(variants[:k])
        for v in order:
            out[v].append(
                run_child(
                    script,
                    v,
                    args,
                    timeout=timeout,
                    keep=keep,
                    env=env_for(v) if env_for else None,
                    label=f"[{i + 1}/{repeat}] ",
                    tmpdir=tmpdir,
                )
            )
    return out


# ---------------------------------------------------------------------- statistics / output
def summary(values: Iterable[float]) -> dict[str, float]:
    v = list(values)
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def ratios(
    runs: dict[str, list[dict[str, Any]]], num: str, den: str, key: str = "wall_s"
) -> list[float]:
    """Per-repeat ratios num/den (runs of the same repeat are paired)."""
    return [a[key] / b[key] for a, b in zip(runs[num], runs[den], strict=True)]


def background(runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Summary of the background load sampled before each run (see :func:`background_load`)."""
    return summary(r["background_cpus"] for rs in runs.values() for r in rs)


def print_background(runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    b = background(runs)
    note = "" if b["max"] < 0.25 else "  (others were using the machine: numbers are inflated)"
    print(f"background load before runs: {fmt(b, ' CPUs')}{note}")
    return b


def fmt(s: dict[str, float], unit: str = "", digits: int = 2) -> str:
    f = f"{{:.{digits}f}}"
    med, lo, hi = (f.format(s[k]) for k in ("median", "min", "max"))
    return f"{med}{unit} (median of {s['n']}; min {lo}, max {hi})"


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    return f"target {'<=' if lower_is_better else '>='} {target:g}: {'met' if ok else 'MISSED'}"


def machine() -> dict[str, Any]:
    import psij

    info: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "psij": getattr(psij, "__version__", "?"),
    }
    try:
        from jupyter_stax._version import __version__

        info["jupyter_stax"] = __version__
    except Exception:
        pass
    return info


def filesystem(path: str | None) -> dict[str, str]:
    """The directory runs go to and its file-system type (from /proc/mounts)."""
    p = os.path.realpath(path or tempfile.gettempdir())
    best, fstype = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, fstype = mnt, parts[2]
    except OSError:
        pass
    return {"path": p, "fstype": fstype}


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
        print(f"results written to {path}")


def slurm_cluster_info() -> dict[str, Any]:
    """Nodes and CPUs of the Slurm cluster in use, and jobs of others already queued."""
    try:
        nodes = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %c %T"], capture_output=True, text=True, timeout=30
        ).stdout.split("\n")
        queued = subprocess.run(
            ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    rows = [ln.split() for ln in nodes if ln.strip()]
    return {
        "nodes": len({r[0] for r in rows}),
        "cpus": sum(int(r[1]) for r in {r[0]: r for r in rows}.values()),
        "node_states": sorted({r[2] for r in rows}),
        "jobs_in_queue_at_start": len(queued),
    }


def need_slurm() -> None:
    if not os.environ.get("SLURM_CONF") or not Path(os.environ["SLURM_CONF"]).exists():
        raise SystemExit(
            "SLURM_CONF is not set to an existing slurm.conf; start the project's Slurm with "
            'eval "$(scripts/slurm/start-slurm.sh)"'
        )
    p = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if "UP" not in p.stdout:
        raise SystemExit(f"slurmctld is not up: {p.stdout.strip()} {p.stderr.strip()}")


# ---------------------------------------------------------------------- scheduler benchmarks
# what the Slurm and Grid Engine benchmarks share: the engine's run of N trivial steps, a bash
# loop of the scheduler's own commands, and the latency from a job's end to the committed state
# with the status command's calls counted through a PATH shim

#: a PATH shim for a scheduler command: logs each call (time and arguments), runs the real one
SHIM = """#!/bin/bash
printf '%s %s\\n' "$EPOCHREALTIME" "$*" >> {log}
exec {real} "$@"
"""


def command_shim(d: Path, command: str) -> Path:
    """Put a logging shim of ``command`` first on this process's PATH (``d/shim``); returns
    the log it writes (one ``EPOCH ARGS`` line per call)."""
    real = shutil.which(command)
    if real is None:
        raise SystemExit(f"{command} is not on PATH")
    shim = d / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    log = d / f"{command}.log"
    (shim / command).write_text(SHIM.format(log=log, real=real))
    (shim / command).chmod(0o755)
    os.environ["PATH"] = f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"
    return log


def shim_calls(log: Path) -> list[tuple[float, str]]:
    """The calls a shim logged: (epoch, arguments)."""
    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        stamp, _, args = line.partition(" ")
        calls.append((float(stamp.replace(",", ".")), args))
    return calls


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def latency_summary(latencies: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(latencies),
        "p90": pct(latencies, 0.9),
        "max": max(latencies),
        "min": min(latencies),
        "n": len(latencies),
    }


def trivial_workflow(n: int, run: str = "true", name: str = "bench") -> dict[str, Any]:
    """N independent steps named s00000, s00001, ..."""
    return {"name": name, "steps": [{"name": f"s{i:05d}", "run": run} for i in range(n)]}


def stax_throughput(d: Path, cluster: Any, n: int) -> dict[str, Any]:
    """Child side: one workflow of N trivial steps on ``cluster`` (a ``Cluster``) through the
    engine, timed from ``submit()`` until ``wait()`` returns; exits when a step did not
    complete."""
    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.engine.engine import Engine

    async def main() -> dict[str, Any]:
        async with Engine(
            store=d / "state" / "stax.sqlite", clusters=ClusterRegistry([cluster])
        ) as eng:
            with Meter() as m:
                ex = await eng.submit(trivial_workflow(n), cluster=cluster.name)
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


def shell_loop(d: Path, script: str, n: int, poll: float, what: str) -> dict[str, Any]:
    """Child side: ``bash -c SCRIPT bash N POLL DIR`` (a loop of the scheduler's own submit
    command, then its status command every POLL seconds), timed; DIR is ``d/runs``."""
    out = d / "runs"
    out.mkdir(parents=True)
    with Meter() as m:
        p = subprocess.run(["bash", "-c", script, "bash", str(n), str(poll), str(out)])
    if p.returncode != 0:
        raise SystemExit(f"{what} failed with exit code {p.returncode}")
    r = m.result(n)
    r.pop("cpu_per_job_ms")  # the work is in bash and its children: not comparable
    return r


def latency_run(d: Path, cluster: Any, n: int, run: str, command: str) -> dict[str, Any]:
    """Child side: N independent steps running ``run`` on ``cluster`` through the engine; for
    each, the time from the job's end (the epoch in its ``stax.exit``) to the committed
    transition to ``completed`` (``Event.time``), and how the engine called the status
    ``command`` meanwhile (a shim on PATH counts it). Keys of the calls start with ``command``."""
    log = command_shim(d, command)

    from jupyter_stax.core import jobscript as js
    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.engine.engine import Engine, Event

    events: dict[str, float] = {}

    def on_event(ev: Event) -> None:
        if ev.step is not None and ev.state == "completed":
            events[ev.step] = ev.time

    async def main() -> tuple[Any, float, float, float]:
        wf = trivial_workflow(n, run, name="latency")
        async with Engine(
            store=d / "state" / "stax.sqlite", clusters=ClusterRegistry([cluster])
        ) as eng:
            eng.subscribe(on_event)
            t0 = time.time()
            with Meter() as m:
                ex = await eng.submit(wf, cluster=cluster.name)
                ex = await eng.wait(ex.id)
            t1 = time.time()
        return ex, t0, t1, m.result(n)["wall_s"]

    ex, t0, t1, wall = asyncio.run(main())
    if ex.state.value != "completed":
        raise SystemExit(f"execution ended {ex.state.value}: {ex.counts()}")
    latencies = []
    for s in ex.steps:
        rec = js.read_exit_record(Path(s.directory))
        if rec is None or s.name not in events:
            raise SystemExit(f"step {s.name}: no exit record or no completed event")
        latencies.append(events[s.name] - rec.time)
    calls = shim_calls(log)
    during = [t for t, _ in calls if t0 <= t <= t1]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    interval = cluster.effective_poll_interval
    return {
        "wall_s": wall,
        "latencies_s": latencies,
        f"{command}_calls": len(during),
        f"{command}_calls_per_s": len(during) / (t1 - t0),
        f"{command}_commands": sorted({a for _, a in calls}),
        f"{command}_gap_median_s": statistics.median(gaps) if gaps else None,
        f"{command}_gap_min_s": min(gaps) if gaps else None,
        "run_s": t1 - t0,
        "poll_interval_s": interval,
        # poll periods that began during the run (PSI/J sleeps `interval` after each poll)
        "calls_per_poll": len(during) / max(1, math.ceil((t1 - t0) / interval)),
    }
