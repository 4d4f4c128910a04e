"""``KEY=VALUE`` parsing shared by the CLI, the magics and the picker: table-driven."""

from __future__ import annotations

import pytest

from jupyter_stax.core.assignments import (
    AssignmentError,
    parse_assignments,
    parse_value,
    split_assignment,
    text_assignments,
)

VALUES: list[tuple[str, object]] = [
    # JSON numbers: typed
    ("10", 10),
    ("0", 0),
    ("-3", -3),
    ("1.5", 1.5),
    ("-0.25", -0.25),
    ("2e3", 2000.0),
    ("1E-2", 0.01),
    ("12345678901234567890", 12345678901234567890),
    (" 10 ", 10),  # whitespace does not decide the type
    # true / false: typed
    ("true", True),
    ("false", False),
    # a JSON string: its content, as text
    ('"10"', "10"),
    ('"true"', "true"),
    ('"a \\"b\\""', 'a "b"'),
    ('""', ""),
    # everything else: the text as written
    ("", ""),
    ("x y", "x y"),
    (" x ", " x "),
    ("null", "null"),
    ("None", "None"),
    ("True", "True"),
    ("[1, 2]", "[1, 2]"),
    ('{"a": 1}', '{"a": 1}'),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("1e999", "1e999"),
    ("+1", "+1"),
    (".5", ".5"),
    ("01", "01"),
    ("0x10", "0x10"),
    ("1_000", "1_000"),
    ("10s", "10s"),
    ('"unclosed', '"unclosed'),
    ('"a" "b"', '"a" "b"'),
    ("$(id)", "$(id)"),
    ("`id`; rm -rf ~", "`id`; rm -rf ~"),
]


@pytest.mark.parametrize(("text", "value"), VALUES, ids=[repr(t) for t, _ in VALUES])
def test_parse_value(text: str, value: object) -> None:
    got = parse_value(text)
    assert got == value and type(got) is type(value)


SPLITS: list[tuple[str, tuple[str, str] | None]] = [
    ("n=10", ("n", "10")),
    (" n =10", ("n", "10")),
    ("n= 10", ("n", " 10")),
    ("url=a=b", ("url", "a=b")),
    ("n=", ("n", "")),
    ("n", None),
    ("=10", None),
    (" =10", None),
    ("", None),
]


@pytest.mark.parametrize(("item", "pair"), SPLITS, ids=[repr(i) for i, _ in SPLITS])
def test_split_assignment(item: str, pair: tuple[str, str] | None) -> None:
    if pair is None:
        with pytest.raises(AssignmentError) as e:
            split_assignment(item)
        assert str(e.value) == f"expected NAME=VALUE, got {item!r}" and e.value.item == item
    else:
        assert split_assignment(item) == pair


def test_parse_assignments_types_values_and_later_keys_win() -> None:
    got = parse_assignments(["n=10", "msg=a b", "x=1.5", "ok=true", "n=11", 's="7"'])
    assert got == {"n": 11, "msg": "a b", "x": 1.5, "ok": True, "s": "7"}
    assert type(got["n"]) is int
    assert parse_assignments([]) == {}
    with pytest.raises(AssignmentError, match="got 'bad'"):
        parse_assignments(["n=1", "bad"])


def test_text_assignments_keep_every_value_as_text() -> None:
    assert text_assignments(["A=10", "B=true", "C= x"]) == {"A": "10", "B": "true", "C": " x"}
    with pytest.raises(AssignmentError):
        text_assignments(["A"])
