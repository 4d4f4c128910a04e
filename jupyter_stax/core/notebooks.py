"""Notebooks as steps (issue 16): ``notebook: analysis.ipynb`` in a workflow file,
``%stax_submit --notebook``, ``stax.run_notebook``, "Run on a cluster..." in JupyterLab.

A notebook step runs a Jupyter notebook from top to bottom on the cluster with papermill
(the standard executor; nbclient underneath). Its parameters are injected papermill-style: a
cell tagged ``injected-parameters`` right after the cell tagged ``parameters`` (at the top when
there is none) assigns every bound parameter (workflow defaults < submission < the step's
``params``). Values never become code by text substitution here: they travel as JSON in
``$STAX_PARAMS_JSON`` (exported quoted by the job script) and papermill writes each one as a
Python literal.

What moves where:

* the notebook is one of the step's ``inputs`` (added by :class:`~.models.Step`'s validator),
  so it is staged into the step directory like any input (a local cluster, Slurm on a shared
  file system and a remote cluster over SSH alike), at its destination
  (:func:`~.staging.anchor_and_rest`: ``analysis.ipynb`` stays ``analysis.ipynb``,
  ``nb/a.ipynb`` stays ``nb/a.ipynb``, ``/x/a.ipynb`` becomes ``a.ipynb``);
* it runs with the directory it landed in as its working directory (as JupyterLab runs a
  kernel in the notebook's directory), so inputs named relative to it are found;
* the executed copy (outputs, errors in place) is written beside it in the step directory as
  ``analysis.<execution id>.ipynb`` after every cell, and the engine brings it back beside the
  original notebook under the same name when the step ends (completed, failed or canceled),
  or into ``<outputs dir>/<execution id>/<step>/`` when the original's directory is not
  writable (:mod:`jupyter_stax.engine.notebooks`);
* a cell that raises fails the step; the last line of its stderr, hence the step's reason, is
  ``notebook cell 3 (In [2]) failed: ZeroDivisionError: division by zero`` (cells counted from
  1 in the original notebook, markdown cells included, as JupyterLab shows them).

The cluster's ``python3`` (``$STAX_PYTHON``; in an image: the image's) needs papermill and
ipykernel: ``python3 -m pip install papermill ipykernel`` (``pip install
'jupyter-stax[notebooks]'`` on this machine). Without them the step fails saying so.
"""

from __future__ import annotations

import keyword
import re
import secrets
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .errors import InvalidWorkflow, NotFound
from .staging import anchor_and_rest

if TYPE_CHECKING:
    from .models import Execution

__all__ = [
    "check_notebook_spec",
    "executed_name",
    "notebook_dest",
    "notebook_problems",
    "render_notebook_step",
]

#: what the runner needs in the cluster's (or the image's) Python
REQUIREMENT = "papermill and ipykernel"
INSTALL_HINT = (
    "python3 -m pip install papermill ipykernel there (or use a StaX image that has them; "
    "$STAX_PYTHON names another Python)"
)
_GLOB = re.compile(r"[*?\[]")


def check_notebook_spec(v: Any) -> Any:
    """A ``notebook`` field: one ``.ipynb`` file on the notebook side (no glob, no NUL)."""
    if v is None:
        return v
    if not isinstance(v, str) or not v.strip():
        raise ValueError("'notebook' must be the path of an .ipynb file")
    if "\0" in v or "\n" in v:
        raise ValueError(f"notebook {v!r} contains a NUL byte or a newline")
    if _GLOB.search(v):
        raise ValueError(f"notebook {v!r} is a pattern: name one .ipynb file")
    if not v.endswith(".ipynb"):
        raise ValueError(f"notebook {v!r} is not an .ipynb file")
    return v


def notebook_dest(spec: str) -> str:
    """Where the notebook ``spec`` lands in the step directory (relative; see the module)."""
    return anchor_and_rest(spec)[1]


def executed_name(spec: str, execution_id: str) -> str:
    """The executed copy's file name: ``analysis.ipynb`` -> ``analysis.<execution id>.ipynb``."""
    return f"{PurePosixPath(notebook_dest(spec)).stem}.{execution_id}.ipynb"


def executed_path_in_step(spec: str, execution_id: str) -> str:
    """The executed copy's path relative to the step directory (beside the staged notebook)."""
    dest = PurePosixPath(notebook_dest(spec))
    return str(dest.with_name(executed_name(spec, execution_id)))


def original_path(spec: str, base_dir: str | None) -> Path:
    """The original notebook on the notebook side (relative: to ``base_dir``)."""
    p = Path(spec).expanduser()
    return p if p.is_absolute() else Path(base_dir or ".") / p


def notebook_problems(step: str, values: Mapping[str, Any]) -> list[str]:
    """Parameter names a notebook cannot be given (Python keywords: ``class = 1`` is no
    assignment)."""
    return [
        f"step {step!r}: parameter {name!r} is a Python keyword: a notebook cannot receive it "
        "(rename it)"
        for name in values
        if keyword.iskeyword(name)
    ]


