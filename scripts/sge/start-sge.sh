#!/usr/bin/env bash
# start-sge.sh -- idempotent, systemd-free Son of Grid Engine (8.1.9, Debian's gridengine-*) on
# one machine for jupyter_stax's tests, benchmarks and demos. Installs the packages if missing
# (debconf preseeded, no service started by the packages), starts sge_qmaster and sge_execd by
# hand as root, configures (configure-sge.sh: from files, no editor) an exec host, submit host,
# queue all.q, a parallel environment 'smp', a project 'stax' and a one-second scheduler
# interval, and waits until the queue instance is ready. Re-uses the daemons when they are running.
# Stop with stop-sge.sh (kills only the PIDs in the daemons' pid files).
#
#   eval "$(./start-sge.sh)"        # starts (or re-uses) SGE and exports SGE_ROOT, SGE_CELL
#
# Root's jobs are allowed (min_uid/min_gid 0): jupyter_stax's tests run as root; every other
# user can submit too. Knobs (env):
#   SGE_SLOTS  slots of all.q (default: the CPUs, at least 4; more = oversubscribe)
#   SGE_WAIT   seconds to wait for the daemons and the queue (default 60)
#   SGE_BASE   where the generated configuration files go (default /tmp/stax-sge)
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default   # where Debian's packages put them
BASE=${SGE_BASE:-/tmp/stax-sge}
ETC=$BASE/etc
WAIT=${SGE_WAIT:-60}
HOST=$(hostname)
SLOTS=${SGE_SLOTS:-$(( $(nproc) > 4 ? $(nproc) : 4 ))}
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=/var/spool/gridengine
QMASTER_PID=$SPOOL/qmaster/qmaster.pid
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[start-sge %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# alive PIDFILE COMM -> true if the pid file names a live (non-zombie) process whose comm is COMM
alive() {
  local pid st
  [ -s "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  st=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$(cut -d')' -f1 <<<"${st#*(}")" = "$2" ] && [ "$(awk '{print $1}' <<<"${st##*) }")" != Z ]
}
# execd_alive -> true if an sge_execd runs (its spool directory is named after the host name it
# resolves for itself, 'localhost' here, so look at every one)
execd_alive() {
  local f
  for f in "$SPOOL"/execd/*/execd.pid; do alive "$f" sge_execd && return 0; done
  return 1
}
# wait_for SECONDS CMD... -> true once CMD succeeds
wait_for() {
  local n=$(($1 * 5)); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

# ------------------------------------------------------------------ 1. install
if ! command -v qsub >/dev/null || [ ! -x /usr/sbin/sge_qmaster ] || [ ! -x /usr/sbin/sge_execd ]; then
  log "installing gridengine-master gridengine-exec gridengine-client"
  # the packages ask whether to configure a cell (yes: the master's postinst creates
  # $SGE_ROOT/default and the spool), its name and the master host
  debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $HOST
gridengine-master shared/gridengineconfig boolean true
gridengine-master shared/gridenginecell string $SGE_CELL
gridengine-master shared/gridenginemaster string $HOST
EOF
  # keep postinst scripts from starting the packaged services (policy-rc.d exit 101)
  prc=/usr/sbin/policy-rc.d made_prc=0
  if [ ! -e $prc ]; then printf '#!/bin/sh\nexit 101\n' >$prc; chmod +x $prc; made_prc=1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends gridengine-master gridengine-exec gridengine-client \
    >/dev/null 2>&1 || { log "apt-get install failed: updating the package lists and retrying"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
    gridengine-master gridengine-exec gridengine-client >/dev/null; }
  if [ $made_prc = 1 ]; then rm -f $prc; fi
fi
if [ ! -s "$COMMON/bootstrap" ]; then
  # installed without the debconf answer above: create the cell as the master's postinst does
  log "creating the cell $SGE_CELL"
  for d in $SPOOL/qmaster $SPOOL/qmaster/job_scripts $SPOOL/spooldb; do
    mkdir -p $d; chown sgeadmin:sgeadmin $d
  done
  su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL $SPOOL/spooldb sgeadmin" sgeadmin >&2
fi

# ------------------------------------------------------------------ 2. host names
# The daemons check that a client's address resolves back to the name it claims: here 127.0.0.1
# resolves to 'localhost' while the host is '$HOST' ("access denied (client IP resolved to host
# name localhost...)"). host_aliases makes them one host.
aliases=("$HOST")
for ip in $(getent ahostsv4 "$HOST" | awk '{print $1}' | sort -u) 127.0.0.1; do
  for n in $(getent hosts "$ip" | cut -d' ' -f2-); do
    [[ " ${aliases[*]} " == *" $n "* ]] || aliases+=("$n")
  done
done
[[ " ${aliases[*]} " == *" localhost "* ]] || aliases+=(localhost)
want_aliases="${aliases[*]}"
restart=0
if [ "$(cat "$COMMON/host_aliases" 2>/dev/null)" != "$want_aliases" ]; then
  echo "$want_aliases" >"$COMMON/host_aliases"; restart=1
fi
if [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" != "$HOST" ]; then
  echo "$HOST" >"$COMMON/act_qmaster"; restart=1
fi
if [ $restart = 1 ] && { alive "$QMASTER_PID" sge_qmaster || execd_alive; }; then
  log "host names changed -> stopping the running daemons first"
  "$HERE/stop-sge.sh"
fi

# ------------------------------------------------------------------ 3. qmaster
if alive "$QMASTER_PID" sge_qmaster; then log "sge_qmaster already running"; else
  log "starting sge_qmaster"
  /usr/sbin/sge_qmaster
fi
wait_for "$WAIT" qconf -sh || die "sge_qmaster does not answer; see $SPOOL/qmaster/messages"

# ------------------------------------------------------------------ 4. configuration
mkdir -p "$ETC"
# fast path: both daemons run with what these scripts (same text, knobs and host) applied last
# time -> skip the dozen qconf round trips (slow on a loaded machine); rm $ETC/applied to redo
stamp=$( { cat "${BASH_SOURCE[0]}" "$HERE/configure-sge.sh"; echo "$SLOTS $HOST $want_aliases"; } \
  | sha256sum | cut -d' ' -f1)
if execd_alive && [ "$(cat "$ETC/applied" 2>/dev/null)" = "$stamp" ]; then
  log "sge_execd already running, configuration unchanged"
else
  rm -f "$ETC/applied"
  SGE_SLOTS=$SLOTS SGE_BASE=$BASE bash "$HERE/configure-sge.sh"
  # ---------------------------------------------------------------- 5. execd
  if execd_alive; then log "sge_execd already running"; else
    log "starting sge_execd"
    /usr/sbin/sge_execd
  fi
  echo "$stamp" >"$ETC/applied"
fi
# ready = the queue instance has no state flag (u = execd unknown, E = error, d = disabled, ...)
qi_ready() {
  qstat -f -q "all.q@$HOST" 2>/dev/null \
    | awk -v q="all.q@$HOST" '$1 == q { found = 1; if (NF > 5) bad = 1 } END { exit !(found && !bad) }'
}
if ! wait_for "$WAIT" qi_ready; then
  if qstat -f -q "all.q@$HOST" | grep -q "all.q@$HOST.* [a-zA-Z]*E"; then
    log "all.q@$HOST is in error state: clearing it"; qmod -c "all.q@$HOST" >&2 || true
  fi
  qmod -e "all.q@$HOST" >/dev/null 2>&1 || true
  wait_for 10 qi_ready || die "queue instance all.q@$HOST not ready: $(qstat -f -q "all.q@$HOST" | tail -1); see $SPOOL/execd/*/messages"
fi

log "SGE is up: all.q@$HOST with $SLOTS slots, PE smp"
cat <<EOF
export SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL
# try:  echo hostname | qsub -cwd -j y; qstat -u '*'; qacct -j
# stop: $HERE/stop-sge.sh
EOF
