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
    PARAM_ENV_PREFIX,
    PLACEHOLDER_RE,
    ParamError,
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
