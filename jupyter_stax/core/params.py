r"""Safe substitution of ``{{param}}`` placeholders into bash step scripts.

Workflow steps are bash scripts with ``{{name}}`` placeholders (``{{ name }}`` also works).
Parameter values are untrusted, so they are never pasted into the script text:

* the job wrapper exports every parameter as an environment variable
  ``STAX_PARAM_<name>``, built with :func:`param_env` (for ``subprocess`` ``env=``) or
  :func:`export_lines` (``export STAX_PARAM_n='...'`` with :func:`shlex.quote`);
* :func:`render_script` replaces each placeholder by a *reference* to that variable. A small
  scanner follows bash's quoting context and picks the form that makes the value arrive
  literally:

  - unquoted code, also inside ``$(...)``, backticks, ``$((...))``, and ``#`` comments:
    ``"${STAX_PARAM_n}"``
  - inside ``"..."``: ``${STAX_PARAM_n}``
  - inside ``'...'``: close, splice, reopen: ``'"${STAX_PARAM_n}"'``
  - inside ``$'...'``: the same, reopening with ``$'``: ``'"${STAX_PARAM_n}"$'``
  - heredoc body with an unquoted delimiter (``<<EOF``, ``<<-EOF``): ``${STAX_PARAM_n}``
  - heredoc body with a quoted delimiter (``<<'EOF'``, ``<<"EOF"``, ``<<\EOF``): bash expands
    nothing there, so :func:`render_script` raises :class:`ParamError`.

Why this is safe by construction: every replacement is a parameter expansion, and bash never
re-parses the *result* of a parameter expansion as shell syntax (no quote removal, no command
or process substitution, no further expansion, no heredoc delimiter detection). The scanner is
therefore not a full bash parser and does not need to be one: if it misjudges the context
(``case`` patterns inside ``$(...)``, exotic quoting, ...), the value may arrive word-split,
globbed or not at all, but it is still never executed. The only way to run a value as code is
a command that evaluates its arguments on purpose, and no quoting can prevent that: ``eval``,
``bash -c``, ``source``, and *arithmetic evaluation* (``$((...))``, ``((...))``, ``let``,
``[[ a -eq b ]]``, array subscripts, ``declare -i``), where a value such as ``a[$(cmd)]`` runs
``cmd``. Validate numeric parameters before using them in arithmetic.

Two details of the chosen forms: a backslash that would escape the placeholder's first
character is dropped in unquoted code (the value is already literal) and kept as a literal
backslash inside ``"..."``, heredocs and ``$'...'``; a ``$`` right before a placeholder is a
literal ``$``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "PARAM_ENV_PREFIX",
    "PLACEHOLDER_RE",
    "ParamError",
    "export_lines",
    "param_env",
    "placeholders",
    "render_script",
]

PARAM_ENV_PREFIX = "STAX_PARAM_"
PLACEHOLDER_RE: re.Pattern[str] = re.compile(
    r"\{\{[ \t]*(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]*\}\}"
)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ParamError(ValueError):
    """A parameter value or a placeholder cannot be used safely."""


def placeholders(script: str) -> list[str]:
    """Names of the placeholders used in ``script``, in first-use order, without duplicates."""
    return list(dict.fromkeys(m["name"] for m in PLACEHOLDER_RE.finditer(script)))


def render_script(script: str, *, where: str = "script") -> str:
    """Replace every placeholder by a reference to its ``STAX_PARAM_<name>`` variable.

    ``where`` (e.g. ``"step 'total'"``) prefixes error messages.
    """
    return _Renderer(script, where).render()


def param_env(params: Mapping[str, object]) -> dict[str, str]:
    """Environment variables for ``params``: ``{"STAX_PARAM_<name>": "<value>", ...}``."""
    env: dict[str, str] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ParamError(f"invalid parameter name {name!r}: use letters, digits and '_'")
        env[PARAM_ENV_PREFIX + name] = _env_value(name, value)
    return env


def export_lines(params: Mapping[str, object]) -> str:
    """Bash ``export`` lines for ``params``, one per parameter, sorted by name."""
    env = param_env(params)
    return "".join(f"export {key}={shlex.quote(env[key])}\n" for key in sorted(env))


def _env_value(name: str, value: object) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        text = str(value)
    else:
        raise ParamError(
            f"parameter {name!r}: unsupported type {type(value).__name__}"
            " (use str, int, float, bool or None)"
        )
    if "\x00" in text:
        raise ParamError(
            f"parameter {name!r}: value contains a NUL byte; bash cannot hold NUL bytes"
        )
    try:
        text.encode("utf-8", "surrogateescape")  # how os.environ / subprocess encode it
    except UnicodeEncodeError:
        raise ParamError(f"parameter {name!r}: value is not valid Unicode text") from None
    return text


# Scanner contexts, kept on a stack. Code-like: "code" (unquoted shell code), "subst" (body of
# $( ... )), "paren" (a plain ( ... ) group), "backtick" and "arith" ($(( ... )) or (( ... ))).
# Others: "dq" ("..."), "sq" ('...'), "ansi" ($'...'), "comment", "heredoc" (unquoted body).
_CODE = frozenset({"code", "subst", "paren", "backtick", "arith"})
_METACHARS = " \t\n;&|()<>"
_DQ_ESCAPABLE = {"dq": '$`"\\\n', "heredoc": "$`\\\n"}


def _form(context: str, name: str) -> str:
    var = "${" + PARAM_ENV_PREFIX + name + "}"
    if context in ("dq", "heredoc"):
        return var
    if context == "sq":
        return "'\"" + var + "\"'"
    if context == "ansi":
        return "'\"" + var + "\"$'"
    return '"' + var + '"'  # code-like contexts and comments


@dataclass
class _Heredoc:
    delimiter: str
    strip_tabs: bool
    quoted: bool


class _Renderer:
    def __init__(self, script: str, where: str) -> None:
        self.text = script
        self.where = where
        self.out: list[str] = []

    def render(self) -> str:
        self._scan(0, len(self.text), ["code"])
        result = "".join(self.out)
        leftover = PLACEHOLDER_RE.search(result)
        if leftover:  # defensive: the scanner visits every position, so this cannot happen
            raise ParamError(f"{self.where}: could not place placeholder {leftover[0]}")
        return result

    def _line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def _placeholder_at(self, pos: int, end: int) -> bool:
        return PLACEHOLDER_RE.match(self.text, pos, end) is not None

    def _scan(self, i: int, end: int, stack: list[str]) -> None:
        """Render ``text[i:end]``, starting in context ``stack[-1]``."""
        text, out = self.text, self.out
        pending: list[_Heredoc] = []
        word_start = True
        while i < end:
            ctx = stack[-1]
            m = PLACEHOLDER_RE.match(text, i, end)
            if m:
                out.append(_form(ctx, m["name"]))
                i, word_start = m.end(), False
                continue
            c, nxt = text[i], text[i + 1 : i + 2]
            step = 1
            if ctx == "sq":
                if c == "'":
                    stack.pop()
            elif ctx == "comment":
                if c == "\n":
                    stack.pop()  # the newline itself is handled in the enclosing context
                    continue
            elif ctx == "ansi":
                if c == "\\" and self._placeholder_at(i + 1, end):
                    c = "\\\\"  # keep the backslash literal, then close the quote
                elif c == "\\":
                    step = 2
                elif c == "'":
                    stack.pop()
            elif c == "\\":
                if self._placeholder_at(i + 1, end):
                    c = "" if ctx in _CODE else "\\\\"
                elif ctx in _CODE or nxt in _DQ_ESCAPABLE[ctx]:
                    step = 2
                word_start = word_start and nxt == "\n"
            elif c == "$":
                if self._placeholder_at(i + 1, end):
                    c = "\\$"
                elif nxt == "$":
                    step = 2
                elif text.startswith("((", i + 1):
                    stack.append("arith")
                    step = 3
                elif nxt == "(":
                    stack.append("subst")
                    step = 2
                elif nxt == "'" and ctx in _CODE:
                    stack.append("ansi")
                    step = 2
                elif nxt == '"' and ctx in _CODE:
                    stack.append("dq")
                    step = 2
                word_start = step > 1 and stack[-1] in ("subst", "arith")
            elif c == "`":
                if ctx == "backtick":
                    stack.pop()
                else:
                    stack.append("backtick")
                word_start = ctx != "backtick"
            elif ctx == "dq":
                if c == '"':
                    stack.pop()
            elif ctx == "heredoc":
                pass
            elif c == "'":
                stack.append("sq")
                word_start = False
            elif c == '"':
                stack.append("dq")
                word_start = False
            elif c == "#" and word_start and ctx != "arith":
                stack.append("comment")
            elif c == "(" and nxt == "(" and word_start and ctx != "arith":
                stack.append("arith")
                step = 2
            elif c == "(":
                stack.append("paren")
                word_start = True
            elif c == ")":
                if ctx == "arith" and nxt == ")":
                    stack.pop()
                    step = 2
                elif ctx in ("subst", "paren"):
                    stack.pop()
                word_start = ctx not in ("subst", "arith")
            elif c == "<" and nxt == "<" and ctx != "arith":
                step = 3 if text.startswith("<<<", i) else self._heredoc_operator(i, end, pending)
                word_start = True
            elif c == "\n":
                out.append(c)
                i = self._heredoc_bodies(i + 1, end, pending)
                pending.clear()
                word_start = True
                continue
            else:
                word_start = c in _METACHARS
            out.append(text[i : i + step] if step > 1 else c)
            i += step

    def _heredoc_operator(self, i: int, end: int, pending: list[_Heredoc]) -> int:
        """Parse ``<<[-] word`` at ``i``, queue its heredoc; return the operator's length."""
        text = self.text
        j = i + 2
        strip_tabs = text.startswith("-", j)
        if strip_tabs:
            j += 1
        while j < end and text[j] in " \t":
            j += 1
        word_begin, quoted = j, False
        delimiter: list[str] = []
        while j < end and text[j] not in _METACHARS:
            c = text[j]
            if c in "'\"":
                close = text.find(c, j + 1, end)
                close = end if close == -1 else close
                delimiter.append(text[j + 1 : close])
                quoted, j = True, close + 1
            elif c == "\\":
                delimiter.append(text[j + 1 : j + 2])
                quoted, j = True, j + 2
            else:
                delimiter.append(c)
                j += 1
        j = min(j, end)
        word = text[word_begin:j]
        if PLACEHOLDER_RE.search(word):
            raise ParamError(
                f"{self.where}, line {self._line(i)}: placeholders cannot be used in a heredoc"
                f" delimiter ({word!r})"
            )
        if word:
            pending.append(_Heredoc("".join(delimiter), strip_tabs, quoted))
        return j - i

    def _heredoc_bodies(self, i: int, end: int, pending: list[_Heredoc]) -> int:
        """Render the bodies of ``pending`` heredocs, starting at line start ``i``."""
        text = self.text
        for doc in pending:
            body_start = pos = i
            while pos < end:
                eol = text.find("\n", pos, end)
                line_end = end if eol == -1 else eol
                line = text[pos:line_end]
                if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
                    self._heredoc_body(doc, body_start, pos)
                    i = line_end + 1 if eol != -1 else end
                    self.out.append(text[pos:i])
                    break
                pos = line_end + 1 if eol != -1 else end
            else:  # no delimiter line: the body runs to the end (bash warns)
                self._heredoc_body(doc, body_start, end)
                i = end
        return i

    def _heredoc_body(self, doc: _Heredoc, start: int, stop: int) -> None:
        if not doc.quoted:
            self._scan(start, stop, ["heredoc"])
            return
        m = PLACEHOLDER_RE.search(self.text, start, stop)
        if m:
            name = m["name"]
            var = PARAM_ENV_PREFIX + name
            raise ParamError(
                f"{self.where}, line {self._line(m.start())}: placeholder {m[0]} is inside a"
                f" heredoc with a quoted delimiter ({doc.delimiter!r}), where bash does not"
                f" expand anything. Use an unquoted delimiter (<<{doc.delimiter}), or read the"
                f' value from the environment variable {var} (e.g. os.environ["{var}"] in'
                f' Python, "${var}" in shell)'
            )
        self.out.append(self.text[start:stop])
