"""Every route the extension registers needs an authenticated AND authorized user.

The routes are enumerated from the extension's own handler list, so a route added without
``@web.authenticated`` + ``@authorized`` fails here. The server is configured so that nothing
else would refuse the request (unauthenticated access allowed by default, no XSRF check): the
403 can only come from the handlers' decorators.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.auth import Authorizer
from tornado import web

from jupyter_stax.server.app import StaxApp
from jupyter_stax.server.handlers import AUTH_RESOURCE, HANDLERS

from .conftest import Call, stax_config

METHODS = ("get", "post", "put", "patch", "delete", "head")
SAMPLES = {
    "execution_id": "abc",
    "name": "local",
    "step": "a",
    "rest": "/anything",
    "build_id": "b1",
}


def routes(app: StaxApp) -> list[tuple[str, str]]:
    """(method, concrete path under stax/api/) of every handler method of the extension."""
    out = []
    for pattern, handler, *_ in app.handlers:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)\??", lambda m: SAMPLES[m.group(1)], pattern)
        path = path.replace("\\.", ".")
        assert path.startswith("stax/api"), pattern
        for m in METHODS:
            if getattr(handler, m) is not getattr(web.RequestHandler, m):
                out.append((m.upper(), path[len("stax/api/") :]))
    return out


class DenyStax(Authorizer):
    """Allows everything except the jupyter_stax resource."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return resource != AUTH_RESOURCE


@pytest.fixture
def jp_server_config(stax_env: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    config = stax_config(stax_env)
    config["ServerApp"].update(allow_unauthenticated_access=True, disable_check_xsrf=True)
    if getattr(request, "param", None) == "deny stax":
        config["ServerApp"]["authorizer_class"] = DenyStax
    return config


def test_the_handler_list_is_what_the_extension_registers(stax_app: StaxApp) -> None:
    assert [h[:2] for h in stax_app.handlers] == HANDLERS
    assert len(routes(stax_app)) >= 14


async def test_every_route_refuses_unauthenticated_requests(stax_app: StaxApp, raw: Call) -> None:
    seen = []
    for method, path in routes(stax_app):
        r = await raw(method, path, auth=False)
        assert r.code == 403, (method, path, r.code, r.body)
        if method != "HEAD":
            assert r.body["error"] == "HTTPError" and "token" in r.body["message"], r.body
        seen.append((method, path))
    assert ("POST", "executions") in seen and ("DELETE", "executions/abc") in seen


@pytest.mark.parametrize("jp_server_config", ["deny stax"], indirect=True)
async def test_every_route_refuses_users_not_authorized_for_stax(
    stax_app: StaxApp, raw: Call, jp_fetch: Any
) -> None:
    for method, path in routes(stax_app):
        r = await raw(method, path, auth=True)
        assert r.code == 403, (method, path, r.code, r.body)
        if method != "HEAD":
            assert f"on resource: {AUTH_RESOURCE}" in r.body["message"], r.body
    # the rest of the server still answers this user
    assert (await jp_fetch("api", "status")).code == 200
