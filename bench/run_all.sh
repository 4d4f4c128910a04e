#!/usr/bin/env bash
# run_all.sh -- run the benchmarks with modest sizes and print a summary table.
#
#   bash bench/run_all.sh                 # local + Slurm + SGE (Slurm parts skipped without
#                                         # SLURM_CONF, SGE parts without SGE_ROOT)
#   OUT=/tmp/bench LOCAL_N=1000 SLURM_N=200 LATENCY_N=30 REPEAT=3 bash bench/run_all.sh
#
# Knobs (env): OUT (result directory, default a new temp dir), REPEAT (default 3),
#              LOCAL_N (default 300), SLURM_N (default 60), LATENCY_N (default 12),
#              POLL (Slurm and SGE throughput poll interval, default 1),
#              SGE_N (default 100), SGE_LATENCY_N (default 12), REMOTE_N (default 60; the
#              remote Slurm part runs as root only: it uses the test sshd).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d /tmp/stax-bench-results.XXXXXX)}
REPEAT=${REPEAT:-3}
mkdir -p "$OUT"

echo "== local_throughput (n=${LOCAL_N:-300})"
"$PY" "$HERE/local_throughput.py" --n "${LOCAL_N:-300}" --repeat "$REPEAT" --json "$OUT/local_throughput.json"

if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ] && scontrol ping 2>/dev/null | grep -q UP; then
  echo; echo "== slurm_throughput (n=${SLURM_N:-60})"
  "$PY" "$HERE/slurm_throughput.py" --n "${SLURM_N:-60}" --repeat "$REPEAT" --poll "${POLL:-1}" \
    --json "$OUT/slurm_throughput.json"
  echo; echo "== slurm_latency (n=${LATENCY_N:-12})"
  "$PY" "$HERE/slurm_latency.py" --n "${LATENCY_N:-12}" --repeat "$REPEAT" \
    --json "$OUT/slurm_latency.json"
  if [ "$(id -u)" = 0 ]; then
    echo; echo "== remote_throughput (n=${REMOTE_N:-60}, 100 ms RTT over the test sshd)"
    "$PY" "$HERE/remote_throughput.py" --n "${REMOTE_N:-60}" --repeat 1 --poll "${POLL:-1}" \
      --json "$OUT/remote_throughput.json"
  fi
else
  echo; echo "== Slurm benchmarks skipped: SLURM_CONF unset or slurmctld not up" \
    "(eval \"\$(scripts/slurm/start-slurm.sh)\")"
fi

if [ -n "${SGE_ROOT:-}" ] && qstat -g c >/dev/null 2>&1; then
  echo; echo "== sge_throughput (n=${SGE_N:-100}, latency n=${SGE_LATENCY_N:-12})"
  "$PY" "$HERE/sge_throughput.py" --n "${SGE_N:-100}" --repeat "$REPEAT" --poll "${POLL:-1}" \
    --latency-n "${SGE_LATENCY_N:-12}" --json "$OUT/sge_throughput.json"
else
  echo; echo "== SGE benchmark skipped: SGE_ROOT unset or qstat does not answer" \
    "(eval \"\$(bash scripts/sge/start-sge.sh)\")"
fi

echo
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = []

def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None

def cell(s, unit="", d=2):
    return f"{s['median']:.{d}f}{unit} [{s['min']:.{d}f}..{s['max']:.{d}f}]"

def status(value, target):
    return "met" if value <= target else "MISSED"

r = load("local_throughput")
if r:
    n = f"n={r['n']} x{r['repeat']}"
    rows.append(("local: jupyter_stax / PSI/J wall", n, cell(r["wall_ratio"]),
                 f"<= {r['wall_ratio_target']}", status(r["wall_ratio"]["median"], r["wall_ratio_target"])))
    cpu = r["cpu_per_job_ms"]
    rows.append(("local: process CPU/step, jupyter_stax", n, cell(cpu["stax"], " ms"), "", ""))
    rows.append(("local: process CPU/job, PSI/J", n, cell(cpu["psij"], " ms"), "", ""))
    rows.append(("local: CPU/step difference", n, cell(cpu["difference"], " ms"),
                 f"<= {r['cpu_difference_target_ms']} ms",
                 status(cpu["difference"]["median"], r["cpu_difference_target_ms"])))
