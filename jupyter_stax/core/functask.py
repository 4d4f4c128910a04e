"""Function tasks (``@stax.task``): the files a task's step reads and writes, the runner that
calls the function on the cluster, the Python probe and the safety rules of result files.

A function task is an ordinary Python step (``language: python``) whose body is
:data:`RUNNER_SOURCE` followed by the call (:func:`task_source`). What it reads and writes
(files in the step directory; a ``.map`` instance: in its ``<i>/``):

* the runner, named by its digest in the stored step (:func:`runner_ref`) and put into the
  step's script when the engine renders it (:func:`expand_runner`): a digest that is not this
  version's runner is refused with the reason, never run with another runner. Steps stored
  before, and exported tasks, carry the runner itself.
* the call, in the step's script itself (base64, see :func:`task_source`: no file to stage,
  so it goes wherever a script goes: a Jupyter server's REST API, a remote cluster, a
  workflow file). One JSON header line (the Python and cloudpickle versions of the kernel
  that made it), then a cloudpickle of ``(function, calls)`` where ``calls`` is a list of
  ``(args, kwargs)``: one for a call, one per element for a map (instance ``i`` runs
  ``calls[i]``). A future passed as an argument is a *persistent id* in
  that pickle (never a marker inside the user's data): ``("step", NAME, INDEX)`` for a task of
  the same execution (read from the sibling step directory, or from the staged copy when the
  upstream ran on another cluster), ``("path", ABSOLUTE_PATH)`` for a result of an earlier
  execution on a file system this cluster sees, ``("value", VALUE)`` for one that came
  through the notebook.
* ``stax.result.<step>.pkl``: the return value (cloudpickle), mode 0600, written atomically.
* ``stax.error.<step>.json``: what went wrong instead (exception type, message, traceback text,
  or the reason the call could not be unpickled at all: another Python, no cloudpickle).

The runner needs nothing of jupyter_stax on the cluster: Python and cloudpickle. It checks the
header's Python version BEFORE unpickling, so a mismatch is a sentence, never a traceback.

Only files this user's own jobs wrote are ever unpickled (:func:`read_result_file`): a shared
scratch file system lets others write into directories one can read, and unpickling runs code.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidWorkflow, StaxError

__all__ = [
    "FORMAT",
    "MAX_CALL_BYTES",
    "PROBE_SOURCE",
    "RUNNER_DIGEST",
    "RUNNER_SOURCE",
    "PythonMismatch",
    "ResultRefused",
    "TaskError",
    "call_header",
    "error_file",
    "expand_runner",
    "parse_probe",
    "probe_problem",
    "read_result_file",
    "render_task_step",
    "result_file",
    "runner_ref",
    "task_source",
]

#: version of the call's layout (the runner refuses another)
FORMAT = 1
#: a call bigger than this is refused (it travels in the step's script): big data goes as a
#: task's result (a future) or a file
MAX_CALL_BYTES = 16 << 20
#: a result file is never bigger than this to be read into the notebook (bytes)
MAX_RESULT_BYTES = 1 << 34


def result_file(step: str, index: int | None = None) -> str:
    """The result file of a task (``index``: a map instance), relative to its step directory."""
    name = f"stax.result.{step}.pkl"
    return name if index is None else f"{index}/{name}"


def error_file(step: str, index: int | None = None) -> str:
    """The error record of a task that raised (or could not run its call)."""
    name = f"stax.error.{step}.json"
    return name if index is None else f"{index}/{name}"


def call_header(step: str, count: int | None) -> bytes:
    """The call's first line: what the runner checks before it unpickles anything."""
    try:
        import cloudpickle

        cp: str | None = cloudpickle.__version__
    except ImportError:  # pragma: no cover - a dependency
        cp = None
    head = {
        "format": FORMAT,
        "python": list(sys.version_info[:3]),
        "cloudpickle": cp,
        "step": step,
        "map": count,
    }
    return json.dumps(head, sort_keys=True).encode() + b"\n"


# ---------------------------------------------------------------------- errors
class PythonMismatch(StaxError):
    """The Python of a cluster (or image) cannot run this kernel's function tasks."""

    http_status = 409


class ResultRefused(StaxError):
    """A result file that this user's own job may not have written: never unpickled."""

    http_status = 403


