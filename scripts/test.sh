#!/usr/bin/env bash
# scripts/test.sh -- set up everything and run every test (what .ci/run calls).
#   * installs Debian packages the tests use (slurm-wlm via start-slurm.sh, munge),
#   * installs jupyter-stax editable with its test extras,
#   * starts a real two-node Slurm on 127.0.0.1 (scripts/slurm/start-slurm.sh),
#   * runs ruff, mypy, the labextension's lint and unit tests (jlpm lint:check, jlpm test)
#     and pytest, browser tests included (Slurm tests are required when CI is set).
#   * starts a one-machine Son of Grid Engine (scripts/sge/start-sge.sh) and a test login node
#     (OpenSSH on 127.0.0.1 with a separate remote account, scripts/ssh/start-sshd.sh),
# Knobs: STAX_KEEP_SLURM=1 leaves Slurm running afterwards (faster reruns), STAX_KEEP_SGE=1 SGE,
#        STAX_KEEP_SSHD=1 the test login node;
#        PYTEST_ARGS="-k foo" narrows the run.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[test.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root (Slurm daemons are started as root)"; exit 1; }
PY=${PYTHON:-python3}

log "installing jupyter-stax[test]"
# A previous `jupyter labextension develop` (of this or another checkout) left a symlink where
# the wheel's shared data goes; pip's uninstall of the old install fails on it ("No such file
# ... install.json") and the old checkout would stay installed. The develop step below remakes it.
share=$($PY -c 'import sys; print(sys.prefix)')/share/jupyter/labextensions/jupyter-stax
if [ -L "$share" ]; then rm -f "$share"; fi
if ! $PY -m pip install -q --disable-pip-version-check -e '.[test]' >/tmp/stax-pip-install.log 2>&1; then
  tail -20 /tmp/stax-pip-install.log >&2; log "pip install failed (log: /tmp/stax-pip-install.log)"; exit 1
fi
# the tests must import THIS checkout (the checkout's root is on sys.path here, so run elsewhere)
installed=$(cd / && $PY -c 'import jupyter_stax, os; print(os.path.dirname(os.path.dirname(jupyter_stax.__file__)))')
[ "$installed" = "$PWD" ] || { log "jupyter_stax imports from $installed, not from $PWD"; exit 1; }
$PY -c 'import jupyter_stax, psij, pydantic' || { log "pip install failed"; exit 1; }
# the editable install built the JupyterLab extension (labextension/ -> jupyter_stax/labextension);
# make this Python's JupyterLab load it from the checkout
jupyter labextension develop --overwrite . >/dev/null
jupyter labextension list 2>&1 | grep -q 'jupyter-stax.*enabled.*OK' \
  || { log "the jupyter-stax labextension is not enabled OK"; jupyter labextension list; exit 1; }

log "installing chromium (browser tests)"
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation >/dev/null
fi

log "installing the container tools the StaX image tests run (ch-run, busybox-static)"
# charliecloud-runtime only: the 'charliecloud' meta package pulls in docker and buildah
if ! command -v ch-run >/dev/null || [ ! -x /bin/busybox ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q charliecloud-runtime busybox-static \
    >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q charliecloud-runtime busybox-static >/dev/null; }
fi

log "checking Debian's python3 venv (the Binder test installs jupyter-stax as an unprivileged user)"
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; }
fi

log "starting Slurm (2 nodes)"
export SLURM_NODES=${SLURM_NODES:-2}   # SLURM_CPUS=N advertises more CPUs per node (see the script)
eval "$(bash scripts/slurm/start-slurm.sh)"
export SLURM_CONF
# what to stop on exit, last started first
stops=()
on_exit() { local i; for ((i=${#stops[@]}-1; i>=0; i--)); do bash ${stops[i]} || true; done; }
trap on_exit EXIT
if [ "${STAX_KEEP_SLURM:-0}" != 1 ]; then stops+=(scripts/slurm/stop-slurm.sh); fi

log "starting Grid Engine (installs gridengine-* if missing; SGE tests are required when CI is set)"
sge_t0=$SECONDS
eval "$(bash scripts/sge/start-sge.sh)"
export SGE_ROOT SGE_CELL
log "Grid Engine up after $((SECONDS - sge_t0)) s"
if [ "${STAX_KEEP_SGE:-0}" != 1 ]; then stops+=(scripts/sge/stop-sge.sh); fi

log "starting the test login node (OpenSSH on 127.0.0.1, remote account stax-remote)"
# after Slurm: its sessions get SLURM_CONF (SetEnv), so sbatch over SSH reaches the test Slurm
eval "$(bash scripts/ssh/start-sshd.sh)"
if [ "${STAX_KEEP_SSHD:-0}" != 1 ]; then stops+=(scripts/ssh/stop-sshd.sh); fi

log "ruff + mypy"
$PY -m ruff check jupyter_stax tests bench
$PY -m mypy
lint-imports  # the layering contracts of pyproject.toml ([tool.importlinter])

log "labextension: prettier, eslint, tsc, jest"
(cd labextension && jlpm lint:check && jlpm test --ci)

log "pytest"
export CI=${CI:-}
# shellcheck disable=SC2086
$PY -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-}