r = load("slurm_throughput")
if r:
    n = f"n={r['n']} x{r['repeat']} P={r['poll_interval']:g}s {r['slurm'].get('cpus')}cpu"
    if "ratio_stax_psij" in r:
        rows.append(("slurm: jupyter_stax / PSI/J wall", n, cell(r["ratio_stax_psij"]),
                     f"<= {r['psij_target']}", status(r["ratio_stax_psij"]["median"], r["psij_target"])))
    if "ratio_stax_sbatch" in r:
        rows.append(("slurm: jupyter_stax / sbatch loop wall", n, cell(r["ratio_stax_sbatch"]), "", ""))
r = load("slurm_latency")
if r:
    n = f"n={r['n']} x{r['repeat']}"
    lat = r["latency_s"]
    rows.append(("slurm: job end -> committed final (median)", n, f"{lat['median']:.2f} s",
                 f"<= {r['latency_median_target_s']} s", status(lat["median"], r["latency_median_target_s"])))
    rows.append(("slurm: ... p90 / max", n, f"{lat['p90']:.2f} s / {lat['max']:.2f} s", "", ""))
    rows.append(("slurm: squeue calls/s (per poll)", n,
                 f"{r['squeue_calls_per_s']['median']:.3f}/s ({r['squeue_calls_per_poll']['median']:.2f}/poll)",
                 "1 per poll", "met" if r["one_status_command_per_poll"] else "MISSED"))
r = load("remote_throughput")
if r:
    n = f"n={r['n']} x{r['repeat']} RTT={r['rtt_s'] * 1000:.0f}ms"
    t = r["targets"]
    if "ratio_remote_local" in r:
        rows.append(("remote slurm: remote / local wall", n, cell(r["ratio_remote_local"]),
                     f"<= {t['remote_local']}", status(r["ratio_remote_local"]["median"], t["remote_local"])))
    if "ratio_remote_naive" in r:
        rows.append(("remote slurm: remote / naive ssh loop", n, cell(r["ratio_remote_naive"]),
                     f"<= {t['remote_naive']}", status(r["ratio_remote_naive"]["median"], t["remote_naive"])))
    if "round_trips_per_poll" in r:
        rows.append(("remote slurm: SSH round trips per poll", n, f"{r['round_trips_per_poll']:.2f}",
                     "2", status(r["round_trips_per_poll"], 2.05)))
    if "latency_s" in r:
        rows.append(("remote slurm: job end -> committed (median)", n,
                     f"{r['latency_s']['median']:.2f} s", f"<= {t['latency_median_s']} s",
                     status(r["latency_s"]["median"], t["latency_median_s"])))
r = load("sge_throughput")
if r:
    n = f"n={r['n']} x{r['repeat']} P={r['poll_interval']:g}s {r['sge'].get('slots_total')}slots"
    if "ratio_stax_qsub" in r:
        rows.append(("sge: jupyter_stax / qsub loop wall", n, cell(r["ratio_stax_qsub"]),
                     f"<= {r['ratio_target']}", status(r["ratio_stax_qsub"]["median"], r["ratio_target"])))
    if "latency_s" in r:
        lat = r["latency_s"]
        n = f"n={r['latency_n']} x{r['repeat']}"
        rows.append(("sge: job end -> committed final (median)", n, f"{lat['median']:.2f} s",
                     f"<= {r['latency_median_target_s']} s",
                     status(lat["median"], r["latency_median_target_s"])))
        rows.append(("sge: ... p90 / max", n, f"{lat['p90']:.2f} s / {lat['max']:.2f} s", "", ""))
if rows:
    w = [max(len(str(x[i])) for x in rows + [("what", "size", "median [min..max]", "target", "")]) for i in range(5)]
    head = ("what", "size", "median [min..max]", "target", "")
    for row in [head] + rows:
        print("  ".join(str(v).ljust(w[i]) for i, v in enumerate(row)).rstrip())
print(f"\nJSON results in {out}")
EOF
