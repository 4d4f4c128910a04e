#!/usr/bin/env bash
# stop-user-slurm.sh -- stop what start-user-slurm.sh started (this user's slurmd, slurmctld and
# munged under $STAX_SLURM_HOME). --keep-munge leaves munged running.
set -uo pipefail
B=${STAX_SLURM_HOME:-$HOME/.stax-slurm}
stop() {
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}
stop "$B/run/slurmd.pid"
stop "$B/run/slurmctld.pid"
[ "${1:-}" = --keep-munge ] || stop "$B/munge/munged.pid"
