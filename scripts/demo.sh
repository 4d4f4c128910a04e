#!/usr/bin/env bash
# scripts/demo.sh -- set up jupyter-stax and run the demo workflows on the embedded `local`
# cluster (PSI/J's local executor: no scheduler needed). With --slurm, also start the project's
# one-machine Slurm (root only) and run the same workflow there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
echo "== installing jupyter-stax" >&2
$PY -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: Location' || true
export JUPYTER_STAX_WORK_DIR=${JUPYTER_STAX_WORK_DIR:-$HOME/stax-runs}
echo "== clusters" >&2
jupyter stax clusters
echo "== the README workflow on local" >&2
jupyter stax run examples/demo.yaml --cluster local --param n=10 --wait
echo "== a diamond with a retried step on local" >&2
id=$(jupyter stax run examples/diamond.yaml --cluster local -q)
jupyter stax wait "$id"
echo "== what its last step printed (jupyter stax logs $id join)" >&2
jupyter stax logs "$id" join
if [ "${1:-}" = --slurm ]; then
  echo "== starting the one-machine Slurm" >&2
  eval "$(bash scripts/slurm/start-slurm.sh)"
  export SLURM_CONF
  clusters=$(mktemp -d)/clusters.yaml
  printf 'clusters:\n  slurm:\n    scheduler: slurm\n    queue: debug\n    walltime: "00:10:00"\n    poll_interval: 1\n' >"$clusters"
  export JUPYTER_STAX_CLUSTERS=$clusters
  jupyter stax run examples/diamond.yaml --cluster slurm --wait
fi
echo "== all executions" >&2
jupyter stax list
