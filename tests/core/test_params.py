"""Tests of jupyter_stax.core.params, with a real /bin/bash (no mocks)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jupyter_stax.core.params import (
    INTEGER_RE,
    PARAM_ENV_PREFIX,
    PLACEHOLDER_RE,
    ParamError,
    arithmetic_placeholders,
    check_arithmetic_values,
    export_lines,
    param_env,
    placeholders,
    render_script,
)

BASH = "/bin/bash"
V = "${STAX_PARAM_v}"

NASTY = [
    "x; rm -rf ~",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b\"c",
    "\n",
    "-n",
    "*",
    "$HOME",
    "{{n}}",
    "EOF\ntouch PWNED",
    "",
    " lead and trail ",
    "\\",
    "a\\",
    "'",
    '"',
    "\"'$(touch PWNED)'\"",
    "';touch PWNED;'",
    '";touch PWNED;"',
    "\ntouch PWNED\n",
    "\t\tEOF",
    "a[$(touch PWNED)]",
    "${IFS}",
    "!!",
    "~",
    "*.py [a-z] ?",
    "--help",
    "héllo wörld ✓ 𝄞",
    "\r\n",
    "$'\\x41'",
    "}}",
]

# name -> (script line(s), expected file content as a function of the value)
SHAPES: dict[str, tuple[str, Callable[[str], str]]] = {
    "unquoted": ("printf '%s' {{v}} > unquoted.out", lambda v: v),
    "double": ("printf '%s' \"a{{v}}b\" > double.out", lambda v: f"a{v}b"),
    "single": ("printf '%s' 'a{{v}}b' > single.out", lambda v: f"a{v}b"),
    "cmdsubst": (
        "printf '%s' \"$(printf '%s' \"{{v}}\")\" > cmdsubst.out",
        lambda v: v.rstrip("\n"),
    ),
    "heredoc": ("cat > heredoc.out <<EOF\n{{v}}\nEOF", lambda v: v + "\n"),
    "assign": ("x={{v}}; printf '%s' \"$x\" > assign.out", lambda v: v),
    # more contexts than the required ones
    "ansi": ("printf '%s' $'a{{v}}\\tb' > ansi.out", lambda v: f"a{v}\tb"),
    "heredoc_dash": ("cat > heredoc_dash.out <<-EOF\n\t{{v}}\n\tEOF", lambda v: v + "\n"),
    "backtick": (
        "printf '%s' \"`printf '%s' \"{{v}}\"`\" > backtick.out",
        lambda v: v.rstrip("\n"),
    ),
    "subst_assign": (
        "y=$(printf '%s' {{v}}); printf '%s' \"$y\" > subst_assign.out",
        lambda v: v.rstrip("\n"),
    ),
    "default_dq": ("printf '%s' \"${unset_var:-{{v}}}\" > default_dq.out", lambda v: v),
    "default_unquoted": ("printf '%s' ${unset_var:-{{v}}} > default_unquoted.out", lambda v: v),
    "array": ("a=(x {{v}}); printf '%s' \"${a[1]}\" > array.out", lambda v: v),
    "comment": ("# {{v}} 'unbalanced \"quotes\nprintf '%s' {{v}} > comment.out", lambda v: v),
    "heredoc_in_subst": (
        "z=$(cat <<EOF\n{{v}}\nEOF\n)\nprintf '%s' \"$z\" > heredoc_in_subst.out",
        lambda v: v.rstrip("\n"),
    ),
}
BATCH = "\n".join(line for line, _ in SHAPES.values()) + "\n"


def run_bash(script: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    path = cwd / "step.sh"
    path.write_text(script, encoding="utf-8")
    return subprocess.run(
        [BASH, str(path)], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=30
    )


def job_env(params: Mapping[str, object]) -> dict[str, str]:
    """What the job wrapper does: the current environment plus the parameters."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PARAM_ENV_PREFIX)}
    return {**env, **param_env(params)}


