"""Which file of a step directory may be listed and downloaded (pure rules over a listing)."""

from __future__ import annotations

import pytest

from jupyter_stax.core.errors import BadRequest, Forbidden, NotFound
from jupyter_stax.core.staging import TreeEntry
from jupyter_stax.core.stepfiles import clean_path, downloadable, listing

TREE = [
    TreeEntry("res", 0, "d"), TreeEntry("res/a.csv", 8, "f"), TreeEntry("evil", 0, "l"),
    TreeEntry("res/up", 0, "l"), TreeEntry("fifo", 0, "o"), TreeEntry("stax.out", 3, "f"),
]


@pytest.mark.parametrize(
    ("path", "clean"),
    [("a.csv", "a.csv"), ("./res//a.csv", "res/a.csv"), ("res/./a b.csv", "res/a b.csv"),
     ("-x $(y)", "-x $(y)")],
)
def test_clean_path_keeps_relative_paths(path: str, clean: str) -> None:
    assert clean_path(path) == clean


@pytest.mark.parametrize("path", [None, "", "/etc/passwd", "../x", "a/../../x", ".", "a\0b"])
def test_clean_path_refuses_what_could_leave(path: str | None) -> None:
    with pytest.raises(BadRequest):
        clean_path(path)


@pytest.mark.parametrize(
    ("path", "error"),
    [("res/a.csv", None), ("evil", Forbidden), ("res/up/passwd", Forbidden),
     ("evil/x", Forbidden), ("res", Forbidden), ("fifo", Forbidden), ("nope", NotFound),
     ("res/nope.csv", NotFound)],
)
def test_only_regular_files_of_the_listing_are_downloadable(
    path: str, error: type[Exception] | None
) -> None:
    if error is None:
        assert downloadable(path, "s", TREE).size == 8
    else:
        with pytest.raises(error):
            downloadable(path, "s", TREE)


def test_the_listing_has_regular_files_sorted_and_counts_links() -> None:
    got = listing("e", "s", "far", "/r/s", TREE, limit=1)
    assert [f.path for f in got.files] == ["res/a.csv"] and got.truncated and got.links == 2
    got = listing("e", "s", "far", "/r/s", TREE)
    assert [f.path for f in got.files] == ["res/a.csv", "stax.out"] and not got.truncated
