#!/bin/bash
#$ -N my_step
#$ -S /bin/bash
#$ -wd "<TMP>/step dir"
#$ -o <TMP>/work/sge/$JOB_ID.out
#$ -j y
#$ -q all.q
#$ -P stax
#$ -ar 7
#$ -pe smp 4
#$ -l h_rt=26:00:05
#$ -l h_vmem=1048576K
#$ -l arch=lx-amd64
#$ -notify
#$ -ac "x=$(touch /tmp/never)"

export GREETING='it'"'"'s a $VAR'
export N=1

PSIJ_NODEFILE=<TMP>/work/sge/"$JOB_ID.nodefile"
if [ -n "$PE_HOSTFILE" ] && [ -r "$PE_HOSTFILE" ]; then
    awk '{ for (i = 0; i < $2; i++) print $1 }' "$PE_HOSTFILE" >"$PSIJ_NODEFILE"
else
    hostname >"$PSIJ_NODEFILE"
fi
export PSIJ_NODEFILE

/bin/bash <LAUNCHER> <JOB> '' '' '' /dev/null <TMP>/out.txt <TMP>/err.txt /bin/echo 'hello world' '$HOME' 
_PSIJ_EC=$?
echo "$_PSIJ_EC" ><TMP>/work/sge/"$JOB_ID.ec"
if [ "$_PSIJ_EC" = 99 ] || [ "$_PSIJ_EC" = 100 ]; then exit 1; fi
exit "$_PSIJ_EC"