def check_batch(value: str, *, with_exports: bool = False) -> None:
    script = render_script(BATCH, where="step 'batch'")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        if with_exports:
            proc = run_bash(export_lines({"v": value}) + script, cwd, job_env({}))
        else:
            proc = run_bash(script, cwd, job_env({"v": value}))
        got = {
            name: (cwd / f"{name}.out").read_bytes() if (cwd / f"{name}.out").exists() else None
            for name in SHAPES
        }
        assert not (cwd / "PWNED").exists(), proc.stderr
    expected = {name: fn(value).encode() for name, (_, fn) in SHAPES.items()}
    assert got == expected, proc.stderr


# --- placeholders / PLACEHOLDER_RE ---------------------------------------------------------


def test_placeholder_re() -> None:
    m = PLACEHOLDER_RE.search("a {{ total_1 }} b")
    assert m is not None and m["name"] == "total_1"
    assert PLACEHOLDER_RE.fullmatch("{{\tx\t}}")
    for bad in ("{{1x}}", "{{a-b}}", "{{}}", "{ {x}}", "{{x} }", "{{a b}}", "{{\nx}}"):
        assert PLACEHOLDER_RE.search(bad) is None, bad


def test_placeholders_order_and_duplicates() -> None:
    script = "echo {{b}} {{ a }}\ncat <<EOF\n{{b}} {{_c9}}\nEOF\necho '{{a}}' {{{d}}}"
    assert placeholders(script) == ["b", "a", "_c9", "d"]
    assert placeholders("no placeholders {{ }} {x}") == []


# --- render_script: one form per context ---------------------------------------------------


@pytest.mark.parametrize(
    ("script", "rendered"),
    [
        ("echo {{v}}", f'echo "{V}"'),
        ("echo {{ v }}x", f'echo "{V}"x'),
        ('echo "a {{v}} b"', f'echo "a {V} b"'),
        ("echo 'a {{v}} b'", f"echo 'a '\"{V}\"' b'"),
        ("echo $'a {{v}}\\n'", f"echo $'a '\"{V}\"$'\\n'"),
        ('echo $"a {{v}}"', f'echo $"a {V}"'),
        ("cat <<EOF\n{{v}}\nEOF\n", f"cat <<EOF\n{V}\nEOF\n"),
        ("cat << EOF\n'{{v}}' \"{{v}}\"\nEOF", f"cat << EOF\n'{V}' \"{V}\"\nEOF"),
        ("cat <<-EOF\n\t{{v}}\n\tEOF\necho {{v}}", f'cat <<-EOF\n\t{V}\n\tEOF\necho "{V}"'),
        (
            "cat <<'EOF'\nno placeholder\nEOF\necho {{v}}",
            f"cat <<'EOF'\nno placeholder\nEOF\necho \"{V}\"",
        ),
        ("echo # {{v}} it's\necho {{v}}", f'echo # "{V}" it\'s\necho "{V}"'),
        ("echo a#{{v}}", f'echo a#"{V}"'),
        ("echo $#{{v}}", f'echo $#"{V}"'),
        ('echo "$(echo {{v}})"', f'echo "$(echo "{V}")"'),
        ('echo "$(echo "{{v}}")"', f'echo "$(echo "{V}")"'),
        ("echo \"$(echo '{{v}}')\"", f"echo \"$(echo ''\"{V}\"'')\""),
        ('echo "x$(a "$(b {{v}} "{{v}}")" {{v}})"', f'echo "x$(a "$(b "{V}" "{V}")" "{V}")"'),
        ('echo "`echo {{v}}`"', f'echo "`echo "{V}"`"'),
        ("echo $(( {{v}} + 1 ))", f'echo $(( "{V}" + 1 ))'),
        ("(( {{v}} << 2 ))\necho {{v}}", f'(( "{V}" << 2 ))\necho "{V}"'),
        ("echo $[ a[{{v}}] << 2 ] {{v}}", f'echo $[ a["{V}"] << 2 ] "{V}"'),
        ("echo ${u:-{{v}}}", f'echo ${{u:-"{V}"}}'),
        ("echo <<<{{v}}", f'echo <<<"{V}"'),
        ("a=({{v}})", f'a=("{V}")'),
        ("echo \\'{{v}}", f'echo \\\'"{V}"'),
        # a backslash escaping the placeholder: dropped in code, literal elsewhere
        ("echo \\{{v}}", f'echo "{V}"'),
        ('echo "\\{{v}}"', f'echo "\\\\{V}"'),
        ("echo $'\\{{v}}'", f"echo $'\\\\'\"{V}\"$''"),
        # a dollar right before a placeholder is a literal dollar
        ("echo ${{v}} $${{v}}", f'echo \\$"{V}" $$"{V}"'),
        ('echo "${{v}}"', f'echo "\\${V}"'),
    ],
)
def test_render_forms(script: str, rendered: str) -> None:
    assert render_script(script) == rendered


