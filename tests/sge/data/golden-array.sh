#!/bin/bash
#$ -N my_step
#$ -S /bin/bash
#$ -wd "<TMP>/step dir"
#$ -o <TMP>/work/sge/$JOB_ID.out
#$ -j y
#$ -l h_rt=0:10:00
#$ -V
#$ -t 1-8
#$ -tc 3


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
