"""Python steps (``%%stax_task NAME --python``, ``language: python`` in a workflow file).

The body is Python source run by the cluster's (or the image's) ``python3`` (``$STAX_PYTHON``
overrides it). Parameters are never pasted into the source as text:

* ``{{name}}`` in CODE position becomes ``stax_param('name')``, a call that returns the bound
  value with its type (int, float, bool or str), read from the JSON in ``$STAX_PARAMS_JSON``
  that the job script exports (:func:`jupyter_stax.core.jobscript.render_job_script`);
* ``{{name}}`` inside a string literal is refused: text substitution there is how injections
  happen. Write ``stax_params['name']`` (or ``f"{stax_params['n']}"``). That includes every
  part of an f-string, its ``{...}`` replacement fields too, on every Python: up to 3.11 the
  tokenizer sees an f-string as one STRING token, from 3.12 on (PEP 701) as FSTRING_START,
  parts and FSTRING_END with the fields as code tokens, so the whole span from FSTRING_START
  to its FSTRING_END counts as string here. The same body is then accepted or refused alike
  whatever Python checks it, and never depends on PEP 701 being there where it runs;
* ``stax_params`` (a dict of every bound parameter) is always defined.

``{{name}}`` is valid Python syntax (a set of a set), so the tokenizer sees it as five code
tokens, which is what tells code position from string content here.
"""

from __future__ import annotations

import io
import re
import secrets
import tokenize

from .params import PLACEHOLDER_RE, ParamError

__all__ = ["PARAMS_JSON_ENV", "python_placeholders", "render_python_step"]

#: the environment variable holding every bound parameter as one JSON object
PARAMS_JSON_ENV = "STAX_PARAMS_JSON"

_PREAMBLE = (
    "import json as _stax_json, os as _stax_os\n"
    f"stax_params = _stax_json.loads(_stax_os.environ.get({PARAMS_JSON_ENV!r}) or '{{}}')\n"
    "def stax_param(name):\n"
    "    return stax_params[name]\n"
    "del _stax_json, _stax_os\n"
)


def _token_types(*names: str) -> frozenset[int]:
    """The token types of ``names`` that this Python's tokenizer has."""
    return frozenset(getattr(tokenize, n) for n in names if hasattr(tokenize, n))


#: f-strings split into parts (Python >= 3.12; t-strings: 3.14)
_FSTRING_STARTS = _token_types("FSTRING_START", "TSTRING_START")
_FSTRING_ENDS = _token_types("FSTRING_END", "TSTRING_END")


def _string_spans(source: str) -> list[tuple[int, int]]:
    """Character spans of the string literals of ``source``, an f-string as a whole (its
    replacement fields included, nested f-strings in them too). Empty when the source does not
    tokenize: the syntax error then shows when the step runs, as it would for any script."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    spans: list[tuple[int, int]] = []
    depth = 0  # open f-strings (Python >= 3.12)
    opened = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            (r0, c0), (r1, c1) = tok.start, tok.end
            if tok.type in _FSTRING_STARTS:
                if depth == 0:
                    opened = starts[r0 - 1] + c0
                depth += 1
            elif tok.type in _FSTRING_ENDS:
                depth -= 1
                if depth == 0:
                    spans.append((opened, starts[r1 - 1] + c1))
            elif tok.type == tokenize.STRING and depth == 0:
                spans.append((starts[r0 - 1] + c0, starts[r1 - 1] + c1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return spans


def python_placeholders(source: str, *, where: str = "python step") -> list[str]:
    """Names of the placeholders of a Python body, in first-use order. ParamError when one
    sits inside a string literal."""
    if PLACEHOLDER_RE.search(source) is None:  # nothing to place: no need to tokenize
        return []
    spans = _string_spans(source)
    names: list[str] = []
    for m in PLACEHOLDER_RE.finditer(source):
        if any(a <= m.start() < b for a, b in spans):
            line = source.count("\n", 0, m.start()) + 1
            name = m["name"]
            raise ParamError(
                f"{where}, line {line}: placeholder {{{{{name}}}}} inside a Python string "
                f"literal; use stax_params[{name!r}] there (or {{{{{name}}}}} outside quotes)"
            )
        if m["name"] not in names:
            names.append(m["name"])
    return names


def render_python_step(source: str, *, where: str = "python step") -> str:
    """The bash ``stax.step.sh`` of a Python step: ``exec python3 -`` fed the body through a
    quoted heredoc (no shell expansion inside), placeholders turned into ``stax_param()``
    calls. Run from its file (as a job runs it), the line before starts Python on the body
    read from the file in one go instead (:data:`_BOOT`): Python reads a heredoc one byte
    per system call and bash parses it first, costly for a long body on a loaded machine;
    ``sys.argv``, line numbers and the ``<stdin>`` of tracebacks are the heredoc's."""
    python_placeholders(source, where=where)  # refuse placeholders inside strings
    body = PLACEHOLDER_RE.sub(lambda m: f"stax_param({m['name']!r})", source)
    if not body.endswith("\n"):
        body += "\n"
    delimiter = "STAX_PYTHON_EOF"
    while re.search(rf"^{delimiter}$", body, re.MULTILINE):
        delimiter = f"STAX_PYTHON_EOF_{secrets.token_hex(4)}"
    return (
        "# jupyter_stax: a Python step, run by $STAX_PYTHON (default: python3)\n"
        f'[ -f "${{BASH_SOURCE[0]:-}}" ] && exec "${{STAX_PYTHON:-python3}}" -c \'{_BOOT}\' '
        f'"${{BASH_SOURCE[0]}}" {delimiter} "$@"\n'
        f'exec "${{STAX_PYTHON:-python3}}" - "$@" <<\'{delimiter}\'\n'
        f"{_PREAMBLE}{body}{delimiter}\n"
    )


#: the ``-c`` program of a Python step run from its file: the body between the heredoc's
#: line and its delimiter, compiled as ``python3 -`` would (``sys.argv[0]`` is ``-``)
_BOOT = (
    "import sys; p = sys.argv.pop(1); e = sys.argv.pop(1); sys.argv[0] = \"-\"; "
    "s = open(p, \"rb\").read(); i = s.index(b\"<<\\x27\" + e.encode() + b\"\\x27\\n\"); "
    "i = s.index(b\"\\n\", i) + 1; "
    "exec(compile(s[i:s.index(b\"\\n\" + e.encode() + b\"\\n\", i - 1) + 1], "
    "\"<stdin>\", \"exec\"))"
)
