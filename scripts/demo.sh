#!/usr/bin/env bash
# scripts/demo.sh -- set up jupyter-stax and show it on the embedded `local` cluster (PSI/J's
# local executor: no scheduler needed).
#
#   bash scripts/demo.sh --lab           # JupyterLab (127.0.0.1) with notebooks/01_quickstart.ipynb
#   bash scripts/demo.sh --lab --slurm   # the same, plus a one-machine Slurm for the Slurm notebooks
#   bash scripts/demo.sh                 # no browser: the demo workflows with the `jupyter stax` CLI
#   bash scripts/demo.sh --slurm         # ... and on the one-machine Slurm too
#
# Where jupyter-stax goes (the system Python is never changed; Debian's refuses pip, PEP 668):
#   * python3 is a venv's (an activated venv, or PYTHON=/path/to/venv/bin/python): installed there;
#   * python3 already has jupyter-stax installed editable from THIS checkout (a developer's
#     `pip install -e .`, what scripts/test.sh does): used as it is, nothing installed;
#   * otherwise: the project venv .venv/ in the checkout (git-ignored), created with
#     `python3 -m venv` (Debian/Ubuntu: package python3-venv). Activate it later with
#     `source .venv/bin/activate` to type `jupyter stax ...` yourself.
# It is an editable install (`pip install -e .`, built in the venv: --no-build-isolation after
# installing pyproject.toml's build requirements there). A stamp in the venv (hashes of
# pyproject.toml, the server config and, once built, the JupyterLab extension's sources) makes a
# re-run skip pip when nothing changed.
#
# The JupyterLab extension: the CLI demo does not need it, so its build is skipped there
# (SKIP_JUPYTER_BUILDER=1: no Node.js, no npm downloads). --lab builds it once with jlpm (from
# the jupyterlab package), which needs Node.js >= 20.19 (rspack's minimum) and the npm registry,
# unless jupyter_stax/labextension/ already holds a built one; `demo.sh` then reuses it.
#
# --slurm starts Slurm as root (scripts/slurm/start-slurm.sh, two nodes) or, for another user,
# a one-node Slurm run as that user (scripts/slurm/start-user-slurm.sh); if neither can start,
# the demos use `local` and say so. PORT (default 8888) sets JupyterLab's port; PYTHON (default
# python3) the Python to start from.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$(pwd -P)
BASE=${PYTHON:-python3}
LAB=0 SLURM=0
for a in "$@"; do
  case $a in
    --lab) LAB=1 ;;
    --slurm) SLURM=1 ;;
    *) echo "usage: $0 [--lab] [--slurm]" >&2; exit 2 ;;
  esac
done
say() { echo "== $*" >&2; }
die() { echo "demo.sh: $*" >&2; exit 1; }

# exit 0 when Python $1 has jupyter-stax installed editable from this checkout (the installed
# distribution, not the checkout on sys.path: -I leaves the current directory out)
installed_here() {
  "$1" -I - "$CHECKOUT" <<'PY' 2>/dev/null
import json, os, sys
from importlib.metadata import PackageNotFoundError, distribution
from urllib.parse import unquote, urlparse
try:
    dist = distribution("jupyter-stax")
except PackageNotFoundError:
    sys.exit(1)
url = json.loads(dist.read_text("direct_url.json") or "{}")
where = os.path.realpath(unquote(urlparse(url.get("url", "")).path))
if not url.get("dir_info", {}).get("editable") or where != sys.argv[1]:
    sys.exit(1)
import jupyter_stax
sys.exit(os.path.dirname(os.path.dirname(os.path.realpath(jupyter_stax.__file__))) != where)
PY
}

hash_files() { LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -c1-16; }
core_hash() { printf '%s\n' pyproject.toml jupyter-config/jupyter_server_config.d/jupyter_stax.json | hash_files; }
lab_hash() {  # the JupyterLab extension's sources (not node_modules, lib or generated files)
  find labextension docs/openapi.json \( -name node_modules -o -name lib -o -name .yarn \
    -o -name coverage \) -prune -o -type f ! -name tsconfig.tsbuildinfo ! -name .eslintcache \
    ! -path labextension/src/api/openapi.ts -print | hash_files
}
build_requires() {  # pyproject.toml's [build-system] requires, and editables (editable installs)
  "$PY" - <<'PY'
import re
text = open("pyproject.toml", encoding="utf-8").read()
try:
    import tomllib
    reqs = tomllib.loads(text)["build-system"]["requires"]
except ImportError:  # Python 3.10
    block = re.search(r"^\[build-system\]\s*\nrequires\s*=\s*\[(.*?)\]", text, re.M | re.S)
    reqs = re.findall(r'"([^"]+)"', block.group(1)) if block else []
print("\n".join([*reqs, "editables"]))
PY
}
node_ok() {  # Node.js >= 20.19 (rspack 2: ^20.19 || >= 22.12)
  local v major minor
  v=$(node -p process.versions.node 2>/dev/null) || return 1
  IFS=. read -r major minor _ <<<"$v"
  [ "$major" -ge 23 ] || { [ "$major" = 22 ] && [ "$minor" -ge 12 ]; } || { [ "$major" = 20 ] && [ "$minor" -ge 19 ]; }
}

