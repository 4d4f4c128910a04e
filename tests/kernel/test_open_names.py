"""``run.open`` takes a file's name literally: glob characters in it match only themselves."""

from __future__ import annotations

import pytest

from jupyter_stax.core.errors import StaxError
from jupyter_stax.kernel.api import Workflow
from jupyter_stax.service import LocalService


def test_open_a_name_with_glob_characters(svc: LocalService) -> None:
    wf = Workflow("globby")
    wf.step("g", "printf A > 'a[1].csv'; printf B > a1.csv; printf C > 'q?.txt'; "
                 "printf D > qx.txt; printf E > 'st*r.txt'; printf F > stxr.txt; "
                 "mkdir -p 'd[x]' && printf G > 'd[x]/f.txt'")
    run = wf.submit("local", service=svc).wait(60)
    for name, want in (("a[1].csv", "A"), ("a1.csv", "B"), ("q?.txt", "C"), ("qx.txt", "D"),
                       ("st*r.txt", "E"), ("stxr.txt", "F"), ("d[x]/f.txt", "G")):
        with run.open("g", name) as f:
            assert f.read() == want, name
    with pytest.raises(StaxError, match="matched no file"):
        run.open("g", "q*.txt")  # a pattern is not a name