def test_multiple_heredocs_on_one_line() -> None:
    script = (
        "cat <<A <<-'B' <<\"C\" <<D\n"
        "{{v}} A\nA\n"
        "\tquoted, left alone: $x\n\tB\n"
        "also quoted\nC\n"
        "'{{ v }}'\nD\n"
        "echo '{{v}}'\n"
    )
    assert render_script(script) == (
        "cat <<A <<-'B' <<\"C\" <<D\n"
        f"{V} A\nA\n"
        "\tquoted, left alone: $x\n\tB\n"
        "also quoted\nC\n"
        f"'{V}'\nD\n"
        f"echo ''\"{V}\"''\n"
    )


def test_render_without_placeholders_is_identity() -> None:
    script = "set -eu\ncat <<'X'\n$a `b` 'c\nX\necho \"$(( 1 << 2 ))\" $'\\''\n"
    assert render_script(script) == script


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="{}$'\"`\\#()<-\t\n aEOF"))
def test_render_never_leaves_a_placeholder(script: str) -> None:
    try:
        rendered = render_script(script)
    except ParamError as exc:
        assert "quoted delimiter" in str(exc) or "heredoc delimiter" in str(exc)
        return
    assert PLACEHOLDER_RE.search(rendered) is None
    if not placeholders(script):
        assert rendered == script


# --- render_script: errors -----------------------------------------------------------------


@pytest.mark.parametrize("delimiter", ["'EOF'", '"EOF"', "\\EOF", "E'O'F", "-'EOF'"])
def test_quoted_heredoc_is_an_error(delimiter: str) -> None:
    script = f"echo {{{{v}}}}\ncat <<{delimiter}\nfine\n  {{{{ v }}}}\nEOF\n"
    with pytest.raises(ParamError) as info:
        render_script(script, where="step 'total'")
    message = str(info.value)
    assert message.startswith("step 'total', line 4:")
    assert "unquoted" in message
    assert "STAX_PARAM_v" in message
    assert 'os.environ["STAX_PARAM_v"]' in message


def test_placeholder_after_quoted_heredoc_is_fine() -> None:
    script = "cat <<'EOF'\n$HOME\nEOF\necho {{v}}"
    assert render_script(script) == f"cat <<'EOF'\n$HOME\nEOF\necho \"{V}\""


def test_placeholder_in_heredoc_delimiter_is_an_error() -> None:
    with pytest.raises(ParamError, match="line 2: placeholders cannot be used in a heredoc"):
        render_script("true\ncat <<{{v}}\nx\n", where="s")


# --- param_env / export_lines ---------------------------------------------------------------


def test_param_env_values() -> None:
    env = param_env({"s": "x; rm -rf ~", "i": 3, "f": 0.5, "t": True, "no": False, "none": None})
    assert env == {
        "STAX_PARAM_s": "x; rm -rf ~",
        "STAX_PARAM_i": "3",
        "STAX_PARAM_f": "0.5",
        "STAX_PARAM_t": "true",
        "STAX_PARAM_no": "false",
        "STAX_PARAM_none": "",
    }
    assert param_env({}) == {}


@pytest.mark.parametrize("value", [[1], b"bytes", {"a": 1}, object(), 1j])
def test_param_env_bad_type(value: object) -> None:
    with pytest.raises(ParamError, match=rf"'p'.*{type(value).__name__}"):
        param_env({"p": value})


def test_param_env_nul() -> None:
    with pytest.raises(ParamError, match=r"'p'.*bash cannot hold NUL bytes"):
        param_env({"p": "a\x00b"})


