"""Runs INSIDE roc-validator's own venv (see :mod:`tests.roc_validator`), never imported by the
tests: validates crates offline, one per line of stdin, one JSON line of result each on stdout.

roc-validator ships its profiles (SHACL shapes) in the package; what it fetches at validation time
is the crate's JSON-LD ``@context`` (through ``requests_cache``; rdflib's own loader is replaced by
the validator's). This machine cannot reach w3id.org, so the contexts our crates use are served
from the copies in ``tests/rocrate_contexts/`` into a fresh HTTP cache, and the validator runs in
its ``offline`` mode: a URL that is not in that cache is an *offline miss*, reported with the
result (never fetched).

Protocol: argv = CACHE_DIR; stdin: one crate path per line; stdout: ``{"ready": true}`` once,
then per crate ``{"crate", "passed", "issues": [[severity, check id, check name, message]],
"misses": [url], "seconds"}``.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests
import requests_cache
import urllib3
from requests.adapters import HTTPAdapter

HERE = Path(__file__).resolve().parent / "rocrate_contexts"
#: the contexts our crates name, and the copy each is served from (see rocrate_contexts/README.md)
CONTEXTS = {
    "https://w3id.org/ro/crate/1.1/context": HERE / "ro-crate-1.1.jsonld",
    "https://w3id.org/ro/terms/workflow-run/context": HERE / "workflow-run.json",
}
#: the most specific profile of our crates; it inherits the Workflow Run, Process Run, Workflow
#: RO-Crate and RO-Crate 1.1 profiles
PROFILE = "provenance-run-crate-0.5"
ACCEPT = "application/ld+json, application/json, */*;q=0.1"  # what the validator sends


class _Copies(HTTPAdapter):
    """Answers a GET of a context URL with the local copy (used once, to fill the cache)."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        data = CONTEXTS[str(request.url)].read_bytes()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(data),
            headers={"Content-Type": "application/ld+json"},
            status=200,
            preload_content=False,
            request_url=request.url,
        )
        return self.build_response(request, raw)


def seed(cache: Path) -> None:
    s = requests_cache.CachedSession(cache_name=str(cache), backend="sqlite", expire_after=-1)
    s.mount("https://w3id.org/", _Copies())
    for url in CONTEXTS:
        r = s.get(url, headers={"Accept": ACCEPT}, allow_redirects=True)
        r.raise_for_status()
    s.close()


def main() -> None:
    cache = Path(sys.argv[1]) / "http_cache"
    seed(cache)
    from rocrate_validator import models, services
    from rocrate_validator.utils import http

    misses: list[str] = []
    original = http.OfflineCacheMissError.__init__

    def note_miss(self: Any, url: str) -> None:
        misses.append(url)
        original(self, url)

    http.OfflineCacheMissError.__init__ = note_miss  # type: ignore[method-assign]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        crate = line.rstrip("\n")
        if not crate:
            continue
        misses.clear()
        t0 = time.monotonic()
        out: dict[str, Any] = {"crate": crate}
        try:
            settings = models.ValidationSettings(
                rocrate_uri=crate,
                profile_identifier=PROFILE,
                requirement_severity=models.Severity.REQUIRED,
                offline=True,
                cache_path=cache,
            )
            result = services.validate(settings)
            out["passed"] = result.passed()
            out["issues"] = [
                [i.severity.name, i.check.identifier, i.check.name, i.message]
                for i in result.get_issues()
            ]
        except Exception as e:  # reported to the test, which fails with it
            out["passed"] = False
            out["issues"] = [["ERROR", "-", type(e).__name__, str(e)]]
        out["misses"] = sorted(set(misses))
        out["seconds"] = round(time.monotonic() - t0, 2)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
