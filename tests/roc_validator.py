"""roc-validator (PyPI ``roc-validator``, import name ``rocrate_validator``) over the crates the
tests export, run as a subprocess in a venv of its own: it pins ``rich<14``, which conflicts
with import-linter's, so it stays out of the test extra (and out of pyproject.toml, whose hash
names the fast suite's venvs).

The venv is made once under ``~/.cache/jupyter-stax/roc-validator-VERSION`` (by whichever Python
runs the tests first; a lock keeps two pytest runs from making it at once) and kept between runs.
One worker process (:mod:`tests.roc_validator_worker`) serves the whole pytest session: it
starts once and validates each crate offline (the JSON-LD contexts from
``tests/rocrate_contexts/``), so a crate costs only its own validation.

Without the venv (no network for pip) a test's validation, called last, skips it; in CI it
fails.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

VERSION = "0.13.0"
WORKER = Path(__file__).resolve().parent / "roc_validator_worker.py"
INSTALL_TIMEOUT = 600


def venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "jupyter-stax" / f"roc-validator-{VERSION}"


def ensure_venv() -> Path:
    """The validator venv's python, made when missing. RuntimeError saying why it cannot be."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    ready = venv / ".stax-ready"
    if ready.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest may be making it: wait for it
        if ready.exists():
            return python
        log = Path(f"{venv}.log")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        with log.open("w") as out:
            steps = [
                [sys.executable, "-m", "venv", "--clear", str(venv)],
                [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                 f"roc-validator=={VERSION}"],
            ]
            for argv in steps:
                r = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=INSTALL_TIMEOUT
                )
                if r.returncode != 0:
                    tail = log.read_text()[-2000:]
                    raise RuntimeError(
                        f"cannot make roc-validator's venv {venv} ({' '.join(argv)} exited "
                        f"{r.returncode}; log {log}):\n{tail}"
                    )
        ready.touch()
    return python


class RocValidator:
    """The worker process: :meth:`validate` sends a crate's path, reads its result."""

    def __init__(self, python: Path, work: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.stderr_path = work / "roc-validator.stderr"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [str(python), str(WORKER), str(work)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self._read()  # {"ready": true}: the contexts are in its cache

    def _read(self) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline()  # pytest-timeout bounds a worker that hangs
        if not line:
            code = self.proc.wait()
            raise RuntimeError(
                f"roc-validator's worker exited {code}: {self.stderr_path.read_text()[-3000:]}"
            )
        data: dict[str, Any] = json.loads(line)
        return data

    def validate(self, crate: Path) -> dict[str, Any]:
        inp = self.proc.stdin
        assert inp is not None
        inp.write(f"{crate}\n")
        inp.flush()
        return self._read()

    def check(self, crate: Path) -> dict[str, Any]:
        """Validate ``crate`` against the Provenance Run Crate 0.5 profile (and every profile it
        inherits), REQUIRED checks, offline; assert it passes with no offline miss."""
        r = self.validate(crate)
        issues = "\n".join(" | ".join(i) for i in r["issues"])
        assert not r["misses"], f"roc-validator wanted to fetch {r['misses']} ({crate})"
        assert r["passed"], f"roc-validator: {crate} does not conform:\n{issues}"
        return r

    def refutes(self, crate: Path, check_id: str) -> None:
        """``crate`` fails the validation, and check ``check_id`` is among its issues."""
        r = self.validate(crate)
        assert not r["passed"] and check_id in [i[1] for i in r["issues"]], r

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


class Unavailable:
    """The validator could not be made here: :meth:`check` skips (the test's own checks ran
    first: it is called last)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, crate: Path) -> dict[str, Any]:
        pytest.skip(f"roc-validator is not available: {self.reason}")

    def refutes(self, crate: Path, check_id: str) -> None:
        pytest.skip(f"roc-validator is not available: {self.reason}")


@pytest.fixture(scope="session")
def roc_validator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RocValidator | Unavailable]:
    try:
        python = ensure_venv()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI validates crates with roc-validator: {e}")
        yield Unavailable(str(e))
        return
    v = RocValidator(python, tmp_path_factory.mktemp("roc-validator"))
    try:
        yield v
    finally:
        v.close()