def test_param_env_not_unicode() -> None:
    with pytest.raises(ParamError, match=r"'p'.*not valid Unicode"):
        param_env({"p": "a\ud800"})
    # undecodable bytes, as os.fsdecode() returns them, are fine
    assert param_env({"p": "\udcff"}) == {"STAX_PARAM_p": "\udcff"}


@pytest.mark.parametrize("name", ["", "1a", "a-b", "a b", "é", "a\n", "{{a}}", 3])
def test_param_env_bad_name(name: object) -> None:
    with pytest.raises(ParamError, match=re.escape(repr(name))):
        param_env({name: "x"})  # type: ignore[dict-item]


def test_export_lines() -> None:
    assert export_lines({"b": "x; rm -rf ~", "a": 1, "c": None}) == (
        "export STAX_PARAM_a=1\nexport STAX_PARAM_b='x; rm -rf ~'\nexport STAX_PARAM_c=''\n"
    )
    assert export_lines({}) == ""
    with pytest.raises(ParamError):
        export_lines({"a": "\x00"})


def test_param_error_is_value_error() -> None:
    assert issubclass(ParamError, ValueError)


# --- real bash ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", NASTY)
def test_nasty_values_arrive_literally(value: str) -> None:
    check_batch(value)


@pytest.mark.parametrize("value", NASTY)
def test_export_lines_then_script_in_one_bash(value: str) -> None:
    check_batch(value, with_exports=True)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.sampled_from(NASTY),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")),
        st.text(alphabet="$`'\"\\;|&(){}<>*?~!# \t\nEOFPWNED-"),
    )
)
@example("$(touch PWNED)")
def test_any_value_arrives_literally(value: str) -> None:
    check_batch(value)


def test_edge_forms_in_bash(tmp_path: Path) -> None:
    value = "$(touch PWNED)'\"\\"
    script = render_script(
        "printf '%s|' \\{{v}} \"\\{{v}}\" $'\\{{v}}' ${{v}} \"${{v}}\" "
        "'{{v}}'\"{{v}}\"{{v}} > out\n"
        "cat <<A > a; cat <<-B > b\n{{v}}\nA\n\t{{v}}\n\tB\n"
    )
    proc = run_bash(script, tmp_path, job_env({"v": value}))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text() == "|".join(
        [value, "\\" + value, "\\" + value, "$" + value, "$" + value, value * 3, ""]
    )
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text() == value + "\n"
    assert not (tmp_path / "PWNED").exists()


def test_comment_and_quoted_heredoc_only_text_is_not_run(tmp_path: Path) -> None:
    script = render_script("# {{v}}\n: {{v}}\ncat > out <<'EOF'\n$(touch PWNED)\nEOF\n")
    proc = run_bash(script, tmp_path, job_env({"v": "$(touch PWNED)"}))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").read_text() == "$(touch PWNED)\n"
    assert not (tmp_path / "PWNED").exists()


# --- arithmetic: placeholders whose value bash evaluates ----------------------------------

PWN = "a[$(touch PWNED)]"