# ---------------------------------------------------------------------- the runner
#: the Python program the step runs (placeholders __NOTEBOOK__ and __HINT__ are filled with
#: Python literals by :func:`render_notebook_step`). Self-contained: the cluster needs
#: papermill, not jupyter_stax.
_RUNNER = r'''
import json, os, sys
NOTEBOOK = __NOTEBOOK__
HINT = __HINT__
params = json.loads(os.environ.get("STAX_PARAMS_JSON") or "{}")
here = os.path.dirname(NOTEBOOK) or "."
stem = os.path.basename(NOTEBOOK)[: -len(".ipynb")]
out = os.path.join(here, stem + "." + os.environ.get("STAX_EXECUTION", "run") + ".ipynb")
try:
    import papermill
except ImportError as e:
    print("jupyter_stax: cannot run notebook %s: papermill is not installed in %s (%s): %s"
          % (NOTEBOOK, sys.executable, e, HINT), file=sys.stderr)
    sys.exit(3)
print("jupyter_stax: running %s with papermill %s (%s); executed copy: %s"
      % (NOTEBOOK, papermill.__version__, sys.executable, out), file=sys.stderr)
try:
    papermill.execute_notebook(
        NOTEBOOK, out, parameters=params, cwd=here, progress_bar=False, log_output=True,
        stdout_file=sys.stdout, stderr_file=sys.stderr,
    )
except papermill.PapermillExecutionError as e:
    try:
        with open(NOTEBOOK, encoding="utf-8") as f:
            cells = json.load(f).get("cells", [])
    except (OSError, ValueError):
        cells = []
    def tags(c):
        return set((c.get("metadata") or {}).get("tags") or ())
    own = [c for c in cells if not tags(c) & {"injected-parameters", "papermill-error-cell-tag"}]
    at = e.cell_index
    if params:  # papermill put one cell before the parameters cell's successor
        p = next((i for i, c in enumerate(own) if "parameters" in tags(c)), -1)
        if p + 1 <= at:
            at -= 1
    line = (str(e.evalue).strip().splitlines() or [""])[0]
    what = e.ename + (": " + line if line else "")
    print("jupyter_stax: notebook cell %d (In [%s]) failed: %s" % (at + 1, e.exec_count, what),
          file=sys.stderr)
    sys.exit(1)
except Exception as e:
    msg = " ".join(str(e).split())[:240]
    print("jupyter_stax: notebook %s could not run: %s: %s" % (NOTEBOOK, type(e).__name__, msg),
          file=sys.stderr)
    sys.exit(2)
'''


def render_notebook_step(spec: str) -> str:
    """The bash ``stax.step.sh`` of a notebook step: ``exec python3 -`` fed the runner through
    a quoted heredoc (no shell expansion inside); the notebook's name is a Python literal."""
    body = (
        _RUNNER.replace("__NOTEBOOK__", repr(notebook_dest(spec)))
        .replace("__HINT__", repr(INSTALL_HINT))
        .lstrip("\n")
    )
    delimiter = "STAX_NOTEBOOK_EOF"
    while re.search(rf"^{delimiter}$", body, re.MULTILINE):
        delimiter = f"STAX_NOTEBOOK_EOF_{secrets.token_hex(4)}"
    return (
        f"# jupyter_stax: a notebook step ({notebook_dest(spec)}), run by papermill in "
        "$STAX_PYTHON (default: python3)\n"
        f'exec "${{STAX_PYTHON:-python3}}" - "$@" <<\'{delimiter}\'\n'
        f"{body}{delimiter}\n"
    )


def notebook_step_problem(step: Any) -> str | None:
    """What a notebook step (a :class:`~.models.Step` with ``notebook``) may not have."""
    given = [
        f for f, bad in (
            ("run", bool(step.run.strip())),
            ("software", step.software is not None),
            ("language", step.language != "bash"),
            ("sweep", step.sweep is not None),
        ) if bad
    ]
    if given:
        return f"a notebook step runs its notebook: drop {', '.join(repr(g) for g in given)}" + (
            " (a sweep of a notebook is not supported yet: one step per value, or a sweep "
            "step that runs papermill itself)"
            if "sweep" in given
            else ""
        )
    if step.launcher not in (None, "single"):
        return "a notebook runs as one process: drop 'launcher' (or use srun inside the notebook)"
    return None


def executed_notebook(model: Execution, step: str | None = None) -> Path | None:
    """The executed copy of a notebook step here (the only notebook step when ``step`` is
    None); None until the step has ended, or when it could not be copied (its
    ``files.warning`` says why)."""
    candidates = [s for s in model.workflow.steps if s.notebook is not None]
    if step is not None:
        candidates = [s for s in candidates if s.name == step]
    if not candidates:
        raise NotFound(
            f"execution {model.id} has no notebook step" + (f" {step!r}" if step else "")
        )
    if len(candidates) > 1:
        raise InvalidWorkflow(
            f"execution {model.id} has notebook steps "
            f"{', '.join(s.name for s in candidates)}: name one"
        )
    run = model.step(candidates[0].name)
    if run.files is None or run.files.notebook is None:
        return None
    return Path(run.files.notebook)
