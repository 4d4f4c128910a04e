"""Function tasks (``@stax.task``): the files a task's step reads and writes, the runner that
calls the function on the cluster, the Python probe and the safety rules of result files.

A function task is an ordinary Python step (``language: python``) whose body is
:data:`RUNNER_SOURCE` followed by the call (:func:`task_source`). What it reads and writes
(files in the step directory; a ``.map`` instance: in its ``<i>/``):

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

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import StaxError

__all__ = [
    "FORMAT",
    "MAX_CALL_BYTES",
    "PROBE_SOURCE",
    "RUNNER_SOURCE",
    "PythonMismatch",
    "ResultRefused",
    "TaskError",
    "call_header",
    "error_file",
    "parse_probe",
    "probe_problem",
    "read_result_file",
    "render_task_step",
    "result_file",
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


def task_source(call: bytes, params: list[str] | None = None) -> str:
    """The body of a task's Python step: the runner, then the call (header and pickle) in
    base64 lines. ValueError above :data:`MAX_CALL_BYTES`. ``params``: an exported task,
    called with these keyword arguments, each the workflow parameter of that name (a
    ``{{name}}`` placeholder in code position: its typed value, and a missing one is refused
    before anything is submitted, as for any step)."""
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
    return f'{RUNNER_SOURCE}_stax_task_main("""\n{lines}\n"""{kw})\n'


# ---------------------------------------------------------------------- the step script
def _worker_source() -> tuple[str, str]:
    """The text of :mod:`.taskworker` (embedded in each task's step script) and its digest."""
    global _WORKER
    if _WORKER is None:
        import hashlib

        text = Path(__file__).with_name("taskworker.py").read_text(encoding="utf-8")
        if "'''" in text or text.endswith("\\"):
            raise AssertionError("taskworker.py must not contain triple single quotes")
        _WORKER = (text, hashlib.sha256(text.encode()).hexdigest()[:16])
    return _WORKER


_WORKER: tuple[str, str] | None = None
#: the line after which a task's step script is Python (the shell never reads past ``exec``)
_PY_MARK = "# ---- Python, read by the line above (the shell never gets here) ----"
#: the ``-c`` program of a task's Python: its step script read in one go, the Python part run
#: (``python3 - <<EOF`` would make bash parse the heredoc and Python read it one byte per
#: system call: ~25,000 of them for a task's script, costly on a loaded machine)
_BOOT = (
    "import sys; p = sys.argv.pop(1); s = open(p, \"rb\").read(); "
    f"exec(compile(s[s.index(b\"\\n{_PY_MARK}\"):], \"<stdin>\", \"exec\"))"
)


def render_task_step(source: str, *, where: str = "function task") -> str:
    """The ``stax.step.sh`` of a function task (``source`` begins with :data:`TASK_MARK`):
    its Python starts without ``site`` and runs :mod:`.taskworker`'s entry, which hands the
    task to the warm worker where the job allows it (``STAX_TASK_WORKER=1``) and else runs it
    in this Python after a normal ``site`` start. A source the entry cannot carry (an
    exported task's parameter placeholders, which are code; quotes it cannot hold) is a plain
    Python step."""
    from .pystep import python_placeholders, render_python_step

    if python_placeholders(source, where=where) or "'''" in source or source.endswith("\\"):
        return render_python_step(source, where=where)
    text, digest = _worker_source()
    body = (  # the entry compiles only the part it runs (the worker's is for the worker)
        f"_stax_tw_src = r'''{text}'''\n"
        "_stax_tw = {'__name__': 'stax_taskworker'}\n"
        "exec(compile(_stax_tw_src[:_stax_tw_src.index('# ' + '-' * 70 + ' the worker\\n')], "
        "'<stax-taskworker>', 'exec'), _stax_tw)\n"
        f"_stax_tw['task_entry'](_stax_tw_src, r'''{source}''', {digest!r})\n"
    )
    return (
        "# jupyter_stax: a function task, run by $STAX_PYTHON (default: python3) started "
        "without site;\n# on local it goes to the warm task worker (see "
        "jupyter_stax/core/taskworker.py)\n"
        f'exec "${{STAX_PYTHON:-python3}}" -S -c \'{_BOOT}\' "${{BASH_SOURCE[0]}}" "$@"\n'
        f"{_PY_MARK}\n{body}"
    )