# --- which Python, and is jupyter-stax installed there from this checkout? --------------------
command -v "$BASE" >/dev/null \
  || die "$BASE not found: install Python 3.10+ (Debian/Ubuntu: sudo apt-get install python3 python3-venv)"
"$BASE" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "jupyter-stax needs Python 3.10+, $BASE is $("$BASE" -V 2>&1): set PYTHON=/path/to/python3.10-or-newer"
venv=$("$BASE" -c 'import sys; print(sys.prefix if sys.prefix != sys.base_prefix else "")')
if [ -n "$venv" ]; then
  shown="the active venv $venv"
elif installed_here "$BASE"; then
  PY=$("$BASE" -c 'import sys; print(sys.executable)')
  say "using the jupyter-stax installed from this checkout in $PY (not a venv: demo.sh installs nothing there)"
  export PATH="$(dirname "$PY"):$PATH"
else
  venv=$CHECKOUT/.venv shown=.venv/
  if "$venv/bin/python" -c '' 2>/dev/null; then
    say "no active venv: using the project venv .venv/ (to type jupyter commands yourself: source .venv/bin/activate)"
  else
    "$BASE" -c 'import ensurepip, venv' 2>/dev/null \
      || die "$BASE -m venv is not available (no ensurepip), the project venv needs it: sudo apt-get install python3-venv"
    [ ! -e "$venv" ] || say "the project venv .venv/ is broken (its python does not run): making it again"
    say "no active venv: creating the project venv .venv/ and installing jupyter-stax there (the system Python is left alone; later: source .venv/bin/activate)"
    rm -rf "$venv"
    "$BASE" -m venv "$venv" || die "$BASE -m venv .venv failed (see above)"
  fi
fi

if [ -n "$venv" ]; then
  PY=$venv/bin/python
  stamp=$venv/.jupyter-stax-demo.stamp
  want_core="core $(core_hash)" want_lab=
  [ $LAB = 0 ] || want_lab="lab $(lab_hash)"
  if installed_here "$PY" && grep -qxF "$want_core" "$stamp" 2>/dev/null \
      && { [ -z "$want_lab" ] || grep -qxF "$want_lab" "$stamp"; }; then
    say "jupyter-stax from this checkout is up to date in $shown: nothing to install"
  else
    skip=1
    if [ $LAB = 0 ]; then
      what="(without the JupyterLab extension: the CLI demo does not need it)"
    elif node_ok; then
      skip= what="with the JupyterLab extension (built by jlpm when its sources changed: a few minutes the first time)"
    elif [ -f jupyter_stax/labextension/static/style.js ]; then
      what="with the JupyterLab extension already built in jupyter_stax/labextension/ (no Node.js >= 20.19 here to rebuild it)"
    else
      die "--lab needs the StaX JupyterLab extension built, and building it needs Node.js >= 20.19 (found: $(node --version 2>/dev/null || echo none)): install it from https://nodejs.org/en/download (Debian 12's nodejs package is 18, too old) and run again"
    fi
    say "installing jupyter-stax from this checkout into $shown $what"
    log=$venv/jupyter-stax-install.log
    # the build requirements go into the venv once, and the build runs there (no isolation):
    # pip's isolated build would download and install JupyterLab into a temporary
    # environment on every install (about 2 minutes each); jlpm comes from the venv's JupyterLab
    export PATH="$venv/bin:$PATH"
    mapfile -t reqs < <(build_requires)
    if ! { "$PY" -m pip install --disable-pip-version-check "${reqs[@]}" \
        && env ${skip:+SKIP_JUPYTER_BUILDER=1} "$PY" -m pip install --disable-pip-version-check \
          --no-build-isolation -e .; } >"$log" 2>&1; then
      tail -n 25 "$log" >&2
      die "pip install -e . into $shown failed (full log: $log)"
    fi
    installed_here "$PY" || die "pip install -e . ran, but $PY does not import jupyter-stax from this checkout (log: $log)"
    if [ $LAB = 1 ] && [ ! -f "$venv/share/jupyter/labextensions/jupyter-stax/package.json" ]; then
      die "pip install -e . did not install the JupyterLab extension into $shown (log: $log)"
    fi
    printf '%s\n' "$want_core" ${want_lab:+"$want_lab"} >"$stamp"
  fi
  export PATH="$venv/bin:$PATH"
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
