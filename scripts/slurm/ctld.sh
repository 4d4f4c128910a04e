#!/usr/bin/env bash
# ctld.sh stop|start -- stop or start only slurmctld of the cluster started by start-slurm.sh
# (used by the "scheduler unreachable" tests; slurmd and running jobs are left alone).
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin
BASE=${SLURM_BASE:-/tmp/stax-slurm}
export SLURM_CONF=$BASE/etc/slurm.conf
PIDF=$BASE/run/slurmctld.pid
live() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; [ "$(awk '{print $1}' <<<"${st##*) }")" != Z ]; }
case "${1:-}" in
  stop)
    pid=$(cat "$PIDF" 2>/dev/null || true)
    [ -n "$pid" ] && live "$pid" || { echo "slurmctld not running" >&2; exit 0; }
    kill -TERM "$pid"
    for _ in $(seq 150); do live "$pid" || break; sleep 0.1; done
    live "$pid" && kill -KILL "$pid"
    echo "slurmctld stopped" >&2 ;;
  start)
    slurmctld -f "$SLURM_CONF"
    for _ in $(seq 300); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.1; done
    scontrol ping | grep -q 'is UP' || { echo "slurmctld did not come back" >&2; exit 1; }
    echo "slurmctld started" >&2 ;;
  *) echo "usage: $0 stop|start" >&2; exit 2 ;;
esac
