#!/usr/bin/env bash
# configure-sge.sh -- (called by start-sge.sh, with sge_qmaster running) configure the one-machine
# Grid Engine from files, without an editor: global configuration (root's jobs allowed,
# accounting flushed at once), scheduler (one-second cycle), exec/submit/admin host, PE smp,
# project stax, queue all.q. Each object is loaded only when SGE's copy differs.
# Knobs (env): SGE_SLOTS (slots of all.q and PE smp), SGE_BASE (where the files are written).
set -euo pipefail
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
ETC=${SGE_BASE:-/tmp/stax-sge}/etc
HOST=$(hostname)
SLOTS=${SGE_SLOTS:?}
log() { printf '[configure-sge %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
mkdir -p "$ETC"

# norm: a configuration as SGE prints it, without comments, continuation lines joined and
# blanks squeezed (to compare what SGE has with what we want)
norm() { grep -v '^#' | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | tr -s ' \t' ' '; }
# apply NAME SHOW-CMD LOAD-CMD FILE: load FILE unless SGE already has exactly these settings
apply() {
  local name=$1 show=$2 load=$3 file=$4
  if [ "$($show 2>/dev/null | norm)" = "$(norm <"$file")" ]; then return 0; fi
  log "configuring $name"
  $load "$file" >&2 || die "'$load $file' failed"
}
# set_field FILE KEY VALUE: replace the value of KEY (a line 'KEY  value', perhaps continued
# over lines ending in a backslash) in FILE
set_field() {
  awk -v k="$2" -v v="$3" '
    skip { skip = /\\$/; next }
    $1 == k { printf "%-28s %s\n", k, v; skip = /\\$/; next }
    { print }' "$1" >"$1.new"
  mv "$1.new" "$1"
}

# global configuration: root's jobs run; accounting is written at once (qacct sees a job as
# soon as it left qstat)
qconf -sconf global | grep -v '^#' >"$ETC/global"
set_field "$ETC/global" min_uid 0
set_field "$ETC/global" min_gid 0
set_field "$ETC/global" reporting_params \
  "accounting=true reporting=false flush_time=00:00:15 joblog=false sharelog=00:00:00 accounting_flush_time=00:00:00"
apply "global configuration" "qconf -sconf global" "qconf -Mconf" "$ETC/global"

# scheduler: a one-second cycle, one right after each submit/finish; no load adjustments
# (a job's predicted load would keep the next ones out on a 2-CPU machine)
qconf -ssconf >"$ETC/sched_conf"
set_field "$ETC/sched_conf" schedule_interval 0:0:1
set_field "$ETC/sched_conf" flush_submit_sec 1
set_field "$ETC/sched_conf" flush_finish_sec 1
set_field "$ETC/sched_conf" job_load_adjustments NONE
set_field "$ETC/sched_conf" load_adjustment_decay_time 0:0:0
set_field "$ETC/sched_conf" schedd_job_info true
apply "scheduler" "qconf -ssconf" "qconf -Msconf" "$ETC/sched_conf"

cat >"$ETC/exechost" <<EOF
hostname              $HOST
load_scaling          NONE
complex_values        NONE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
if ! qconf -se "$HOST" >/dev/null 2>&1; then log "adding exec host $HOST"; qconf -Ae "$ETC/exechost" >&2; fi
qconf -ss 2>/dev/null | grep -qx "$HOST" || { log "adding submit host $HOST"; qconf -as "$HOST" >&2; }
qconf -sh 2>/dev/null | grep -qx "$HOST" || { log "adding admin host $HOST"; qconf -ah "$HOST" >&2; }

# parallel environment for multi-slot jobs on one host (-pe smp N)
cat >"$ETC/pe_smp" <<EOF
pe_name            smp
slots              $SLOTS
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     TRUE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
if qconf -sp smp >/dev/null 2>&1; then apply "PE smp" "qconf -sp smp" "qconf -Mp" "$ETC/pe_smp"
else log "adding PE smp"; qconf -Ap "$ETC/pe_smp" >&2; fi

# a project, so that -P (PSI/J's account) can be tried
cat >"$ETC/prj_stax" <<EOF
name stax
oticket 0
fshare 0
acl NONE
xacl NONE
EOF
qconf -sprj stax >/dev/null 2>&1 || { log "adding project stax"; qconf -Aprj "$ETC/prj_stax" >&2; }

cat >"$ETC/all.q" <<EOF
qname                 all.q
hostlist              $HOST
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 $SLOTS
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
if qconf -sq all.q >/dev/null 2>&1; then apply "queue all.q" "qconf -sq all.q" "qconf -Mq" "$ETC/all.q"
else log "adding queue all.q"; qconf -Aq "$ETC/all.q" >&2; fi

