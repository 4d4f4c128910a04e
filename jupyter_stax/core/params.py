r"""Safe substitution of ``{{param}}`` placeholders into bash step scripts.

Workflow steps are bash scripts with ``{{name}}`` placeholders (``{{ name }}`` also works).
Parameter values are untrusted, so they are never pasted into the script text:

* the job wrapper exports every parameter as an environment variable
  ``STAX_PARAM_<name>``, built with :func:`param_env` (for ``subprocess`` ``env=``) or
  :func:`export_lines` (``export STAX_PARAM_n='...'`` with :func:`shlex.quote`);
* :func:`render_script` replaces each placeholder by a *reference* to that variable. A small
  scanner follows bash's quoting context and picks the form that makes the value arrive
  literally:

  - unquoted code, also inside ``$(...)``, backticks, ``$((...))``, ``$[...]``, and ``#``
    comments:
    ``"${STAX_PARAM_n}"``
  - inside ``"..."``: ``${STAX_PARAM_n}``
  - inside ``'...'``: close, splice, reopen: ``'"${STAX_PARAM_n}"'``
  - inside ``$'...'``: the same, reopening with ``$'``: ``'"${STAX_PARAM_n}"$'``
  - heredoc body with an unquoted delimiter (``<<EOF``, ``<<-EOF``): ``${STAX_PARAM_n}``
  - heredoc body with a quoted delimiter (``<<'EOF'``, ``<<"EOF"``, ``<<\EOF``): bash expands
    nothing there, so :func:`render_script` raises :class:`ParamError`.

The safety argument has two parts.

1. *Expansion is never re-parsed as code, except by arithmetic evaluation.* Every replacement
   is a parameter expansion, and bash never re-parses the *result* of a parameter expansion as
   shell syntax (no quote removal, no command or process substitution, no further expansion, no
   heredoc delimiter detection). The scanner is therefore not a full bash parser and does not
   need to be one for this part: if it misjudges the context (``case`` patterns inside
   ``$(...)``, exotic quoting, ...), the value may arrive word-split, globbed or not at all, but
   it is not executed by the expansion itself.

2. *Arithmetic uses are restricted to integer values, checked before submission.* Bash
   evaluates the *value* of an expansion as an arithmetic expression in ``$((...))``,
   ``((...))`` (also ``for ((...))``), ``$[...]``, ``let``, operands of ``-eq -ne -lt -le -gt
   -ge`` in ``[[ ... ]]``, array subscripts (``${a[i]}``, ``a[i]=``), substring offsets
   (``${s:i:n}``) and assignments to ``declare -i`` variables. There a value such as
   ``a[$(cmd)]`` runs ``cmd``, ``PATH=0`` assigns, and a variable name is evaluated in turn;
   no quoting prevents it. Values used as variable *names* have the same problem
   (``[[ -v x ]]``, ``declare -n``, ``declare x=``/``local x=`` with the name from a value,
   ``read x``, ``printf -v x``, ``${!x}``). :func:`arithmetic_placeholders` uses the scanner to
   find the placeholders in such places, also through simple data flow (``n={{n}}``,
   ``for n in {{n}}``, ``read n <<< {{n}}``, ``printf -v n ... {{n}}``, then ``n`` used in
   arithmetic; direct uses of ``STAX_PARAM_<name>``), and :func:`check_arithmetic_values`
   requires their values to be bash integer literals (:data:`INTEGER_RE`), which arithmetic
   evaluation cannot turn into code. When in doubt the scanner flags: a false positive only
   forces an integer value.

Known gaps: data flow the scanner does not follow (positional parameters and functions,
``mapfile``, files, command output), a quoting context the scanner misjudges, and commands
that evaluate their arguments on purpose (``eval``, ``bash -c``, ``source``), which no quoting
or check here can make safe: never pass parameter values to them.

Two details of the chosen forms: a backslash that would escape the placeholder's first
character is dropped in unquoted code (the value is already literal) and kept as a literal
backslash inside ``"..."``, heredocs and ``$'...'``; a ``$`` right before a placeholder is a
literal ``$``.

Why one module of ~750 lines: the quoting-context scanner, the arithmetic-context rule and the
safety argument above are one unit that must be read and changed together; splitting them would
put the argument in one file and the code it argues about in another.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "INTEGER_RE",
    "PARAM_ENV_PREFIX",
    "PLACEHOLDER_RE",
    "ParamError",
    "arithmetic_placeholders",
    "check_arithmetic_values",
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
#: A bash integer literal, as arithmetic evaluation reads it without evaluating anything:
#: optional sign, then decimal digits (a leading ``0`` means octal), ``0x``/``0X`` hex, or
#: ``BASE#digits`` with a base of 2 to 64 and digits from ``0-9a-zA-Z@_``. Blanks around it are
#: allowed (bash skips them), nothing else.
INTEGER_RE: re.Pattern[str] = re.compile(
    r"\A[ \t\n]*[+-]?(?:0[xX][0-9A-Fa-f]+|(?:6[0-4]|[1-5][0-9]|[2-9])#[0-9A-Za-z@_]+|[0-9]+)"
    r"[ \t\n]*\Z"
)


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


def arithmetic_placeholders(script: str) -> dict[str, int]:
    """Placeholders whose value bash may evaluate as an arithmetic expression (or a name).

    Returns ``{name: line}``, the 1-based line of the first such use, in line order. See the
    module docstring for the places covered; values for these need :func:`check_arithmetic_values`.
    """
    renderer = _Renderer(script, "script", analyze=True)
    renderer.render()
    return renderer.arithmetic_lines()


def check_arithmetic_values(script: str, values: Mapping[str, object], *, where: str) -> list[str]:
    """One problem message per placeholder used in bash arithmetic whose value is no integer.

    Integers pass, and strings that are bash integer literals (:data:`INTEGER_RE`, with digits
    valid for their base); bools, floats (bash arithmetic has integers only), None and anything
    else fail. Names missing from ``values`` are skipped. ``where`` (e.g. ``"step 'loop'"``)
    starts each message.
    """
    problems: list[str] = []
    for name, line in arithmetic_placeholders(script).items():
        if name not in values:
            continue
        value = values[name]
        if not _is_integer_value(value):
            problems.append(
                f"{where} line {line} uses {{{{{name}}}}} in bash arithmetic, where bash"
                f" evaluates the value as code; its value must be an integer, got {value!r}"
            )
    return problems


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


def _is_integer_value(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return False
    return _bash_integer(str(value)) is not None  # str(): what param_env passes to bash


def _bash_integer(text: str) -> int | None:
    """The value of the bash integer literal ``text`` (before 64-bit wrap-around), or None."""
    if not INTEGER_RE.match(text):
        return None
    literal = text.strip(" \t\n")
    sign = -1 if literal.startswith("-") else 1
    literal = literal.lstrip("+-")
    if literal[:2] in ("0x", "0X"):
        return sign * int(literal[2:], 16)
    if "#" in literal:
        base_text, digits = literal.split("#")
        base, value = int(base_text), 0
        for char in digits:
            digit = _DIGITS.index(char) if base > 36 else _DIGITS.lower().index(char.lower())
            if digit >= base:
                return None  # bash: value too great for base
            value = value * base + digit
        return sign * value
    if literal.startswith("0") and literal.strip("01234567"):
        return None  # a leading 0 means octal
    return sign * int(literal, 8 if literal.startswith("0") else 10)


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@_"


# Scanner contexts, kept on a stack. Code-like: "code" (unquoted shell code), "subst" (body of
# $( ... )), "paren" (a plain ( ... ) group), "backtick", "arith" ($(( ... )) or (( ... ))) and
# "arith_b" ($[ ... ], and [ ... ] inside it). Others: "dq" ("..."), "sq" ('...'), "ansi"
# ($'...'), "comment", "heredoc" (unquoted body).
_ARITH = frozenset({"arith", "arith_b"})
_CODE = frozenset({"code", "subst", "paren", "backtick", *_ARITH})
_COMMAND = frozenset({"code", "subst", "paren", "backtick"})  # where commands and words start
_METACHARS = " \t\n;&|()<>"
_DQ_ESCAPABLE = {"dq": '$`"\\\n', "heredoc": "$`\\\n"}

# Arithmetic tracking (analysis only). Commands whose words bash may evaluate:
_COMMAND_RE = re.compile(
    r"(\[\[|\[|let|declare|typeset|local|export|readonly|test|printf|read|for)(?=[ \t\n]|\Z)"
)
_DECLARE = frozenset({"declare", "typeset", "local", "export", "readonly"})
_ARITH_TESTS = frozenset({"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})
_NAME_TESTS = frozenset({"-v", "-R"})
_READ_OPTION_ARGS = "dinNptu"  # read options taking an argument that is not a variable name
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[|\+?=)")
_BRACE_RE = re.compile(r"\$\{(?P<op>[#!]?)(?P<name>[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])")
_ARITH_NAMES_RE = re.compile(r"(?<![\w#])([A-Za-z_][A-Za-z0-9_]*)")  # not 16#ff, ${#x}, 0x1f
_REF_RE = re.compile(r"\$\{?!?([A-Za-z_][A-Za-z0-9_]*)")


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


@dataclass
class _Word:
    start: int
    end: int
    redirect: str  # "": an argument, "value": a here-string (<<<), "file": other redirections


@dataclass
class _Hit:
    name: str
    pos: int
    word: int  # index of the command word it is in
    in_name: bool  # before the word's first "=" (the name part of an assignment)


@dataclass
class _Flow:
    """Values flowing into variable ``var``: placeholders and other variables (``refs``)."""

    var: str
    pos: int
    params: list[tuple[str, int]]
    refs: list[str]


@dataclass
class _Frame:
    """An open region tracked for arithmetic, at rendering-stack depth ``depth``.

    Kinds: "arith" (an arithmetic context of the stack), "cmd" (a command in ``_COMMAND_RE``,
    whose words are collected, from ``start`` on) and "assign" (an assignment word ``name=...``).
    """

    kind: str
    depth: int
    start: int
    name: str = ""
    words: list[_Word] = field(default_factory=list)
    word: int = -1  # start of the word being read, -1 between words
    eq: bool = False  # the word being read has an "=" at this level
    redirect: str = ""  # what the next word is (see _Word.redirect)
    hits: list[_Hit] = field(default_factory=list)


class _Renderer:
    def __init__(self, script: str, where: str, *, analyze: bool = False) -> None:
        self.text = script
        self.where = where
        self.analyze = analyze  # track arithmetic uses, do not raise for unrenderable scripts
        self.out: list[str] = []
        self.uses: dict[str, int] = {}  # placeholder -> position of its first arithmetic use
        self.evaluated: dict[str, int] = {}  # variable -> first position where bash evaluates it
        self.flows: list[_Flow] = []
        self.spans: list[tuple[int, int]] = []  # array subscripts and substring offsets

    def render(self) -> str:
        self._scan(0, len(self.text), ["code"])
        result = "".join(self.out)
        leftover = PLACEHOLDER_RE.search(result)
        if leftover and not self.analyze:  # defensive: the scanner visits every position
            raise ParamError(f"{self.where}: could not place placeholder {leftover[0]}")
        return result

    def arithmetic_lines(self) -> dict[str, int]:
        """After :meth:`render` with ``analyze``: ``{placeholder: line}`` of arithmetic uses."""
        uses = dict(self.uses)
        evaluated = dict(self.evaluated)
        changed = True
        while changed:  # follow assignments backwards from evaluated variables
            changed = False
            for flow in self.flows:
                if flow.var not in evaluated:
                    continue
                for name, pos in flow.params:
                    uses[name] = min(uses.get(name, pos), pos)
                for ref in flow.refs:
                    if ref not in evaluated:
                        evaluated[ref] = flow.pos
                        changed = True
        for var, pos in evaluated.items():
            name = var[len(PARAM_ENV_PREFIX) :]
            if var.startswith(PARAM_ENV_PREFIX) and _NAME_RE.fullmatch(name):
                uses[name] = min(uses.get(name, pos), pos)
        return {name: self._line(pos) for name, pos in sorted(uses.items(), key=lambda u: u[1])}

    def _line(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def _placeholder_at(self, pos: int, end: int) -> bool:
        return PLACEHOLDER_RE.match(self.text, pos, end) is not None

    def _scan(self, i: int, end: int, stack: list[str], arith: bool = False) -> None:
        """Render ``text[i:end]``, starting in context ``stack[-1]``.

        ``arith``: the text is inside an arithmetic context (a heredoc body in ``$((...))``).
        """
        text, out = self.text, self.out
        pending: list[_Heredoc] = []
        frames: list[_Frame] = [_Frame("arith", 0, i)] if arith else []
        word_start = True
        while i < end:
            if self.analyze:
                self._sync(frames, stack, i)
            ctx = stack[-1]
            m = PLACEHOLDER_RE.match(text, i, end)
            if m:
                if self.analyze and ctx != "comment":
                    self._hit(frames, stack, m["name"], i)
                out.append(_form(ctx, m["name"]))
                i, word_start = m.end(), False
                continue
            if self.analyze and ctx != "comment":
                self._track(frames, stack, i, end, word_start)
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
                elif nxt == "[":
                    stack.append("arith_b")
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
            elif ctx == "arith_b" and c in "[]":
                if c == "[":
                    stack.append("arith_b")
                else:
                    stack.pop()
            elif c == "'":
                stack.append("sq")
                word_start = False
            elif c == '"':
                stack.append("dq")
                word_start = False
            elif c == "#" and word_start and ctx not in _ARITH:
                stack.append("comment")
            elif c == "(" and nxt == "(" and word_start and ctx not in _ARITH:
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
            elif c == "<" and nxt == "<" and ctx not in _ARITH:
                step = 3 if text.startswith("<<<", i) else self._heredoc_operator(i, end, pending)
                word_start = True
            elif c == "\n":
                out.append(c)
                in_arith = any(f.kind == "arith" for f in frames)
                i = self._heredoc_bodies(i + 1, end, pending, in_arith)
                pending.clear()
                word_start = True
                continue
            else:
                word_start = c in _METACHARS
            out.append(text[i : i + step] if step > 1 else c)
            i += step
        self._unwind(frames, -1, end)

    # --- arithmetic tracking (analyze mode) -------------------------------------------------

    def _sync(self, frames: list[_Frame], stack: list[str], pos: int) -> None:
        """Close frames of contexts the stack has left; open one for a new arithmetic context."""
        depth = len(stack)
        self._unwind(frames, depth, pos)
        if stack[-1] in _ARITH and not self._top(frames, depth, "arith"):
            frames.append(_Frame("arith", depth, pos))

    @staticmethod
    def _top(frames: list[_Frame], depth: int, kind: str) -> bool:
        """Whether a frame of ``kind`` is open at ``depth`` (frames at a depth are on top)."""
        for f in reversed(frames):
            if f.depth != depth:
                return False
            if f.kind == kind:
                return True
        return False

    def _unwind(self, frames: list[_Frame], depth: int, pos: int) -> None:
        while frames and frames[-1].depth > depth:
            self._finish(frames.pop(), pos)

    def _close(self, frames: list[_Frame], index: int, pos: int) -> None:
        while len(frames) > index:
            self._finish(frames.pop(), pos)

    @staticmethod
    def _level(frame: _Frame, stack: list[str]) -> bool:
        """Whether the scanner is at ``frame``'s word level (in ``[[ ]]`` also inside ``( )``)."""
        if len(stack) == frame.depth:
            return True
        return frame.name == "[[" and all(s == "paren" for s in stack[frame.depth :])

    def _use(self, name: str, pos: int) -> None:
        self.uses[name] = min(self.uses.get(name, pos), pos)

    def _names(self, text: str, pos: int, *, arith: bool) -> None:
        """Record the variables bash evaluates in ``text``: all names, or only ``$name``s."""
        text = PLACEHOLDER_RE.sub(" ", text)
        for m in (_ARITH_NAMES_RE if arith else _REF_RE).finditer(text):
            self.evaluated[m[1]] = min(self.evaluated.get(m[1], pos), pos)

    def _span(self, start: int, end: int) -> None:
        """``text[start:end]`` is arithmetic."""
        self.spans.append((start, end))
        self._names(self.text[start:end], start, arith=True)

    def _match_close(self, i: int, end: int, opening: str, closing: str) -> int:
        """End of the bracket region starting at ``i`` (just after ``opening``), counting
        brackets in the raw text; the end of the line if it is not closed there."""
        text, nesting = self.text, 1
        while i < end and text[i] != "\n":
            if text[i] == opening:
                nesting += 1
            elif text[i] == closing:
                nesting -= 1
                if nesting == 0:
                    return i
            i += 1
        return i

    def _hit(self, frames: list[_Frame], stack: list[str], name: str, pos: int) -> None:
        """Placeholder ``name`` at ``pos``."""
        if any(f.kind == "arith" for f in frames) or any(a <= pos < b for a, b in self.spans):
            self._use(name, pos)
        for f in frames:
            if f.kind == "assign":
                f.hits.append(_Hit(name, pos, 0, False))
            elif f.kind == "cmd" and pos >= f.start:
                if f.word < 0 and self._level(f, stack):
                    f.word = pos  # the placeholder starts a word
                if f.word >= 0:
                    f.hits.append(_Hit(name, pos, len(f.words), not f.eq))

    def _track(
        self, frames: list[_Frame], stack: list[str], i: int, end: int, word_start: bool
    ) -> None:
        """Character ``text[i]`` (not a placeholder): open and close tracked regions."""
        text, depth, ctx = self.text, len(stack), stack[-1]
        c = text[i]
        if c == "$" and ctx not in ("sq", "ansi") and not self._placeholder_at(i + 1, end):
            self._parameter_expansion(i, end)
        elif word_start and ctx in _COMMAND:
            m = _COMMAND_RE.match(text, i, end)
            if m:
                frames.append(_Frame("cmd", depth, m.end(), name=m[1]))
            elif m := _ASSIGN_RE.match(text, i, end):
                frames.append(_Frame("assign", depth, i, name=m[1]))
                if m[2] == "[":  # a[i]=..., also unset a[i], read a[i], ...
                    self._span(m.end(), self._match_close(m.end(), end, "[", "]"))
            elif c == "[" and ctx == "paren" and text[i + 1 : i + 2] not in " \t\n[":
                self._span(i + 1, self._match_close(i + 1, end, "[", "]"))  # a=([i]=x)
        for index, f in enumerate(frames):
            if f.kind == "cmd" and i >= f.start and self._level(f, stack):
                if self._command_char(f, i, depth == f.depth):
                    self._close(frames, index, i)
                    return
            elif f.kind == "assign" and depth == f.depth and c in " \t\n;&|<>":
                self._close(frames, index, i)
                return

    def _parameter_expansion(self, i: int, end: int) -> None:
        """``$`` at ``i`` in an expanding context: find subscripts and substring offsets."""
        m = _BRACE_RE.match(self.text, i, end)
        if not m:
            return
        if m["op"] == "!":  # ${!x}: the value of x is a variable name
            self.evaluated[m["name"]] = min(self.evaluated.get(m["name"], i), i)
        j = m.end()
        if self.text.startswith("[", j):
            close = self._match_close(j + 1, end, "[", "]")
            self._span(j + 1, close)
            j = close + 1
        if self.text.startswith(":", j) and self.text[j + 1 : j + 2] not in ("-", "=", "?", "+"):
            self._span(j + 1, self._match_close(j + 1, end, "{", "}"))

    def _command_char(self, f: _Frame, i: int, exact: bool) -> bool:
        """Character ``text[i]`` at the word level of command ``f``; True: the command ends."""
        text = self.text
        c = text[i]
        if not (c in " \t\n;&|<>" or (f.name == "[[" and c in "()")):
            if f.word < 0:
                f.word = i
            f.eq = f.eq or c == "="
            return False
        if f.word >= 0:
            f.words.append(_Word(f.word, i, f.redirect))
            f.word, f.eq, f.redirect = -1, False, ""
            closer = {"[[": "]]", "[": "]"}.get(f.name)
            if exact and closer and text[f.words[-1].start : i] == closer:
                return True
        if f.name == "[[":
            return False
        if c in "<>":
            f.redirect = "value" if text.startswith("<<<", i) else "file"
        elif c in "&|" and (text[i - 1 : i] in ("<", ">") or text[i + 1 : i + 2] == ">"):
            pass  # part of a redirection: 2>&1, &>, >|
        elif exact and c in ";&|\n":
            return True
        return False

    def _finish(self, f: _Frame, pos: int) -> None:
        """Frame ``f`` ends at ``pos``: record what bash evaluates in it."""
        text = self.text
        if f.kind == "arith":
            self._names(text[f.start : pos], f.start, arith=True)
        elif f.kind == "assign":
            refs = [m[1] for m in _REF_RE.finditer(text, f.start, pos)]
            self.flows.append(_Flow(f.name, f.start, [(h.name, h.pos) for h in f.hits], refs))
        elif f.kind == "cmd":
            if f.word >= 0:
                f.words.append(_Word(f.word, pos, f.redirect))
            self._finish_command(f)

    def _finish_command(self, f: _Frame) -> None:
        words = [self.text[w.start : w.end] for w in f.words]
        count = len(words)
        arith: set[int] = set()  # words bash evaluates as arithmetic
        names: set[int] = set()  # words bash uses as variable names
        targets: list[int] = []  # words naming variables that get the values of ``sources``
        sources: list[int] = []
        if f.name == "let":
            arith = set(range(count))
        elif f.name in _DECLARE:
            options = "".join(w[1:] for w in words if w[:1] in "-+" and w != "--")
            if "i" in options or ("n" in options and f.name not in ("export", "readonly")):
                arith = set(range(count))  # declare -i: assignments evaluate; -n: namerefs
            else:
                names = {h.word for h in f.hits if h.in_name}
        elif f.name == "[[":
            for k, word in enumerate(words):
                if word in _ARITH_TESTS:
                    arith |= {k - 1, k + 1}
                elif word in _NAME_TESTS:
                    names.add(k + 1)
        elif f.name in ("[", "test"):
            names = {k + 1 for k, word in enumerate(words) if word in _NAME_TESTS}
        elif f.name == "printf" and words[:1] == ["-v"]:
            names, targets = {1}, [1]
            sources = [k for k in range(2, count) if f.words[k].redirect != "file"]
        elif f.name == "read":
            k = 0
            while k < count:
                word = words[k]
                if f.words[k].redirect:
                    if f.words[k].redirect == "value":
                        sources.append(k)
                elif word.startswith("-") and word != "-":
                    if word[-1] in _READ_OPTION_ARGS:
                        k += 1
                    elif word[-1] == "a":
                        k += 1
                        names.add(k)
                        targets.append(k)
                else:
                    names.add(k)
                    targets.append(k)
                k += 1
        elif f.name == "for" and words[1:2] == ["in"]:
            targets, sources = [0], list(range(2, count))
        for hit in f.hits:
            if hit.word in arith or hit.word in names:
                self._use(hit.name, hit.pos)
        for k in arith | names:
            if 0 <= k < count:
                self._names(words[k], f.words[k].start, arith=k in arith)
        for k in targets:
            if k < count and _NAME_RE.fullmatch(words[k]):
                params = [(h.name, h.pos) for h in f.hits if h.word in sources]
                refs = [m[1] for k2 in sources for m in _REF_RE.finditer(words[k2])]
                self.flows.append(_Flow(words[k], f.words[k].start, params, refs))

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
        if PLACEHOLDER_RE.search(word) and not self.analyze:
            raise ParamError(
                f"{self.where}, line {self._line(i)}: placeholders cannot be used in a heredoc"
                f" delimiter ({word!r})"
            )
        if word:
            pending.append(_Heredoc("".join(delimiter), strip_tabs, quoted))
        return j - i

    def _heredoc_bodies(self, i: int, end: int, pending: list[_Heredoc], arith: bool) -> int:
        """Render the bodies of ``pending`` heredocs, starting at line start ``i``."""
        text = self.text
        for doc in pending:
            body_start = pos = i
            while pos < end:
                eol = text.find("\n", pos, end)
                line_end = end if eol == -1 else eol
                line = text[pos:line_end]
                if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
                    self._heredoc_body(doc, body_start, pos, arith)
                    i = line_end + 1 if eol != -1 else end
                    self.out.append(text[pos:i])
                    break
                pos = line_end + 1 if eol != -1 else end
            else:  # no delimiter line: the body runs to the end (bash warns)
                self._heredoc_body(doc, body_start, end, arith)
                i = end
        return i

    def _heredoc_body(self, doc: _Heredoc, start: int, stop: int, arith: bool) -> None:
        if not doc.quoted:
            self._scan(start, stop, ["heredoc"], arith)
            return
        m = PLACEHOLDER_RE.search(self.text, start, stop)
        if m and not self.analyze:
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
