#!/usr/bin/env bash
# start-user-slurm.sh -- a one-node Slurm run entirely as the CURRENT (unprivileged) user:
# munged, slurmctld and slurmd as this user, state under $STAX_SLURM_HOME (default
# ~/.stax-slurm), daemons on 127.0.0.1. For Binder and other places with no root; jobs run as
# this user. Needs Debian's munge, slurmctld, slurmd and slurm-client installed (binder/apt.txt).
#
#   eval "$(bash scripts/slurm/start-user-slurm.sh)"     # prints: export SLURM_CONF=...
#
# Exit status 1 (and a reason on stderr) when it cannot: commands missing, a daemon that does
# not start, or no idle node within $SLURM_WAIT seconds (default 30). Ports: $SLURMCTLD_PORT
# (default 6917) and $SLURMD_PORT (6918), apart from the root test Slurm's 6817/6818.
# Re-running it reuses daemons that are up. Stop with scripts/slurm/stop-user-slurm.sh.
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin
B=${STAX_SLURM_HOME:-$HOME/.stax-slurm}
CTLD_PORT=${SLURMCTLD_PORT:-6917} D_PORT=${SLURMD_PORT:-6918} WAIT=${SLURM_WAIT:-30}
log() { printf '[start-user-slurm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "cannot start Slurm: $*"; exit 1; }
for c in munged mungekey slurmctld slurmd sbatch sinfo scontrol; do
  command -v "$c" >/dev/null || die "$c not found (install munge, slurmctld, slurmd, slurm-client)"
done
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$(cat "$1")/stat" 2>/dev/null)" != Z ]; }

mkdir -p "$B"/{etc,state,spool,log,run,munge/etc,munge/lib,munge/log}
chmod 700 "$B/munge/etc" "$B/munge/lib" "$B/munge/log"
[ -s "$B/munge/etc/munge.key" ] || mungekey --create --keyfile="$B/munge/etc/munge.key"
chmod 600 "$B/munge/etc/munge.key"
SOCK=$B/munge/munge.sock
if ! alive "$B/munge/munged.pid"; then
  munged --key-file="$B/munge/etc/munge.key" --socket="$SOCK" --pid-file="$B/munge/munged.pid" \
    --log-file="$B/munge/log/munged.log" --seed-file="$B/munge/lib/seed" ||
    die "munged did not start (see $B/munge/log/munged.log)"
fi

HOST=$(hostname -s)
hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ *RealMemory=[0-9]*//; s/ *UpTime=.*//')
mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
mem=$((mem * 90 / 100))
cat >"$B/etc/slurm.conf.new" <<CONF
ClusterName=stax-user
SlurmctldHost=localhost
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$B/run/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
PlugStackConfig=$B/etc/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SlurmdParameters=config_overrides
ReturnToService=2
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 $hw RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
: >"$B/etc/plugstack.conf"
if ! cmp -s "$B/etc/slurm.conf.new" "$B/etc/slurm.conf" 2>/dev/null; then
  bash "$(dirname "${BASH_SOURCE[0]}")/stop-user-slurm.sh" --keep-munge 2>/dev/null || true
  mv "$B/etc/slurm.conf.new" "$B/etc/slurm.conf"
else
  rm -f "$B/etc/slurm.conf.new"
fi
export SLURM_CONF=$B/etc/slurm.conf
alive "$B/run/slurmctld.pid" || slurmctld -i || die "slurmctld did not start (see $B/log/slurmctld.log)"
alive "$B/run/slurmd.pid" || slurmd || die "slurmd did not start (see $B/log/slurmd.log)"
for _ in $(seq "$((WAIT * 2))"); do
  if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    log "Slurm is up as $(id -un): $(sinfo -h -o '%P %D %t' | tr '\n' ' ')"
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
die "no idle node after ${WAIT}s: $(sinfo -h 2>&1 | tr '\n' ' ') (see $B/log)"
