#!/usr/bin/env bash
# scripts/test.sh -- set up everything and run every test (what .ci/run calls).
#   * installs Debian packages the tests use (slurm-wlm via start-slurm.sh, munge, gridengine,
#     openssh-server, charliecloud-runtime and -builders, mpich, chromium),
#   * installs jupyter-stax editable with its test extras,
#   * starts a real two-node Slurm on 127.0.0.1 (scripts/slurm/start-slurm.sh), a one-machine Son
#     of Grid Engine (scripts/sge/start-sge.sh) and a test login node (OpenSSH on 127.0.0.1 with a
#     separate remote account, scripts/ssh/start-sshd.sh),
#   * runs ruff, mypy, lint-imports (the layering), the labextension's lint and unit tests
#     (jlpm lint:check, jlpm test), and last pytest on everything, browser tests included (Slurm,
#     SGE and SSH tests are required when CI is set); beside it, in the background, the fast local
#     suite on Python 3.11, 3.10 and 3.13, the install tests (wheel, Binder, newcomer) and the side
#     part (the tests that need no scheduler of the project; tests/conftest.py has the rules).
# Knobs: STAX_KEEP_SLURM=1 leaves Slurm running afterwards (faster reruns), STAX_KEEP_SGE=1 SGE,
#        STAX_KEEP_SSHD=1 the test login node; STAX_OTHER_PYTHONS="3.10 3.13" (empty: none);
#        PYTEST_ARGS="-k foo" narrows the last pytest run.
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

log "installing the container tools the StaX image tests run (ch-run, ch-image, busybox-static)"
# not the 'charliecloud' meta package; charliecloud-builders (ch-image, the build tests) depends
# on docker.io and buildah, which are installed but never started
if ! command -v ch-run >/dev/null || ! command -v ch-image >/dev/null || [ ! -x /bin/busybox ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends charliecloud-runtime \
    charliecloud-builders busybox-static >/dev/null 2>&1 || { apt-get update -q >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    charliecloud-runtime charliecloud-builders busybox-static >/dev/null; }
fi

log "installing MPICH (an eFlows4HPC mpi step runs a compiled MPI program in a Grid Engine PE)"
if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mpich libmpich-dev \
    >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends mpich libmpich-dev >/dev/null; }
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

# --- the fast part of the suite on the oldest, this and the newest Python (3.10, 3.11, 3.13) ------
# FAST PART (the rule lives in tests/conftest.py, `--stax-part=fast`): every test under tests/core,
# tests/engine, tests/cli and tests/kernel that is not marked slurm, sge, ssh or slow, less the files
# that start a Jupyter server. It needs no scheduler, sshd or server and stops nothing shared, so it
# runs in the background beside the main pytest (`--stax-part=main`, on $PY) and the side part.
# Each other Python gets a venv under $STAX_PYVENVS, named by its version and a hash of pyproject.toml:
# made once (pip install -e '.[test]', which also proves the test extra installs there), re-used
# until pyproject.toml changes. The JupyterLab extension is not built for it (SKIP_JUPYTER_BUILDER=1,
# hatch-jupyter-builder's switch; these tests need no frontend) and PYTHONPATH is this checkout.
# Knobs: STAX_OTHER_PYTHONS="3.10 3.13" (minor versions; empty skips the stage),
#        STAX_PYVENVS (default ~/.cache/jupyter-stax/pyvenvs).
PYVENVS=${STAX_PYVENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-stax/pyvenvs}
find_python() {  # find_python 3.10 -> a CPython 3.10 (pyenv's newest 3.10.x, else python3.10)
  local c
  for c in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/python3 2>/dev/null | sort -rV) \
           "$(command -v "python$1" || true)"; do
    if [ -n "$c" ] && [ "$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$1" ]; then
      echo "$c"; return
    fi
  done
}
fast_suite_on() {  # fast_suite_on 3.10
  local v=$1 py venv t0=$SECONDS t1
  py=$(find_python "$v")
  if [ -z "$py" ]; then
    local msg="Python $v is missing (looked for ${PYENV_ROOT:-$HOME/.pyenv}/versions/$v.*/bin/python3 and python$v on PATH): install it (pyenv install $v, or your system's python$v package; STAX_OTHER_PYTHONS picks the versions)"
    if [ -n "${CI:-}" ]; then log "FAIL: $msg"; exit 1; fi
    log "WARNING: skipping the fast suite on Python $v: $msg"; return 0
  fi
  venv=$PYVENVS/py$v-$(sha256sum pyproject.toml | cut -c1-12)
  if [ ! -e "$venv/.stax-ready" ]; then
    log "python $v: making the venv $venv ($py, jupyter-stax[test] without the labextension build)"
    rm -rf "$venv"; mkdir -p "$PYVENVS"
    find "$PYVENVS" -maxdepth 1 -name "py$v-*" -mtime +7 -exec rm -rf {} +   # unused for a week
    "$py" -m venv "$venv"
    if ! { "$venv/bin/python" -m pip install --disable-pip-version-check 'hatchling>=1.21' \
             'hatch-jupyter-builder>=0.9' editables \
           && SKIP_JUPYTER_BUILDER=1 "$venv/bin/python" -m pip install --disable-pip-version-check \
             --no-build-isolation -e '.[test]'; } >"$venv.log" 2>&1; then
      grep -v '^WARNING: Location' "$venv.log" | tail -30
      log "FAIL: pip install -e '.[test]' on Python $v (log: $venv.log)"; exit 1
    fi
    touch "$venv/.stax-ready"
  fi
  touch "$venv"
  # the venv may have been made from another checkout: point its editable install here
  if [ "$(cd / && env -u PYTHONPATH "$venv/bin/python" -c 'import jupyter_stax, os; print(os.path.dirname(os.path.dirname(jupyter_stax.__file__)))')" != "$PWD" ]; then
    SKIP_JUPYTER_BUILDER=1 "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      --no-deps --no-build-isolation -e . 2>&1 | grep -v '^WARNING: Location' || true
  fi
  t1=$SECONDS
  log "python $v: the fast part of the suite (--stax-part=fast, see tests/conftest.py)"
  local rc=0
  (
    export PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" PYTHONPATH="$PWD"
    python -m pytest -q -p no:cacheprovider --stax-part=fast --basetemp="/tmp/stax-pytest-py$v"
  ) || rc=$?
  log "python $v: done in $((SECONDS - t0)) s (venv $((t1 - t0)) s, tests $((SECONDS - t1)) s), exit status $rc"
  # the status is pytest's (the caller runs this under `|| rc=$?`, where set -e does not act)
  return "$rc"
}
fast_suite_here() {  # the fast part on $PY (the main pytest runs the rest)
  local t0=$SECONDS
  log "python $($PY -c 'import platform; print(platform.python_version())') ($PY): the fast part of the suite"
  local rc=0
  $PY -m pytest -q -p no:cacheprovider --stax-part=fast --durations=10 \
    --basetemp=/tmp/stax-pytest-fast --junitxml=/tmp/stax-pytest-fast.xml || rc=$?
  log "python $PY: fast part done in $((SECONDS - t0)) s, exit status $rc"
  return "$rc"
}
[ -n "${STAX_OTHER_PYTHONS-x}" ] || log "STAX_OTHER_PYTHONS is empty: no fast suite on other Pythons"
export CI=${CI:-}