# id -> (script, line of the flagged use). Each one runs ``touch PWNED`` for the value PWN.
ARITH_SCRIPTS: dict[str, tuple[str, int]] = {
    "dollar_dparen": ("echo $(( {{n}} + 1 ))", 1),
    "dollar_dparen_dq": ('echo "$(( {{n}} + 1 ))"', 1),
    "dparen": ("true\n(( {{n}} >= 0 )) || true", 2),
    "for_dparen": ("for (( i = 0; i < {{n}}; i++ )); do :; done", 1),
    "dollar_bracket": ("echo $[ {{n}} + 1 ]", 1),
    "let": ("let x={{n}}+1 || true", 1),
    "let_quoted": ('let "x = {{n}} + 1" || true', 1),
    **{
        f"dbracket_{op[1:]}": (f"if [[ 1 {op} {{{{n}}}} ]]; then :; fi", 1)
        for op in ("-eq", "-ne", "-lt", "-le", "-gt", "-ge")
    },
    "dbracket_left_paren": ("[[ -n x && ( {{n}} -eq 1 ) ]] || true", 1),
    "dbracket_v": ("[[ -v {{n}} ]] || true", 1),
    "test_v": ("[ -v {{n}} ] || true", 1),
    "subscript": ("a=(1 2)\necho ${a[{{n}}]}", 2),
    "subscript_dq": ('a=(1 2); echo "${a[{{n}}]}"', 1),
    "subscript_length": ("a=(1 2); echo ${#a[{{n}}]}", 1),
    "subscript_assign": ("a[{{n}}]=1", 1),
    "subscript_compound": ("a=([{{n}}]=1)", 1),
    "substring_offset": ('s=abcdef; echo "${s:{{n}}}"', 1),
    "substring_length": ("s=abcdef; echo ${s:1:{{n}}}", 1),
    "declare_i": ("declare -i x={{n}}", 1),
    "local_i": ("f() {\n  local -i x={{n}}\n}\nf", 2),
    "typeset_i": ("typeset -ai x=({{n}})", 1),
    "declare_i_then_assign": ("declare -i x\nx={{n}}", 2),
    "declare_n": ('declare -n r={{n}}; echo "$r"', 1),
    "declare_name": ("declare {{n}}=1", 1),
    "read_name": ("read {{n}} <<< 1", 1),
    "printf_v": ("printf -v {{n}} %s 1", 1),
    "flow_assign": ("x={{n}}\necho $(( x + 1 ))", 1),
    "flow_chain": ('x="{{n}}"\ny=$x\n(( y > 0 )) || true', 1),
    "flow_indirect": ("x={{n}}; echo ${!x}", 1),
    "flow_for": ("for i in {{n}}; do (( s += i )); done", 1),
    "flow_read": ('read -r x <<< "{{n}}"; echo $(( x ))', 1),
    "flow_printf_v": ("printf -v x %s {{n}}; echo $(( x ))", 1),
    "heredoc_in_arith": ("echo $(( $(cat <<EOF\n{{n}}\nEOF\n) ))", 2),
}
BAD_INTEGERS: list[object] = [PWN, "PATH=0", "1+1", "STAX_PARAM_m", 1.5, True, "1.5", None, ""]
GOOD_INTEGERS: list[object] = [3, -7, "0x1F", "2#101", " 42 "]
# values not used in arithmetic, with a harmless script around them
PLAIN_SCRIPTS = [
    "echo {{n}}",
    "[ {{n}} = x ] || true",
    "printf '%s' \"{{n}}\"",
    "[ {{n}} -eq 1 ] 2>/dev/null || true",
    "[[ {{n}} == x* ]] || true",
    'x={{n}}; echo "$x" "${#x}" "${x:-{{n}}}" $(( ${#x} + 1 ))',
    'declare x={{n}}; local_x() { local y="{{n}}"; }; local_x',
    'declare -a arr=({{n}} "{{n}}")',
    "read -r -p {{n}} x < /dev/null || true",
    "echo '$(( {{n}} ))' # (( {{n}} ))",
    "cat <<EOF\n(( {{n}} )) [[ {{n}} -eq 1 ]] let {{n}}\nEOF",
    'case {{n}} in 1) echo "$(( 1 ))" ;; esac',
]


def run_rendered(script: str, tmp_path: Path, value: object) -> subprocess.CompletedProcess[str]:
    return run_bash(render_script(script), tmp_path, job_env({"n": value, "m": PWN}))


@pytest.mark.parametrize(("script", "line"), ARITH_SCRIPTS.values(), ids=ARITH_SCRIPTS.keys())
def test_arithmetic_context_is_flagged(script: str, line: int) -> None:
    assert arithmetic_placeholders(script) == {"n": line}


