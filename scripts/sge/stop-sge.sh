#!/usr/bin/env bash
# stop-sge.sh -- stop what start-sge.sh started: delete all jobs, then SIGTERM sge_execd and
# sge_qmaster by the PIDs in their pid files (verified via /proc). The configuration and the
# spool stay (the next start-sge.sh re-uses them).
set -uo pipefail
export PATH=$PATH:/usr/sbin:/sbin
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
SPOOL=/var/spool/gridengine
log() { printf '[stop-sge] %s\n' "$*" >&2; }

# pid_of PIDFILE COMM -> prints the pid if it is alive (not a zombie) and its comm is COMM
pid_of() {
  local pid st
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  st=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$(cut -d')' -f1 <<<"${st#*(}")" = "$2" ] && [ "$(awk '{print $1}' <<<"${st##*) }")" != Z ] && echo "$pid"
}
gone() {  # gone PID -> true once the process has exited (a zombie counts as exited)
  local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$(awk '{print $1}' <<<"${st##*) }")" = Z ]
}
stop() {  # stop PIDFILE COMM
  local pid
  pid=$(pid_of "$1" "$2") || { log "$2 not running ($1)"; return 0; }
  log "stopping $2 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do gone "$pid" && break; sleep 0.1; done
  if ! gone "$pid"; then log "$2 ignored SIGTERM for 15s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null; fi
}

# 1. delete remaining jobs so that their shepherds end cleanly
if pid_of "$SPOOL/qmaster/qmaster.pid" sge_qmaster >/dev/null; then
  if [ -n "$(qstat -u '*' 2>/dev/null)" ]; then
    log "deleting remaining jobs"
    qdel -f -u '*' >/dev/null 2>&1 || true
    for _ in $(seq 100); do [ -z "$(qstat -u '*' 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
# 2. daemons, in reverse start order (execd's shepherds end with their jobs)
for pf in "$SPOOL"/execd/*/execd.pid; do [ -e "$pf" ] && stop "$pf" sge_execd; done
stop "$SPOOL/qmaster/qmaster.pid" sge_qmaster
log "done (configuration and spool kept in $SGE_ROOT and $SPOOL)"