# --- the install tests (a wheel into a fresh venv, Binder's postBuild, a newcomer's demo.sh) --
# They install jupyter-stax into fresh venvs as other users and build the JupyterLab extension:
# minutes of pip, npm and webpack that share nothing with the other tests (their own users, venvs,
# user Slurm and Lab servers; no scheduler of this run is stopped or counted). They run in the
# background chain below, not in the main pytest, unless PYTEST_ARGS narrows the main run.
# (in this order: the newcomer test starts its own Playwright, which cannot run while the
# session browser of tests/ui is open in the same process)
INSTALL_TESTS=(tests/binder tests/newcomer tests/ui/test_wheel_install.py)
install_tests() {
  # their own screenshots directory and basetemp: the main pytest clears /tmp/stax-screenshots
  # at its start, and two pytest processes must not share a numbered basetemp
  STAX_SCREENSHOTS=/tmp/stax-screenshots/install-tests \
    $PY -m pytest -q -p no:cacheprovider --durations=10 --basetemp=/tmp/stax-pytest-install \
    --junitxml=/tmp/stax-pytest-install.xml "${INSTALL_TESTS[@]}"
}

# --- the side part (tests/conftest.py's SIDE_FILES: servers, Labs, kernels and browsers on local, sshds
# of their own, pure functions; nothing of the project's Slurm or Grid Engine, which the main pytest
# stops for a while) runs beside the main pytest (`--stax-part=main`) as `--stax-part=side`, without
# SLURM_CONF (a Slurm command of a side test that skipped the rule fails instead of racing the
# main pytest's outages), with its own screenshots directory and basetemp.
side_part() {
  local t0=$SECONDS rc=0
  log "the side part of the suite (--stax-part=side, see tests/conftest.py)"
  STAX_SCREENSHOTS=/tmp/stax-screenshots/side env -u SLURM_CONF \
    $PY -m pytest -q -p no:cacheprovider --stax-part=side --durations=10 \
    --basetemp=/tmp/stax-pytest-side --junitxml=/tmp/stax-pytest-side.xml || rc=$?
  log "the side part done in $((SECONDS - t0)) s, exit status $rc"
  return "$rc"
}