@dataclass(frozen=True)
class TaskError:
    """The error record of a task: ``kind`` is ``exception`` (the function raised), ``python``
    or ``cloudpickle`` (the call could not be loaded there), ``upstream`` (an argument's task
    left no result) or ``result`` (the return value could not be pickled)."""

    kind: str
    type: str
    message: str
    traceback: str

    @classmethod
    def parse(cls, data: bytes) -> TaskError:
        try:
            d = json.loads(data)
            return cls(str(d["kind"]), str(d["type"]), str(d["message"]), str(d["traceback"]))
        except (ValueError, KeyError, TypeError) as e:
            return cls("garbled", "", f"the task's error record is not readable ({e})", "")

    def summary(self) -> str:
        """``ValueError: bad input`` (or the sentence of a load problem)."""
        if self.kind == "exception":
            short = self.type.rpartition(".")[2] or "exception"
            return f"{short}: {self.message}" if self.message else short
        return self.message


# ---------------------------------------------------------------------- result files
def read_result_file(
    path: str | Path, execution_dir: str | Path, *, uid: int | None = None
) -> bytes:
    """The bytes of a result file, after checking that it is one this user's job wrote:
    a regular file (not a link) inside ``execution_dir``, owned by ``uid`` (default: this
    process's user) and not writable by group or others. :class:`ResultRefused` with the
    reason otherwise (FileNotFoundError when it is absent). The checks are made on the
    opened file, so it cannot be swapped between the check and the read."""
    p = Path(path)
    uid = os.getuid() if uid is None else uid
    root = os.path.realpath(execution_dir)
    real = os.path.realpath(p.parent)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise ResultRefused(
            f"result file {p} is not inside the execution's directory {root}: not loaded"
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        if e.errno is not None and os.path.islink(p):
            raise ResultRefused(
                f"result file {p} is a symbolic link: not loaded (a job writes a regular file)"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        problem = result_problem(st.st_mode, st.st_uid, uid)
        if problem is None and st.st_size > MAX_RESULT_BYTES:
            problem = f"it is {st.st_size:,} bytes (at most {MAX_RESULT_BYTES:,} are read)"
        if problem is not None:
            raise ResultRefused(
                f"result file {p} is refused: {problem}. Only results written by your own "
                "jobs are unpickled (unpickling runs code); run the task again"
            )
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def result_problem(mode: int, owner: int, uid: int) -> str | None:
    """Why a file of this mode and owner is not a result this user's job wrote (None: it is)."""
    if not stat.S_ISREG(mode):
        return "it is not a regular file"
    if owner != uid:
        return f"it is owned by uid {owner}, not by you (uid {uid})"
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"it is writable by {'group' if mode & stat.S_IWGRP else 'others'} " + (
            f"(mode {stat.S_IMODE(mode):04o})"
        )
    return None


# ---------------------------------------------------------------------- the probe
#: printed by the cluster's (or image's) Python: what a function task needs there
PROBE_SOURCE = (
    "import json, sys\n"
    "try:\n"
    "    import cloudpickle\n"
    "    cp = cloudpickle.__version__\n"
    "except Exception:\n"
    "    cp = None\n"
    "print('STAX-PROBE ' + json.dumps(dict(python=list(sys.version_info[:3]), "
    "executable=sys.executable, cloudpickle=cp)))\n"
)


@dataclass(frozen=True)
class Probe:
    python: tuple[int, int, int]
    executable: str
    cloudpickle: str | None


def parse_probe(text: str) -> Probe | None:
    """The probe's answer from its output (None: no answer line)."""
    for line in text.splitlines():
        if line.startswith("STAX-PROBE "):
            try:
                d = json.loads(line[len("STAX-PROBE ") :])
                v = [int(x) for x in d["python"]][:3]
                return Probe(
                    (v[0], v[1], v[2]),
                    str(d.get("executable") or "python3"),
                    None if d.get("cloudpickle") is None else str(d["cloudpickle"]),
                )
            except (ValueError, KeyError, TypeError, IndexError):
                return None
    return None


def probe_problem(
    probe: Probe, where: str, kernel: tuple[int, ...] | None = None
) -> str | None:
    """What keeps function tasks from running ``where`` (``cluster 'slurm'``, ``image 'x' on
    cluster 'slurm'``), with the fix; None when its Python fits this kernel's."""
    kv = tuple((kernel or sys.version_info)[:2])
    there = ".".join(map(str, probe.python[:2]))
    here = ".".join(map(str, kv))
    if tuple(probe.python[:2]) != kv:
        return (
            f"the python of {where} ({probe.executable}) is {there}, this kernel runs {here}: "
            f"a function defined in the notebook only loads in the same Python version. Use a "
            f"kernel with Python {there}, or give {where} a Python {here} with cloudpickle "
            f"(STAX_PYTHON=/path/to/python{here} in the cluster's env, or an image that has it)"
        )
    if probe.cloudpickle is None:
        return (
            f"the python of {where} ({probe.executable}, {there}) has no cloudpickle, which "
            f"runs function tasks: install it there ({probe.executable} -m pip install "
            f"cloudpickle), or set STAX_PYTHON in the cluster's env to a Python {here} "
            "that has it"
        )
    return None


# ---------------------------------------------------------------------- the runner
#: the first line of every function task's source: how the job script renderer knows one
TASK_MARK = "# jupyter_stax function task: calls the function pickled below\n"
#: the body of a function task's Python step (see the module docstring); needs only Python
#: and cloudpickle on the cluster
RUNNER_SOURCE = TASK_MARK + r'''
import base64 as _b64, io as _io, json as _json, os as _os, pickle as _pickle, sys as _sys
import traceback as _tb


def _stax_task_main(call, kwargs=None):
    here = _os.environ["STAX_STEP_DIR"]
    index = _os.environ.get("STAX_SWEEP_INDEX")
    step = _os.environ["STAX_STEP"]
    step_dir = _os.path.dirname(here) if index is not None else here
    result = _os.path.join(here, "stax.result." + step + ".pkl")
    error = _os.path.join(here, "stax.error." + step + ".json")
    for old in (result, error):
        try:
            _os.unlink(old)
        except FileNotFoundError:
            pass

    def write(path, data):
        tmp = path + ".tmp"
        fd = _os.open(tmp, _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC, 0o600)
        with _os.fdopen(fd, "wb") as f:
            f.write(data)
        _os.replace(tmp, path)

    def fail(kind, typ, message, text="", code=3):
        rec = dict(kind=kind, type=typ, message=message, traceback=text)
        write(error, _json.dumps(rec).encode())
        _sys.stderr.write((text or "") + "jupyter_stax: " + message + "\n")
        _sys.exit(code)

    line, _, body = _b64.b64decode(call).partition(b"\n")
    head = _json.loads(line)
    if head.get("format") != 1:
        fail("python", "", "the call has format %r; this runner reads 1" % head.get("format"))
    want = tuple(head["python"][:2])
    if tuple(_sys.version_info[:2]) != want:
        fail("python", "", "this job's python (%s) is %d.%d, the kernel that made the task runs "
             "%d.%d: set STAX_PYTHON in the cluster's env to a Python %d.%d with cloudpickle, "
             "or use an image that has it" % ((_sys.executable,) + tuple(_sys.version_info[:2])
                                              + want + want))
    try:
        import cloudpickle  # noqa: F401  (the functions and classes pickled by value need it)
    except ImportError:
        fail("cloudpickle", "", "this job's python (%s) has no cloudpickle: install it there, "
             "or set STAX_PYTHON in the cluster's env to a Python that has it" % _sys.executable)

    def checked(path):
        st = _os.lstat(path)
        if not (st.st_mode & 0o170000 == 0o100000) or st.st_uid != _os.getuid() or (
            st.st_mode & 0o022
        ):
            fail("upstream", "", "upstream result %s is not a regular file of yours that only "
                 "you can write: not loaded" % path)
        with open(path, "rb") as f:
            return _pickle.load(f)

    def load_ref(pid):
        if pid[0] == "value":
            return pid[1]
        if pid[0] == "path":
            return checked(pid[1])
        name, i = pid[1], pid[2]
        rel = ("%d/" % i if i is not None else "") + "stax.result." + name + ".pkl"
        for cand in (_os.path.join(step_dir, rel),
                     _os.path.join(_os.path.dirname(step_dir), name, rel)):
            if _os.path.exists(cand):
                return checked(cand)
        fail("upstream", "", "upstream task %s%s left no result (%s)" % (
            name, "[%d]" % i if i is not None else "", rel))

    class Loader(_pickle.Unpickler):
        def persistent_load(self, pid):
            return load_ref(pid)

    try:
        func, calls = Loader(_io.BytesIO(body)).load()
        if kwargs is None:
            args, kwargs = calls[int(index) if index is not None else 0]
        else:  # an exported task: the arguments are the workflow's parameters
            args = ()
    except SystemExit:
        raise
    except BaseException as e:
        fail("load", type(e).__module__ + "." + type(e).__qualname__,
             "the call could not be loaded here: %s: %s (a module the function uses must be "
             "importable on the cluster)" % (type(e).__name__, e), _tb.format_exc())
    try:
        value = func(*args, **kwargs)
    except BaseException as e:
        fail("exception", type(e).__module__ + "." + type(e).__qualname__, str(e),
             _tb.format_exc(), code=1)
    try:
        data = cloudpickle.dumps(value)
    except BaseException as e:
        fail("result", type(e).__module__ + "." + type(e).__qualname__,
             "the return value could not be pickled: %s: %s" % (type(e).__name__, e),
             _tb.format_exc())
    write(result, data)


'''[1:]


#: the runner's digest (sha256 of :data:`RUNNER_SOURCE`): what a task's step names instead of
#: carrying the runner (see :func:`task_source`)
RUNNER_DIGEST = hashlib.sha256(RUNNER_SOURCE.encode()).hexdigest()
#: the line after :data:`TASK_MARK` of a step that names its runner by digest
_REF_PREFIX = "# the runner: jupyter_stax/core/functask.py RUNNER_SOURCE, sha256 "


#: the line after the reference: where an engine older than the reference (it runs the body
#: without putting the runner in) would run it, a sentence instead of a NameError
_REF_GUARD = (
    "if '_stax_task_main' not in globals(): raise SystemExit('jupyter_stax: this function "
    "task names its runner by digest, and the engine that wrote its job script is an older "
    "jupyter_stax that does not put the runner in: restart the Jupyter server or the "
    "engine so that it runs the same jupyter_stax as the kernel, and call the function "
    "again')\n"
)


def runner_ref(digest: str = RUNNER_DIGEST) -> str:
    """The first lines of a task's source that names the runner instead of carrying it."""
    return f"{TASK_MARK}{_REF_PREFIX}{digest}\n{_REF_GUARD}"


def expand_runner(source: str, *, where: str = "function task") -> str:
    """``source`` with its runner reference (:func:`runner_ref`) replaced by the runner it
    names; a source that carries its runner (a step stored before, an exported task) is
    returned as it is. :class:`InvalidWorkflow` when the digest is not this version's runner
    (a task made by another jupyter_stax, or an edited step): never run with another runner."""
    head = TASK_MARK + _REF_PREFIX
    if not source.startswith(head):
        return source
    end = source.find("\n", len(head))
    digest = source[len(head) : end if end >= 0 else len(source)].strip()
    if digest != RUNNER_DIGEST:
        raise InvalidWorkflow(
            f"{where} names the function-task runner sha256 {digest[:16] or '(none)'}..., "
            f"which this jupyter_stax does not have (its runner is {RUNNER_DIGEST[:16]}...): "
            "the task was made by another version of jupyter_stax, or its step was edited. "
            "Call the function again from the notebook to submit it anew"
        )
    rest = source[end + 1 :] if end >= 0 else ""
    return RUNNER_SOURCE + (rest[len(_REF_GUARD) :] if rest.startswith(_REF_GUARD) else rest)


def task_source(call: bytes, params: list[str] | None = None, *, ref: bool = False) -> str:
    """The body of a task's Python step: the runner, then the call (header and pickle) in
    base64 lines. ValueError above :data:`MAX_CALL_BYTES`. ``params``: an exported task,
    called with these keyword arguments, each the workflow parameter of that name (a
    ``{{name}}`` placeholder in code position: its typed value, and a missing one is refused
    before anything is submitted, as for any step). ``ref``: the runner named by its digest
    (:func:`runner_ref`) instead of carried: the step's script gets it when the engine renders
    it (:func:`render_task_step`), so the ~4 KB of every task's step are not built, sent,
    validated, stored and read back by the notebook and the engine; not with ``params`` (an
    exported task is a standalone unit)."""
    import base64

    if len(call) > MAX_CALL_BYTES:
        raise ValueError(
            f"the call pickles to {len(call) / 2**20:.1f} MiB (at most "
            f"{MAX_CALL_BYTES >> 20} MiB travel with a task): pass big data as the result of "
            "a task (a future), or write it to a file the task reads"
        )
    text = base64.b64encode(call).decode()
    lines = "\n".join(text[i : i + 100] for i in range(0, len(text), 100))
    kw = ""
    if params is not None:
        for p in params:
            if not p.isidentifier():
                raise ValueError(f"parameter {p!r} is not an identifier")
        kw = ", dict(" + ", ".join(f"{p}={{{{{p}}}}}" for p in params) + ")"
    runner = runner_ref() if ref and params is None else RUNNER_SOURCE
    return f'{runner}_stax_task_main("""\n{lines}\n"""{kw})\n'


# ---------------------------------------------------------------------- the step script
def _worker_source() -> tuple[str, str]:
    """The text of :mod:`.taskworker` (carried by each task's step script) and its digest."""
    global _WORKER
    if _WORKER is None:
        import hashlib

        text = Path(__file__).with_name("taskworker.py").read_text(encoding="utf-8")
        # the worker's name covers the hand-over's bash too (the request's writer)
        both = text + _HANDOVER + _BOOT
        _WORKER = (text, hashlib.sha256(both.encode()).hexdigest()[:16])
    return _WORKER


_WORKER: tuple[str, str] | None = None


def worker_digest() -> str:
    """The digest that names this version's task workers (their files' names begin with it)."""
    return _worker_source()[1]
#: the line after which a task's step script is Python (the shell never reads past ``exec``)
_PY_MARK = "# ---- Python, read by the line above (the shell never gets here) ----"
#: the line after which a task's step script carries :mod:`.taskworker` (the Python above
#: starts the warm worker from it)
_TW_MARK = "# ---- the task worker (jupyter_stax/core/taskworker.py) ----"
#: the ``-c`` program of a task's Python: its step script read in one go, the task worker's
#: entry compiled from the end of it, the Python part run by it (``python3 - <<EOF`` would make
#: bash parse the heredoc and Python read it one byte per system call)
_BOOT = (
    "import sys; p = sys.argv.pop(1); s = open(p, \"rb\").read().decode(); "
    f"i = s.index(\"\\n{_PY_MARK}\"); j = s.index(\"\\n{_TW_MARK}\", i); "
    "w = s[s.index(\"\\n\", j + 1) + 1:]; g = {\"__name__\": \"stax_taskworker\"}; "
    "exec(compile(w[:w.index(\"# \" + \"-\" * 70 + \" the worker\\n\")], "
    "\"<stax-taskworker>\", \"exec\"), g); g[\"task_entry\"](w, s[i:j + 1], \"DIGEST\")"
)
#: every exported variable's name, without a process (bash >= 4.4: ``${!A@}`` names the
#: variables beginning with A, ``${n@a}`` has an x for an exported one)
_ALL_NAMES = " ".join(
    "${!" + c + "@}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
#: the hand-over in bash (see :mod:`.taskworker`): a pipe of this job's (a here-string's: no
#: process started, no fork in bash >= 5.1), the request file, this job's pid into the
#: worker's FIFO, then the worker's answers on the pipe. Succeeds (``_stax_tw_rc``: the
#: task's status) or returns 1: run the task here
_HANDOVER = r"""_stax_tw_close() {
  exec {_stax_tw_r}<&- {_stax_tw_x}>&- {_stax_tw_1}>&- {_stax_tw_2}>&-
}
# a signal of this job's goes to its task through the worker, which alone knows whether the
# task still runs (the child that ran it may run a later task by now)
_stax_tw_sig() {
  [ -p "$_stax_tw_b.fifo" ] && printf 'S%s %s\n' "$BASHPID" "$1" 1<>"$_stax_tw_b.fifo"
} 2>/dev/null
_stax_tw_handover() {
  _stax_tw_rc= _stax_tw_pid= _stax_tw_q=$_stax_tw_b.$BASHPID.req _stax_tw_s=${BASH_SOURCE[0]}
  # stdout and stderr as descriptors of their own: the worker opens them (a redirection of a
  # builtin below moves 1 and 2 for a moment)
  exec {_stax_tw_1}>&1 {_stax_tw_2}>&2 {_stax_tw_r}<<<'' || return 1
  # a pipe of this job's: a here-string is one in bash >= 5.1 (no fork; its newline read
  # here), in 5.0 a temporary file, then a process substitution's (one fork)
  if [ -p "/proc/$BASHPID/fd/$_stax_tw_r" ]; then
    IFS= read -r -u "$_stax_tw_r" _stax_tw_l
  else
    exec {_stax_tw_r}<&- && exec {_stax_tw_r}< <(:) || { _stax_tw_close; return 1; }
  fi
  exec {_stax_tw_x}>"/proc/$BASHPID/fd/$_stax_tw_r" || { _stax_tw_close; return 1; }
  # the exported variables: their names by compgen -e (into the request file, read back: no
  # process), else every variable's name by its first character; NAME=VALUE written at once
  if ! { compgen -e > "$_stax_tw_q" && mapfile -t _stax_tw_ns < "$_stax_tw_q"; } 2>/dev/null
  then
    _stax_tw_ns=()
    for _stax_tw_n in ALL_NAMES; do
      [[ ${!_stax_tw_n@a} != *x* ]] || _stax_tw_ns+=("$_stax_tw_n")
    done
  fi
  _stax_tw_e=()
  for _stax_tw_n in "${_stax_tw_ns[@]}"; do _stax_tw_e+=("$_stax_tw_n=${!_stax_tw_n}"); done
  if ! { { printf '%s\0' 'STAX-TASK 2' "$PWD" "$_stax_tw_s" "$_stax_tw_r" "$_stax_tw_1" \
             "$_stax_tw_2" && umask && printf '\0' && printf '%s\0' "${_stax_tw_e[@]}"; } \
           > "$_stax_tw_q" &&
         printf '%s\n' "$BASHPID" 1<>"$_stax_tw_b.fifo"; } 2>/dev/null; then
    rm -f -- "$_stax_tw_q"; _stax_tw_close; return 1
  fi
  _stax_tw_p=
  while :; do
    if IFS= read -r -t 1 -u "$_stax_tw_r" _stax_tw_l; then
      _stax_tw_l=$_stax_tw_p$_stax_tw_l _stax_tw_p=
      case $_stax_tw_l in
        P*) _stax_tw_pid=${_stax_tw_l#P}  # it runs: the worker forwards our signals to it
            exec {_stax_tw_y}<"/proc/$BASHPID/fd/$_stax_tw_r" {_stax_tw_x}>&-
            exec {_stax_tw_r}<&- {_stax_tw_1}>&- {_stax_tw_2}>&-; _stax_tw_r=$_stax_tw_y
            for _stax_tw_g in FORWARDED; do trap "_stax_tw_sig $_stax_tw_g" "$_stax_tw_g"; done
            ;;
        X*) _stax_tw_rc=${_stax_tw_l#X}; break ;;
        *) _stax_tw_close; return 1 ;;  # declined: run it here
      esac
    elif [ $? -le 128 ]; then  # end of the pipe: the worker died
      echo "jupyter_stax: the task worker ended before the task (pid $_stax_tw_pid) did;" \
        "its exit status is unknown" >> /dev/stderr
      _stax_tw_rc=1; break
    else
      # timed out: what it read of a line is kept (bash reads a pipe byte by byte, and an
      # answer cut by the timeout, "X" now and "0" next, must not read as a decline)
      _stax_tw_p+=$_stax_tw_l
      if [ -z "$_stax_tw_pid" ] && ! { kill -0 "$_stax_tw_w" && [ -p "$_stax_tw_b.fifo" ]; } \
          2>/dev/null; then  # not answered and the worker is gone: withdraw the request
        if rm -- "$_stax_tw_q" 2>/dev/null; then
          _stax_tw_close; return 1
        elif ! kill -0 "$_stax_tw_w" 2>/dev/null; then  # taken, and no answer will come
          echo "jupyter_stax: the task worker ended while taking the task" >> /dev/stderr
          _stax_tw_rc=1; break
        fi
      fi
    fi
  done
  exec {_stax_tw_r}<&-
  if [ "$_stax_tw_rc" -lt 0 ]; then  # killed by a signal: end the same way
    trap - "$((-_stax_tw_rc))"; kill "-$((-_stax_tw_rc))" "$BASHPID"
    _stax_tw_rc=$((128 - _stax_tw_rc))
  fi
}
if [ "${STAX_TASK_WORKER:-}" = 1 ] && [ "${BASH_VERSINFO[0]:-0}" -ge 5 ]; then
  # the worker of this source whose .id file is this job's interpreter identity
  _stax_tw_d=${TMPDIR:-/tmp} _stax_tw_i=  # as taskworker.worker_dir chooses
  [ -n "${TMPDIR:-}" ] || ! [ -d /dev/shm ] || ! [ -w /dev/shm ] || ! [ -x /dev/shm ] ||
    _stax_tw_d=/dev/shm
  _stax_tw_d+=/stax-taskworker-$UID
  for _stax_tw_n in ${!LD_@} ${!PYTHON@}; do
    [[ ${!_stax_tw_n@a} != *x* ]] || _stax_tw_i+="$_stax_tw_n=${!_stax_tw_n}"$'\n'
  done
  _stax_tw_i+="STAX_PYTHON=${STAX_PYTHON:-python3}"$'\n'
  [[ ${STAX_PYTHON:-python3} == /* ]] || _stax_tw_i+="PATH=$PATH"$'\n'
  for _stax_tw_f in "$_stax_tw_d"/DIGEST-*.id; do
    _stax_tw_b=${_stax_tw_f%.id}
    if [ -O "$_stax_tw_d" ] && [ -O "$_stax_tw_f" ] && [ -p "$_stax_tw_b.fifo" ] &&
       { IFS= read -r -d '' _stax_tw_c < "$_stax_tw_f"; [ "$_stax_tw_c" = "$_stax_tw_i" ] &&
         read -r _stax_tw_w < "$_stax_tw_b.pid" && kill -0 "$_stax_tw_w"; } 2>/dev/null &&
       _stax_tw_handover; then
      exit "$_stax_tw_rc"
    fi
  done
fi
""".replace("ALL_NAMES", _ALL_NAMES)


def render_task_step(source: str, *, where: str = "function task") -> str:
    """The ``stax.step.sh`` of a function task (``source`` begins with :data:`TASK_MARK`).
    Where the job allows the warm task worker (``STAX_TASK_WORKER=1``) and it runs, bash
    hands the task to it (no Python started for the job); else its Python starts without
    ``site``, runs :mod:`.taskworker`'s entry (which starts the worker for the next tasks
    where allowed) and the task after a normal ``site`` start. A source the script cannot
    carry (an exported task's parameter placeholders, which are code; the script's own marks)
    is a plain Python step."""
    from .pystep import python_placeholders, render_python_step
    from .taskworker import CALL_MARK, FORWARDED

    source = expand_runner(source, where=where)
    if python_placeholders(source, where=where) or any(
        m in source for m in ("\n" + _TW_MARK, "\n" + _PY_MARK, CALL_MARK)
    ):
        return render_python_step(source, where=where)
    text, digest = _worker_source()
    if source.startswith(RUNNER_SOURCE):  # the worker runs the runner once (taskworker.prepare)
        source = RUNNER_SOURCE + CALL_MARK + source[len(RUNNER_SOURCE) :]
    if not source.endswith("\n"):
        source += "\n"
    boot = _BOOT.replace("DIGEST", digest)
    return (
        "# jupyter_stax: a function task, run by $STAX_PYTHON (default: python3) started "
        "without site;\n# on local bash hands it to the warm task worker (see "
        "jupyter_stax/core/taskworker.py)\n"
        + _HANDOVER.replace("DIGEST", digest).replace("FORWARDED", " ".join(FORWARDED))
        + f'exec "${{STAX_PYTHON:-python3}}" -S -c \'{boot}\' "${{BASH_SOURCE[0]}}" "$@"\n'
        f"{_PY_MARK}\n{source}{_TW_MARK}\n{text}"
    )
