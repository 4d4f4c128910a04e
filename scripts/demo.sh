#!/usr/bin/env bash
# scripts/demo.sh -- set up jupyter-stax and show it on the embedded `local` cluster (PSI/J's
# local executor: no scheduler needed).
#
#   bash scripts/demo.sh --lab           # JupyterLab (127.0.0.1) with notebooks/01_quickstart.ipynb
#   bash scripts/demo.sh --lab --slurm   # the same, plus a one-machine Slurm for the Slurm notebooks
#   bash scripts/demo.sh                 # no browser: the demo workflows with the `jupyter stax` CLI
#   bash scripts/demo.sh --slurm         # ... and on the one-machine Slurm too
#
# --slurm starts Slurm as root (scripts/slurm/start-slurm.sh, two nodes) or, for another user,
# a one-node Slurm run as that user (scripts/slurm/start-user-slurm.sh); if neither can start,
# the demos use `local` and say so. PORT (default 8888) sets JupyterLab's port.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LAB=0 SLURM=0
for a in "$@"; do
  case $a in
    --lab) LAB=1 ;;
    --slurm) SLURM=1 ;;
    *) echo "usage: $0 [--lab] [--slurm]" >&2; exit 2 ;;
  esac
done
say() { echo "== $*" >&2; }

here=$($PY -c 'import jupyter_stax, os; print(os.path.dirname(os.path.dirname(jupyter_stax.__file__)))' 2>/dev/null || true)
if [ "$here" != "$PWD" ]; then  # not yet installed from this checkout (editable)
  say "installing jupyter-stax (the JupyterLab extension is built once with jlpm)"
  $PY -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: ' || true
  $PY -c 'import jupyter_stax' || { echo "pip install failed" >&2; exit 1; }
fi
export JUPYTER_STAX_WORK_DIR=${JUPYTER_STAX_WORK_DIR:-$HOME/stax-runs}

if [ $SLURM = 1 ]; then
  say "starting a one-machine Slurm"
  if [ "$(id -u)" = 0 ]; then
    out=$(SLURM_NODES=2 bash scripts/slurm/start-slurm.sh) || out=
  else
    out=$(bash scripts/slurm/start-user-slurm.sh) || out=
  fi
  if [ -n "$out" ]; then
    eval "$out"
    export SLURM_CONF
    clusters=${STAX_DEMO_DIR:-$HOME/.stax-demo}/clusters.yaml
    mkdir -p "$(dirname "$clusters")"
    printf 'clusters:\n  slurm:\n    scheduler: slurm\n    queue: debug\n    walltime: "00:10:00"\n    poll_interval: 1\n' >"$clusters"
    export JUPYTER_STAX_CLUSTERS=$clusters
  else
    say "Slurm could not start here: the demos use the local cluster"
  fi
fi

jupyter stax clusters
if [ $LAB = 1 ]; then
  say "JupyterLab on http://127.0.0.1:${PORT:-8888}/ (Ctrl-C stops it)"
  root=()
  if [ "$(id -u)" = 0 ]; then root=(--allow-root); fi
  exec jupyter lab --ip 127.0.0.1 --port "${PORT:-8888}" --no-browser "${root[@]}" \
    --ServerApp.root_dir="$PWD" notebooks/01_quickstart.ipynb
fi

say "the README workflow on local"
jupyter stax run examples/demo.yaml --cluster local --param n=10 --wait
say "a diamond with a retried step on local"
id=$(jupyter stax run examples/diamond.yaml --cluster local -q)
jupyter stax wait "$id"
say "what its last step printed (jupyter stax logs $id join)"
jupyter stax logs "$id" join
if [ -n "${SLURM_CONF:-}" ]; then
  say "the same diamond on Slurm"
  jupyter stax run examples/diamond.yaml --cluster slurm --wait
fi
say "all executions"
jupyter stax list
