#!/usr/bin/env bash
# stop-sshd.sh -- stop what start-sshd.sh started under $SSHD_BASE: the listening sshd (by its
# pid file, verified through /proc) and the per-connection sshd processes it forked (so open
# sessions end too, as when a login node goes down). Keeps the config, host key and port.
set -uo pipefail
BASE=${SSHD_BASE:-/tmp/stax-sshd}
PIDF=$BASE/run/sshd.pid
log() { printf '[stop-sshd] %s\n' "$*" >&2; }
state() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; awk '{print $1}' <<<"${st##*) }"; }
comm() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; cut -d')' -f1 <<<"${st#*(}"; }
gone() { local s; s=$(state "$1") || return 0; [ "$s" = Z ]; }

pid=$(cat "$PIDF" 2>/dev/null || true)
if [ -z "$pid" ] || gone "$pid" || [ "$(comm "$pid")" != sshd ]; then
  log "sshd not running ($PIDF)"; rm -f "$PIDF"; exit 0
fi
# the connection processes: the listener's children ("sshd: USER [priv]") and theirs ("sshd:
# USER", which holds the socket), found before the listener goes (then they are re-parented)
kids=$(cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$pid" '
  { pid=$1; s=$0; comm=s; sub(/^[^(]*\(/, "", comm); sub(/\).*$/, "", comm)
    sub(/^.*\) /, "", s); split(s, f, " ")
    if (comm == "sshd" && f[1] != "Z") { parent[pid]=f[2]; n[++k]=pid } }
  END { want[root]=1; changed=1
        while (changed) { changed=0
          for (i=1; i<=k; i++) { p=n[i]; if (!(p in want) && (parent[p] in want)) { want[p]=1; changed=1 } } }
        for (i=1; i<=k; i++) if (n[i] != root && (n[i] in want)) print n[i] }')
log "stopping sshd (pid $pid${kids:+, connections: $(echo $kids)})"
kill -TERM "$pid" 2>/dev/null
for k in $kids; do [ "$(comm "$k")" = sshd ] && kill -TERM "$k" 2>/dev/null; done
for _ in $(seq 100); do
  all=1; for p in $pid $kids; do gone "$p" || all=0; done
  [ $all = 1 ] && break; sleep 0.1
done
for p in $pid $kids; do gone "$p" || { [ "$(comm "$p")" = sshd ] && kill -KILL "$p" 2>/dev/null; }; done
rm -f "$PIDF"
log "done (config and host key kept in $BASE)"
