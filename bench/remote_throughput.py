"""Remote Slurm over SSH with 100 ms round trips: N trivial steps through jupyter_stax vs the same
workflow on the local Slurm vs PSI/J over a naive ssh loop; SSH round trips per poll with N
watched jobs; job end -> committed final state.

The login node is the project's test sshd (``scripts/ssh/start-sshd.sh``: re-used when it runs;
never stopped here) with its remote account ``stax-remote``, in front of the SAME Slurm as the
local variant; every remote run goes through its own delay relay (``scripts/ssh/delay_relay.py``:
50 ms each way = 100 ms round trip, the kernel has no netem). Variants (each a fresh process,
interleaved across repeats):

* ``local``: one workflow of N independent ``run: true`` steps on the local Slurm
  (``Cluster(scheduler="slurm", queue="debug", poll_interval=P)``), timed from ``submit()`` to
  ``wait()``;
* ``remote``: the same workflow on a remote cluster (``host: stax-remote@127.0.0.1``, the relay's
  port, same queue and poll interval); counts the exec channels (= round trips) by kind
  (``steps``: a batch of step directories and scripts; ``submit``: a batch of submit scripts and
  ``sbatch`` calls; ``records``; ``squeue``; ``files``: other scripts);
* ``naive``: PSI/J's ``SlurmJobExecutor`` (the same N jobs, ``/bin/bash -c true``) whose every
  command (each ``sbatch``, each ``squeue`` poll) is its OWN ``ssh`` process through the same
  relay (``ssh -p RELAY stax-remote@127.0.0.1 CMD``, key authentication, BatchMode): what one
  gets by routing PSI/J's commands through ``ssh`` without a shared connection. PSI/J's files
  are in a directory of the remote account that this machine also sees (a shared file system:
  the naive loop needs one, which only flatters it);
* ``polls``: N steps held at the scheduler (``--begin=now+1hour``: queued and watched, not using
  the shared test Slurm's few CPUs), then the exec channels during ``--window`` poll intervals
  of the remote cluster: the status command and the records read per poll, whatever N;
* ``latency``: ``--latency-n`` steps of ``sleep 1`` on the remote cluster with its DEFAULT poll
  interval: the committed ``completed`` (``Event.time``) minus the epoch in the step's
  ``stax.exit``.

Printed: wall ratios remote/local (target <= 1.2) and remote/naive (target <= 1), round trips per
poll (expected 2: status + records) and the latency median (target <= 1.5 s), all measured in
THIS run. Needs root (the test sshd), SLURM_CONF (``scripts/slurm/start-slurm.sh``).

    python bench/remote_throughput.py --n 200 --repeat 1 --json /tmp/remote.json
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

REMOTE_TARGET = 1.2
NAIVE_TARGET = 1.0
LATENCY_TARGET_S = 1.5
RTT_DELAY = 0.05  # each way
QUEUE = "debug"
WALLTIME = "00:10:00"
SSH_SCRIPTS = c.ROOT / "scripts" / "ssh"
REMOTE_USER = "stax-remote"


# ---------------------------------------------------------------------- the login node
def exports(out: str) -> dict[str, str]:
    got = {}
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            got[k] = v
    return got


def login_node() -> dict[str, str]:
    """The test sshd (started or re-used) and root's key for the remote account."""
    env = {**os.environ, "STAX_SSH_USER": REMOTE_USER}
    r = subprocess.run(["bash", str(SSH_SCRIPTS / "start-sshd.sh")], env=env,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit(f"start-sshd.sh failed: {r.stderr[-2000:]}")
    e = exports(r.stdout)
    env["SSHD_BASE"] = e["STAX_SSHD_BASE"]
    r = subprocess.run(["bash", str(SSH_SCRIPTS / "client-key.sh")], env=env,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit(f"client-key.sh failed: {r.stderr[-2000:]}")
    e.update(exports(r.stdout))
    return e


def relay(port: int) -> Any:
    """A delay relay in front of ``port`` (scripts/ssh/delay_relay.py, in this process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stax_delay_relay", SSH_SCRIPTS /
                                                  "delay_relay.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.RelayThread("127.0.0.1", port, delay=RTT_DELAY).start()


def known_hosts(d: Path, relay_port: int) -> str:
    """The server's key recorded under the relay's port."""
    line = Path(os.environ["STAX_SSHD_KNOWN_HOSTS"]).read_text().split(None, 1)[1]
    kh = d / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{relay_port} {line}")
    return str(kh)


# ---------------------------------------------------------------------- jupyter_stax variants
def workflow(n: int, run: str = "true") -> dict[str, Any]:
    return {"name": "bench", "steps": [{"name": f"s{i:05d}", "run": run} for i in range(n)]}


def remote_cluster(d: Path, relay_port: int, **kw: Any) -> Any:
    from jupyter_stax.core.models import Cluster

    fields: dict[str, Any] = {
        "name": "far", "scheduler": "slurm", "host": f"{REMOTE_USER}@127.0.0.1",
        "port": relay_port, "identity_file": os.environ["STAX_SSH_IDENTITY"],
        "known_hosts": known_hosts(d, relay_port), "queue": QUEUE, "walltime": WALLTIME,
        "work_dir": f"~/stax-bench/{d.name}", **kw,
    }
    return Cluster.model_validate(fields)


class Counter:
    """Counts a connection's exec channels (round trips) by kind, with their times."""

    def __init__(self, connection: Any) -> None:
        self.calls: list[tuple[float, str]] = []
        self.sbatch = 0  # sbatch commands inside the submit batches
        inner = connection.exec

        async def exec_(command: str, stdin: bytes | None = None, **kw: Any) -> Any:
            if stdin and b"@@tar" in stdin:
                kind = "records"
            elif stdin and b"@@cmd" in stdin:  # a batch of submit scripts and sbatch calls
                kind = "submit"
                self.sbatch += sum(1 for ln in stdin.splitlines() if ln.startswith(b"sbatch "))
            elif stdin and b"STAX_TAR_EOF" in stdin:  # a batch of steps' directories and scripts
                kind = "steps"
            else:
                words = command.split()
                kind = next((w.strip("'") for w in words if w.strip("'") in (
                    "sbatch", "squeue", "scancel")), "files" if "/bin/sh" in words else "?")
            self.calls.append((time.monotonic(), kind))
            return await inner(command, stdin, **kw)

        connection.exec = exec_

    def kinds(self, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
        out: dict[str, int] = {}
        for t, k in self.calls:
            if since <= t <= until:
                out[k] = out.get(k, 0) + 1
        return out


def stax_engine(d: Path, cluster: Any, counters: list[Counter]) -> Any:
    from jupyter_stax.core.clusters import ClusterRegistry
    from jupyter_stax.engine.engine import Engine
    from jupyter_stax.engine.transport import Transport
    from jupyter_stax.engine.transports import transport_for

    def transports(cl: Any, state_dir: Path) -> Transport:
        t = transport_for(cl, state_dir)
        if cl.remote:
            counters.append(Counter(t.connection))  # type: ignore[attr-defined]
        return t

    return Engine(store=d / "state" / "stax.sqlite", clusters=ClusterRegistry([cluster]),
                  transports=transports)


def cleanup_remote(work_dir: str) -> None:
    home = pwd.getpwnam(REMOTE_USER).pw_dir
    shutil.rmtree(Path(home, work_dir.removeprefix("~/")), ignore_errors=True)


def child_stax(d: Path, n: int, poll: float, remote: bool) -> dict[str, Any]:
    import psij.executors.batch.slurm  # noqa: F401  (one-time import cost outside the timing)

    from jupyter_stax.core.models import Cluster

    rel = relay(int(os.environ["STAX_SSHD_PORT"])) if remote else None
    counters: list[Counter] = []
    try:
        if rel is not None:
            cluster = remote_cluster(d, rel.port, poll_interval=poll)
        else:
            cluster = Cluster(name="far", scheduler="slurm", queue=QUEUE, walltime=WALLTIME,
                              poll_interval=poll, work_dir=str(d / "runs"))

        async def main() -> dict[str, Any]:
            async with stax_engine(d, cluster, counters) as eng:
                if rel is not None:  # connect (and learn the remote home) outside the timing
                    await eng._io(eng._transport(cluster).verify)
                with c.Meter() as m:
                    ex = await eng.submit(workflow(n), cluster="far")
                    ex = await eng.wait(ex.id)
            if ex.state.value != "completed":
                bad = [f"{s.name}: {s.state.value} {s.reason}" for s in ex.steps
                       if s.state.value != "completed"]
                raise SystemExit(f"execution ended {ex.state.value}; e.g. {bad[:3]}")
            r = m.result(n)
            if counters:
                kinds = counters[0].kinds()
                r["round_trips"] = kinds
                r["round_trips_per_step"] = sum(kinds.values()) / n
                r["sbatch_in_batches"] = counters[0].sbatch
            return r

        return asyncio.run(main())
    finally:
        if rel is not None:
            rel.stop()
            cleanup_remote(f"~/stax-bench/{d.name}")


def child_polls(d: Path, n: int, window: int) -> dict[str, Any]:
    """Round trips per poll interval with ``n`` watched (held) jobs."""
    rel = relay(int(os.environ["STAX_SSHD_PORT"]))
    counters: list[Counter] = []
    try:
        cluster = remote_cluster(d, rel.port, custom_attributes={"slurm.begin": "now+1hour"})
        interval = cluster.effective_poll_interval

        async def main() -> dict[str, Any]:
            async with stax_engine(d, cluster, counters) as eng:
                ex = await eng.submit(workflow(n, "true"), cluster="far")
                deadline = time.monotonic() + 600
                while not all(s.native_id for s in eng.get(ex.id).steps):
                    if time.monotonic() > deadline:
                        raise SystemExit("the jobs were not all submitted within 600 s")
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2 * interval)  # past the submission's own round trips
                t0 = time.monotonic()
                await asyncio.sleep(window * interval)
                t1 = time.monotonic()
                kinds = counters[0].kinds(t0, t1)
                states = sorted({s.state.value for s in eng.get(ex.id).steps})
                await eng.cancel(ex.id)
                await eng.wait(ex.id, 600)
            polls = (t1 - t0) / interval
            return {
                "wall_s": t1 - t0, "poll_interval_s": interval, "polls": polls,
                "round_trips": kinds, "round_trips_per_poll": sum(kinds.values()) / polls,
                "status_per_poll": kinds.get("squeue", 0) / polls,
                "records_per_poll": kinds.get("records", 0) / polls, "step_states": states,
            }

        return asyncio.run(main())
    finally:
        rel.stop()
        cleanup_remote(f"~/stax-bench/{d.name}")


def child_latency(d: Path, n: int, poll: float | None) -> dict[str, Any]:
    from jupyter_stax.core import jobscript as js
    from jupyter_stax.engine.engine import Event

    rel = relay(int(os.environ["STAX_SSHD_PORT"]))
    events: dict[str, float] = {}

    def on_event(ev: Event) -> None:
        if ev.step is not None and ev.state == "completed":
            events[ev.step] = ev.time

    try:
        # the default poll interval unless --latency-poll
        cluster = remote_cluster(d, rel.port, **({"poll_interval": poll} if poll else {}))

        async def main() -> Any:
            async with stax_engine(d, cluster, []) as eng:
                eng.subscribe(on_event)
                ex = await eng.submit(workflow(n, "sleep 1"), cluster="far")
                return await eng.wait(ex.id), cluster.effective_poll_interval

        ex, interval = asyncio.run(main())
        if ex.state.value != "completed":
            raise SystemExit(f"execution ended {ex.state.value}")
        lat = []
        for s in ex.steps:
            rec = js.read_exit_record(Path(s.directory))  # the same machine: read as root
            if rec is None or s.name not in events:
                raise SystemExit(f"step {s.name}: no exit record or no completed event")
            lat.append(events[s.name] - rec.time)
        return {"wall_s": 0.0, "latencies_s": lat, "poll_interval_s": interval}
    finally:
        rel.stop()
        cleanup_remote(f"~/stax-bench/{d.name}")


# ---------------------------------------------------------------------- PSI/J over naive ssh
def child_naive(d: Path, n: int, poll: float) -> dict[str, Any]:
    import psij
    from psij.executors.batch.slurm import SlurmExecutorConfig, SlurmJobExecutor

    rel = relay(int(os.environ["STAX_SSHD_PORT"]))
    kh = known_hosts(d, rel.port)
    ssh = ["ssh", "-p", str(rel.port), "-i", os.environ["STAX_SSH_IDENTITY"],
           "-o", f"UserKnownHostsFile={kh}", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
           f"{REMOTE_USER}@127.0.0.1"]
    ssh_calls: list[str] = []

    class NaiveSsh(SlurmJobExecutor):  # type: ignore[misc]
        _NAME_ = "slurm"

        def _run_command(self, cmd: Sequence[str]) -> str:
            ssh_calls.append(cmd[0])
            p = subprocess.run([*ssh, shlex.join(cmd)], capture_output=True, text=True)
            if p.returncode != 0:
                raise subprocess.CalledProcessError(p.returncode, cmd, output=p.stdout + p.stderr)
            return p.stdout

    rw = pwd.getpwnam(REMOTE_USER)
    shared = Path(tempfile.mkdtemp(prefix="stax-bench-naive-", dir=rw.pw_dir))
    try:
        for p in (shared, shared / "psij", shared / "psij" / "slurm", shared / "runs"):
            p.mkdir(exist_ok=True)  # the jobs (the remote account) write PSI/J's .ec/.out here
            p.chmod(0o777)
        with c.Meter() as m:
            ex = NaiveSsh(config=SlurmExecutorConfig(
                work_directory=shared / "psij", queue_polling_interval=poll,  # type: ignore[arg-type]
                initial_queue_polling_delay=min(poll, 0.5),  # type: ignore[arg-type]
            ))
            jobs = []
            for i in range(n):
                jd = shared / "runs" / f"j{i:05d}"
                jd.mkdir()
                jd.chmod(0o777)
                spec = psij.JobSpec(
                    executable="/bin/bash", arguments=["-c", "true"], directory=jd,
                    stdout_path=jd / "out", stderr_path=jd / "err",
                    attributes=psij.JobAttributes(
                        queue_name=QUEUE, duration=timedelta(minutes=10),
                        custom_attributes={"slurm.job-name": f"bench-naive-{i}"},
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
        r = m.result(n)
        r["ssh_processes"] = {k: ssh_calls.count(k) for k in sorted(set(ssh_calls))}
        return r
    finally:
        rel.stop()
        if not os.environ.get("STAX_BENCH_KEEP"):
            shutil.rmtree(shared, ignore_errors=True)


# ---------------------------------------------------------------------- driver
def main() -> None:
    p = c.parser(__doc__.split("\n")[0], n=200, repeat=1)
    p.add_argument("--poll", type=float, default=1.0,
                   help="poll interval of the throughput variants, s (default 1)")
    p.add_argument("--variants", default="local,remote,naive",
                   help="throughput variants to compare (default local,remote,naive)")
    p.add_argument("--window", type=int, default=5,
                   help="poll intervals counted with N watched jobs (default 5; 0: skip)")
    p.add_argument("--latency-n", type=int, default=12,
                   help="sleep-1 steps of the latency run (default 12; 0: skip)")
    p.add_argument("--latency-poll", type=float, default=0.0,
                   help="poll interval of the latency run, s (default: unset, the engine's)")
    a = p.parse_args()
    if a.child:
        d = Path(a.dir)
        if a.child in ("local", "remote"):
            r = child_stax(d, a.n, a.poll, a.child == "remote")
        elif a.child == "naive":
            r = child_naive(d, a.n, a.poll)
        elif a.child == "polls":
            r = child_polls(d, a.n, a.window)
        else:
            r = child_latency(d, a.latency_n, a.latency_poll or None)
        c.emit(r)
        return

    if os.geteuid() != 0:
        raise SystemExit("needs root: it uses the test sshd (scripts/ssh/start-sshd.sh)")
    c.need_slurm()
    node = login_node()
    env = {k: node[k] for k in ("STAX_SSHD_PORT", "STAX_SSHD_KNOWN_HOSTS", "STAX_SSH_IDENTITY")}
    os.environ.update(env)
    cluster = c.slurm_cluster_info()
    variants = [v for v in a.variants.split(",") if v]
    print(f"Remote Slurm over SSH, {2 * RTT_DELAY * 1000:.0f} ms RTT (delay relay): {a.n} "
          f"trivial jobs, poll every {a.poll:g} s, {a.repeat} repeat(s); Slurm: "
          f"{cluster.get('nodes')} nodes, {cluster.get('cpus')} CPUs, "
          f"{cluster.get('jobs_in_queue_at_start')} jobs queued at start")
    args = ["--n", str(a.n), "--poll", str(a.poll), "--window", str(a.window),
            "--latency-n", str(a.latency_n), "--latency-poll", str(a.latency_poll)]
    runs = c.interleaved(__file__, variants, a.repeat, args, timeout=a.timeout, keep=a.keep,
                         tmpdir=a.tmpdir) if variants else {}
    extra = (["polls"] if a.window else []) + (["latency"] if a.latency_n else [])
    for v in extra:
        runs[v] = [c.run_child(__file__, v, args, timeout=a.timeout, keep=a.keep,
                               tmpdir=a.tmpdir)]
    print()
    result: dict[str, Any] = {
        "benchmark": "remote_throughput", "machine": c.machine(), "slurm": cluster,
        "n": a.n, "repeat": a.repeat, "poll_interval": a.poll, "rtt_s": 2 * RTT_DELAY,
        "runs": runs, "targets": {"remote_local": REMOTE_TARGET, "remote_naive": NAIVE_TARGET,
                                  "latency_median_s": LATENCY_TARGET_S},
    }
    for v in variants:
        s = c.summary(r["wall_s"] for r in runs[v])
        result.setdefault("wall_s", {})[v] = s
        print(f"  {v:<7} wall {c.fmt(s, ' s')}; {a.n / s['median']:.1f} jobs/s")
    if "remote" in variants and "local" in variants:
        r = c.summary(c.ratios(runs, "remote", "local"))
        result["ratio_remote_local"] = r
        print(f"remote (100 ms RTT) / local Slurm = {c.fmt(r)}  "
              f"[{c.verdict(r['median'], REMOTE_TARGET)}]")
    if "remote" in variants and "naive" in variants:
        r = c.summary(c.ratios(runs, "remote", "naive"))
        result["ratio_remote_naive"] = r
        print(f"remote / PSI/J over an ssh-per-command loop = {c.fmt(r)}  "
              f"[{c.verdict(r['median'], NAIVE_TARGET)}]")
        procs = runs["naive"][0].get("ssh_processes", {})
        print(f"  ssh processes of the naive loop (first run): {procs}")
    if "remote" in variants:
        rt = runs["remote"][0].get("round_trips", {})
        per = c.summary(r["round_trips_per_step"] for r in runs["remote"])
        result["round_trips_per_step"] = per
        print(f"  round trips of the remote run per step: {c.fmt(per)}; by kind (first run): "
              f"{rt}; sbatch calls inside the submit batches: "
              f"{runs['remote'][0].get('sbatch_in_batches')}")
    if "polls" in runs:
        r = runs["polls"][0]
        result["round_trips_per_poll"] = r["round_trips_per_poll"]
        print(f"SSH round trips per poll interval ({r['poll_interval_s']:g} s) with {a.n} watched "
              f"jobs (held queued: {r['step_states']}): {r['round_trips_per_poll']:.2f} "
              f"(status {r['status_per_poll']:.2f} + records {r['records_per_poll']:.2f}; "
              f"{r['round_trips']} in {r['polls']:.1f} intervals)  [expected 2]")
    if "latency" in runs:
        lat = runs["latency"][0]["latencies_s"]
        med = statistics.median(lat)
        result["latency_s"] = {"median": med, "max": max(lat), "min": min(lat), "n": len(lat)}
        print(f"job end -> committed final state, remote, 100 ms RTT, poll "
              f"({runs['latency'][0]['poll_interval_s']:g} s): median {med:.2f} s, max "
              f"{max(lat):.2f} s ({len(lat)} steps)  [{c.verdict(med, LATENCY_TARGET_S)}]")
    result["background_cpus"] = c.print_background(runs)
    c.write_json(a.json, result)


if __name__ == "__main__":
    main()
