#!/usr/bin/env bash
# qmaster.sh stop|start -- stop only sge_qmaster (jobs keep running under sge_execd, which
# reports them once the qmaster is back), or start it again through start-sge.sh. For tests of
# a Grid Engine whose qmaster does not answer for a while.
set -uo pipefail
SPOOL=/var/spool/gridengine
PIDFILE=$SPOOL/qmaster/qmaster.pid
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[qmaster.sh] %s\n' "$*" >&2; }

case "${1:-}" in
  stop)
    pid=$(cat "$PIDFILE" 2>/dev/null) || { log "no $PIDFILE: sge_qmaster is not running"; exit 0; }
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sge_qmaster ] || { log "pid $pid is not sge_qmaster"; exit 0; }
    log "stopping sge_qmaster (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 150); do [ -d "/proc/$pid" ] || exit 0; sleep 0.1; done
    log "sge_qmaster (pid $pid) did not end within 15 s"; exit 1
    ;;
  start)
    bash "$HERE/start-sge.sh" >/dev/null
    ;;
  *)
    echo "usage: $0 stop|start" >&2; exit 2
    ;;
esac
