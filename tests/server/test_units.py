"""Unit tests of what the handlers use: log chunks, query parameters, cursors, bodies."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from jupyter_stax.core.errors import BadRequest, Forbidden, InvalidWorkflow, NotFound
from jupyter_stax.core.models import Workflow
from jupyter_stax.operations.logs import log_file_name, read_chunk, utf8_boundary
from jupyter_stax.operations.paging import decode_cursor
from jupyter_stax.server.errors import error_answer
from jupyter_stax.server.inputs import (
    build_request,
    int_arg,
    log_args,
    page_args,
    submit_request,
)


@pytest.mark.parametrize(
    ("data", "cut"),
    [
        (b"", 0),
        (b"abc", 3),
        ("é".encode(), 2),
        ("é".encode()[:1], 0),
        (b"a" + "€".encode()[:2], 1),
        (b"a" + "€".encode(), 4),
        (b"a" + "𝄞".encode()[:3], 1),
        (b"a" + "𝄞".encode(), 5),
        (b"a\x80\x80\x80\x80", 5),  # stray continuation bytes: invalid, left in place
        (b"a\xff", 2),
    ],
)
def test_utf8_boundary(data: bytes, cut: int) -> None:
    assert utf8_boundary(data) == cut


def _chunk(d: Path, **kw: object) -> object:
    args: dict[str, object] = {"offset": 0, "limit": 1 << 20, "final": True, "label": "stax.out"}
    args.update(kw)
    return read_chunk(str(d), "stax.out", **args)  # type: ignore[arg-type]


def test_read_chunk_offsets_and_eof(tmp_path: Path) -> None:
    (tmp_path / "stax.out").write_bytes("a€b".encode())  # 5 bytes
    c = _chunk(tmp_path, limit=2, final=False)
    assert c.model_dump() == {"data": "a", "offset": 0, "next_offset": 1, "size": 5, "eof": False}
    c = _chunk(tmp_path, offset=1, limit=1, final=False)  # smaller than the character: whole
    assert (c.data, c.next_offset) == ("€", 4)
    c = _chunk(tmp_path, offset=4, final=True)
    assert (c.data, c.next_offset, c.eof) == ("b", 5, True)
    c = _chunk(tmp_path, offset=0, limit=0, final=True)
    assert (c.data, c.next_offset, c.eof) == ("", 0, False)


def test_read_chunk_incomplete_character_at_the_end(tmp_path: Path) -> None:
    (tmp_path / "stax.out").write_bytes(b"ok " + "€".encode()[:2])
    running = _chunk(tmp_path, final=False)  # the writer may finish the character: wait for it
    assert (running.data, running.next_offset, running.eof) == ("ok ", 3, False)
    again = _chunk(tmp_path, offset=3, final=False)
    assert (again.data, again.next_offset) == ("", 3)
    done = _chunk(tmp_path, offset=3, final=True)  # it never will: send it, reach eof
    assert (done.data, done.next_offset, done.eof) == ("\ufffd", 5, True)


def test_read_chunk_missing_file_and_refusals(tmp_path: Path) -> None:
    c = _chunk(tmp_path, offset=7, final=False)
    assert c.model_dump() == {"data": "", "offset": 0, "next_offset": 0, "size": 0, "eof": False}
    assert _chunk(tmp_path / "nodir", final=True).eof
    with pytest.raises(BadRequest):
        _chunk(tmp_path, offset=-1)
    (tmp_path / "stax.out").symlink_to("/etc/passwd")
    with pytest.raises(Forbidden, match="outside the step directory"):
        _chunk(tmp_path)
    (tmp_path / "stax.out").unlink()
    (tmp_path / "stax.out").symlink_to("/nonexistent/dangling")
    with pytest.raises(Forbidden):
        _chunk(tmp_path)
    (tmp_path / "stax.out").unlink()
    (tmp_path / "stax.out").mkdir()
    with pytest.raises(Forbidden, match="not a regular file"):
        _chunk(tmp_path)


def test_read_chunk_through_a_linked_step_directory(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "stax.out").write_text("x\n")
    (tmp_path / "link").symlink_to(real)
    assert _chunk(tmp_path / "link").data == "x\n"


def test_log_file_names() -> None:
    assert log_file_name("stdout", None, 2, "a") == "stax.out"
    assert log_file_name("stderr", 2, 2, "a") == "stax.err"
    assert log_file_name("stdout", 1, 3, "a") == "stax.out.1"
    assert log_file_name("stdout", None, 0, "a") == "stax.out"
    with pytest.raises(NotFound, match=r"no attempt 4 \(attempts 1 to 3"):
        log_file_name("stdout", 4, 3, "a")
    with pytest.raises(NotFound, match="no attempt yet"):
        log_file_name("stdout", 1, 0, "a")
    with pytest.raises(BadRequest):
        log_file_name("../stax.out", None, 1, "a")


def test_query_parameters() -> None:
    assert int_arg(None, "n", default=5) == 5 and int_arg(" 7 ", "n", default=5) == 7
    assert int_arg("900", "n", default=1, high=10, clamp=True) == 10
    with pytest.raises(BadRequest, match="at most 10"):
        int_arg("900", "n", default=1, high=10)
    assert log_args({}) == ("stdout", 0, 1 << 20, None)
    assert log_args({"stream": "STDERR", "limit": str(1 << 30)}) == ("stderr", 0, 8 << 20, None)
    assert page_args({}) == (None, 50, None)


def test_cursor_round_trip_and_garbage() -> None:
    from jupyter_stax.operations.paging import encode_cursor

    class Ex:
        created_at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)

    c = encode_cursor(Ex())  # type: ignore[arg-type]
    assert decode_cursor(c) == Ex.created_at.timestamp()
    for bad in [
        "",
        "!!!",
        base64.urlsafe_b64encode(b'{"before": NaN}').decode(),
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b'{"before": true}').decode(),
    ]:
        with pytest.raises(BadRequest, match="cursor"):
            decode_cursor(bad)


def test_submit_body_yaml_is_parsed_never_read_as_a_path(tmp_path: Path) -> None:
    f = tmp_path / "wf.yaml"
    f.write_text("name: fromfile\nsteps: [{name: a, run: 'true'}]\n")
    with pytest.raises(InvalidWorkflow, match="must be a mapping"):
        submit_request(json.dumps({"workflow": str(f)}).encode())
    req = submit_request(json.dumps({"workflow": f.read_text()}).encode())
    assert isinstance(req.workflow, Workflow) and req.workflow.name == "fromfile"


def test_error_map() -> None:
    from tornado.web import HTTPError

    assert error_answer(NotFound("x", details=["d"]), 500)[0] == 404
    status, body = error_answer(HTTPError(403), 403)
    assert status == 403 and "token" in body.message and body.error == "HTTPError"
    status, body = error_answer(HTTPError(400, "bad %s", "thing"), 400)
    assert body.message == "bad thing"
    status, body = error_answer(KeyError("boom"), 500)
    assert status == 500 and body.error == "KeyError" and "bug" in body.message


@pytest.mark.parametrize(
    ("recipe", "catalog", "configured", "refused"),
    [
        ("r/stax.yaml", None, [], None),
        ("r/stax.yaml", "cat.yaml", [], None),  # inside the root
        ("{tmp}/root/r/stax.yaml", None, [], None),  # absolute, inside the root
        ("../r/stax.yaml", None, [], "recipe"),
        ("r/stax.yaml", "{tmp}/elsewhere/images.yaml", [], "catalog"),
        # a catalog file the server reads may be named (the sidebar adds a variant to it) ...
        ("r/stax.yaml", "{tmp}/elsewhere/images.yaml", ["{tmp}/elsewhere/images.yaml"], None),
        # ... but that never lets a recipe out of the root
        ("{tmp}/elsewhere/images.yaml", None, ["{tmp}/elsewhere/images.yaml"], "recipe"),
    ],
)
def test_build_request_paths(
    tmp_path: Path, recipe: str, catalog: str | None, configured: list[str], refused: str | None
) -> None:
    root = tmp_path / "root"
    body: dict[str, str] = {"recipe": recipe.format(tmp=tmp_path)}
    if catalog:
        body["catalog"] = catalog.format(tmp=tmp_path)
    specs = [c.format(tmp=tmp_path) for c in configured]
    raw = json.dumps(body).encode()
    if refused:
        with pytest.raises(Forbidden, match=f"{refused} .* outside the server's root"):
            build_request(raw, str(root), specs)
        return
    req = build_request(raw, str(root), specs)
    assert Path(req.recipe).is_absolute() and Path(req.recipe).is_relative_to(root)
    if catalog:
        want = Path(body["catalog"]) if catalog.startswith("{") else root / catalog
        assert req.catalog == str(want)