# The background runs beside the main pytest in three lanes, each one job after the other, at a
# lower CPU priority (nice 10): the main suite mostly waits (on Slurm, Grid Engine, sshd, servers,
# the browser), and so do the lanes (the fast part alone: 8:55 wall for 289 CPU-seconds, 54% of one
# core), which soak up the idle CPU. Lane 1: the fast part on $PY, then the install tests; lane 2:
# the fast part on each other Python; lane 3: the side part (from the start; on this 2-core machine
# loaded by other work, load 3.5-9: 13:00 and 11:25 wall, 481 and 365 CPU-seconds; its tests took
# 418 s inside the main pytest of a 24-minute run). (With PYTEST_ARGS the main pytest runs everything it
# selects and the background only the other Pythons.) Each job writes its own log, printed whole
# after the main pytest; any failing fails the run. Measured on the 2-core CI machine with lanes 1
# and 2 beside a main pytest of the main and side parts: 10:00 + 8:20 and 10:17 + 8:38, the main
# pytest 27:07 of a 29.7-minute run, its last 8 minutes alone.
bg_names=() bg_jobs=() bg_lanes=()
if [ -z "${PYTEST_ARGS:-}" ]; then
  bg_names+=("the fast part on Python $($PY -c 'import platform; print(platform.python_version())')")
  bg_jobs+=(here) bg_lanes+=(1)
  bg_names+=("the install tests") bg_jobs+=(install) bg_lanes+=(1)
fi
for v in ${STAX_OTHER_PYTHONS-3.10 3.13}; do
  bg_names+=("the fast part on Python $v") bg_jobs+=("$v") bg_lanes+=(2)
done
if [ -z "${PYTEST_ARGS:-}" ]; then
  bg_names+=("the side part") bg_jobs+=(side) bg_lanes+=(3)
fi
bg_dir=$(mktemp -d /tmp/stax-background.XXXXXX)
bg_logs=()
for i in "${!bg_names[@]}"; do bg_logs+=("$bg_dir/$i.log"); done
background_lane() {  # background_lane N: the lane's jobs, one after the other
  local i rc
  renice -n 10 -p $BASHPID >/dev/null
  for i in "${!bg_names[@]}"; do
    [ "${bg_lanes[i]}" = "$1" ] || continue
    rc=0
    case ${bg_jobs[i]} in
      here) (fast_suite_here) >"${bg_logs[i]}" 2>&1 || rc=$? ;;
      install) (install_tests) >"${bg_logs[i]}" 2>&1 || rc=$? ;;
      side) (side_part) >"${bg_logs[i]}" 2>&1 || rc=$? ;;
      *) (fast_suite_on "${bg_jobs[i]}") >"${bg_logs[i]}" 2>&1 || rc=$? ;;
    esac
    echo "$rc" >"$bg_dir/$i.rc"
  done
}
main_args=()
bg_pids=()
if [ ${#bg_names[@]} -gt 0 ]; then
  for lane in 1 2 3; do
    if printf '%s\n' "${bg_lanes[@]}" | grep -qx "$lane"; then background_lane "$lane" & bg_pids+=($!); fi
  done
  log "in the background, in lanes: $(for l in 1 2 3; do
    names=(); for i in "${!bg_names[@]}"; do [ "${bg_lanes[i]}" = "$l" ] && names+=("${bg_names[i]}"); done
    [ ${#names[@]} -gt 0 ] && printf '%s(%s) ' "$l" "$(IFS=,; echo "${names[*]}" | sed 's/,/ then /g')"
  done)(logs follow the main pytest)"
fi
if [ -z "${PYTEST_ARGS:-}" ]; then
  main_args=("${INSTALL_TESTS[@]/#/--ignore=}" --stax-part=main)
fi

log "pytest"
set +e
# shellcheck disable=SC2086
$PY -m pytest -q -p no:cacheprovider --durations=30 --junitxml=/tmp/stax-pytest.xml \
  "${main_args[@]}" ${PYTEST_ARGS:-} 2>&1 | tee /tmp/stax-pytest.log
main_rc=${PIPESTATUS[0]}
set -e
summary=$(tail -n 1 /tmp/stax-pytest.log)

bg_failed=0
if [ ${#bg_names[@]} -gt 0 ]; then
  log "waiting for the background lanes"
  for p in "${bg_pids[@]}"; do wait "$p" || true; done
  for i in "${!bg_names[@]}"; do echo; echo "=== ${bg_names[i]} ==="; cat "${bg_logs[i]}" 2>/dev/null; done
fi
# the run's closing lines: every background job's outcome, the main suite's count last
for i in "${!bg_names[@]}"; do
  rc=$(cat "$bg_dir/$i.rc" 2>/dev/null || echo "no exit status")
  # a summary that counts failures or errors fails the job whatever its exit status said
  if [ "$rc" = 0 ] && grep -E '[0-9]+ passed' "${bg_logs[i]}" | tail -n 1 | grep -qE '[0-9]+ (failed|errors?)'; then
    rc="0, but its summary counts failures"
  fi
  if [ "$rc" = 0 ]; then
    log "${bg_names[i]}: passed ($(grep -E '[0-9]+ passed' "${bg_logs[i]}" | tail -n 1))"
  else
    bg_failed=1; log "FAIL: ${bg_names[i]} (exit $rc; its log above)"
  fi
done
rm -rf "$bg_dir"
log "main pytest (Python $($PY -c 'import platform; print(platform.python_version())')): $summary"
[ "$main_rc" = 0 ] && [ "$bg_failed" = 0 ]