@pytest.mark.parametrize("script", [s for s, _ in ARITH_SCRIPTS.values()], ids=ARITH_SCRIPTS.keys())
def test_arithmetic_context_really_runs_the_value(script: str, tmp_path: Path) -> None:
    """The premise: without the check, bash runs a command hidden in the value."""
    run_rendered(script, tmp_path, PWN)
    assert (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("value", BAD_INTEGERS, ids=repr)
@pytest.mark.parametrize(("script", "line"), ARITH_SCRIPTS.values(), ids=ARITH_SCRIPTS.keys())
def test_arithmetic_context_rejects(script: str, line: int, value: object) -> None:
    problems = check_arithmetic_values(script, {"n": value, "other": "x"}, where="step 'loop'")
    assert problems == [
        f"step 'loop' line {line} uses {{{{n}}}} in bash arithmetic, where bash evaluates the"
        f" value as code; its value must be an integer, got {value!r}"
    ]


@pytest.mark.parametrize("value", GOOD_INTEGERS, ids=repr)
@pytest.mark.parametrize("script", [s for s, _ in ARITH_SCRIPTS.values()], ids=ARITH_SCRIPTS.keys())
def test_arithmetic_context_accepts(script: str, value: object, tmp_path: Path) -> None:
    assert check_arithmetic_values(script, {"n": value}, where="s") == []
    run_rendered(script, tmp_path, value)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("script", PLAIN_SCRIPTS)
def test_plain_use_is_not_flagged(script: str, tmp_path: Path) -> None:
    assert arithmetic_placeholders(script) == {}
    assert check_arithmetic_values(script, {"n": PWN}, where="s") == []
    proc = run_rendered(script, tmp_path, PWN)
    assert not (tmp_path / "PWNED").exists(), proc.stderr


def test_arithmetic_placeholders_order_lines_and_names() -> None:
    script = (
        "echo {{a}} {{b}}\n"  # plain uses do not count
        "x={{c}}\n"
        "echo $(( {{b}} + {{b}} ))\n"
        "(( {{a}} ))\n"
        "echo $(( x ))\n"
        "echo $(( STAX_PARAM_d + STAX_PARAM_ ))\n"
    )
    assert arithmetic_placeholders(script) == {"c": 2, "b": 3, "a": 4, "d": 6}
    assert list(arithmetic_placeholders(script)) == ["c", "b", "a", "d"]


def test_arithmetic_placeholders_does_not_raise_for_unrenderable_scripts() -> None:
    assert arithmetic_placeholders("cat <<'EOF'\n$(( {{n}} ))\nEOF\n(( {{m}} ))") == {"m": 4}
    assert arithmetic_placeholders("cat <<{{n}}\nx\n{{n}}\n") == {}


def test_arithmetic_false_positives_are_conservative() -> None:
    # associative arrays take string keys, but the scanner cannot tell them from indexed ones
    assert arithmetic_placeholders("declare -A m\nm[{{k}}]=v") == {"k": 2}
    # data flow ignores order and subshells
    assert arithmetic_placeholders("(( x > 1 ))\nx={{n}}") == {"n": 2}


def test_check_arithmetic_values_types_and_missing() -> None:
    script = "echo $(( {{a}} + {{b}} + {{c}} + {{d}} + {{e}} + {{f}} ))"

    class Sneaky(int):
        def __str__(self) -> str:
            return PWN

    values: dict[str, object] = {"a": 1, "b": False, "c": 2.0, "d": Sneaky(1), "e": [1]}
    problems = check_arithmetic_values(script, values, where="w")
    assert [p.split("{{")[1].split("}}")[0] for p in problems] == ["b", "c", "d", "e"]
    assert all(p.startswith("w line 1 uses {{") for p in problems)
    assert check_arithmetic_values(script, {}, where="w") == []  # f: missing, not our business


@pytest.mark.parametrize(
    "text",
    [
        *("0", "-0", "+5", "-7", "007", "0x1F", "0XaB", "-0x1f", "2#101", "64#_@", "36#zZ"),
        *("37#Z", " 42 ", "\t-3\n", "99999999999999999999", "10#08"),
    ],
)
def test_integer_re_accepts(text: str) -> None:
    assert INTEGER_RE.match(text)


@pytest.mark.parametrize(
    "text",
    [
        *("", " ", "1.5", "1e3", "1 2", "--5", "+-5", "- 5", "0x", "0xg", "2#", "1#1", "65#1"),
        *("02#1", "a", "1+1", "x1", "1a", "(1)", "1\r", "\u0663", "1_000", "0b1", "PATH=0", "$1"),
        PWN,
    ],
)
def test_integer_re_rejects(text: str) -> None:
    assert not INTEGER_RE.match(text)


@pytest.mark.parametrize("text", ["08", "-09", "0128", "2#102", "37#Z0", "8#8", "10#a"])
def test_integer_literal_with_digits_too_large_for_its_base_is_rejected(text: str) -> None:
    assert INTEGER_RE.match(text)  # syntax fine, but bash fails with "value too great for base"
    assert check_arithmetic_values("(( {{n}} ))", {"n": text}, where="w") != []


def bash_integer(text: str) -> int | None:
    """Independent oracle: bash's reading of an integer literal, with Python's int()."""
    literal = text.strip(" \t\n")
    sign = -1 if literal.startswith("-") else 1
    literal = literal.lstrip("+-")
    try:
        if literal[:2].lower() == "0x":
            return sign * int(literal[2:], 16)
        if "#" in literal:
            base_text, digits = literal.split("#")
            base = int(base_text)
            if base <= 36:
                return None if set(digits) & set("@_") else sign * int(digits, base)
            alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ@_"
            values = [alphabet.index(d) for d in digits]
            if max(values) >= base:
                return None
            return sign * sum(v * base**k for k, v in enumerate(reversed(values)))
        return sign * int(literal, 8 if literal.startswith("0") else 10)
    except ValueError:
        return None


def wrap64(value: int) -> int:
    """Bash arithmetic: 64-bit two's complement."""
    return (value + 2**63) % 2**64 - 2**63


LITERALS = ["0", "-0", "007", "0x1F", "-0X7fffffffffffffff", "2#101", "-2#1", "64#_@", "36#zZ"]
LITERALS += ["37#aZ", " 42 ", "\t+3\n", "9223372036854775807", "-9223372036854775808", "10#08"]
INTEGER_SCRIPT = (
    "echo $(( {{n}} + 1 )) > sum\n"
    "(( {{n}} >= 0 )) && echo yes > sign || echo no > sign\n"
    "[[ {{n}} -eq {{n}} ]] && echo same > same\n"
)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from(LITERALS),
        st.from_regex(INTEGER_RE, fullmatch=True),
    )
)
@example(2**63)
@example("08")
def test_accepted_values_are_plain_integers_in_bash(value: int | str) -> None:
    accepted = check_arithmetic_values(INTEGER_SCRIPT, {"n": value}, where="s") == []
    expected = value if isinstance(value, int) else bash_integer(value)
    assert accepted == (expected is not None)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        proc = run_bash(render_script(INTEGER_SCRIPT), cwd, job_env({"n": value}))
        assert not (cwd / "PWNED").exists()
        got = [(cwd / f).read_text() if (cwd / f).exists() else None for f in ("sum", "sign")]
        same = (cwd / "same").read_text() if (cwd / "same").exists() else None
    if expected is not None:
        sign = "yes" if wrap64(expected) >= 0 else "no"
        assert got == [f"{wrap64(expected + 1)}\n", f"{sign}\n"], proc.stderr
        assert same == "same\n", proc.stderr
    else:  # rejected: bash fails on it, without running anything
        assert got[0] is None, proc.stderr


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                *"{}$'\"`\\#()<>-\t\n a[]:=;&|!",
                *("{{n}}", "{{m}}", "let ", "[[ ", " ]]", "declare -i ", "read ", "for ", " in "),
                *("printf -v ", "$((", "))", "${", "-eq ", "-v ", "x=", "<<EOF\n", "\nEOF\n"),
                *("<<'E'\n", "\nE\n", "$[", "<<<", "2>&1", "((", "local ", "[ ", " ]", "${!"),
            ]
        ),
        max_size=40,
    ).map("".join)
)
def test_arithmetic_placeholders_never_fails(script: str) -> None:
    found = arithmetic_placeholders(script)
    assert set(found) <= set(placeholders(script))
    lines = script.count("\n") + 1
    assert all(1 <= line <= lines for line in found.values())
