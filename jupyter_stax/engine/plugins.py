"""Plug-ins from entry points: container runtimes and image catalog sources.

Groups (``[project.entry-points."<group>"]`` in a package's pyproject):

* ``jupyter_stax.container_runtimes``: ``NAME = "module:Object"``, a
  :class:`~jupyter_stax.core.containers.ContainerRuntime` subclass (instantiated without
  arguments) or instance;
* ``jupyter_stax.image_sources``: ``NAME = "module:Class"``, an
  :class:`~jupyter_stax.engine.image_sources.ImageSource` subclass.

Entry points are loaded lazily, once per process, on first use. A plug-in that fails to load is
reported ONCE (a warning in the log, and in :func:`problems`, which ``GET images`` and
``jupyter stax images`` show) and left out; it never breaks the other plug-ins. The built-in
runtimes and sources are always there, also when the package metadata is missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from ..core.containers import ContainerRuntime, builtin_runtimes

log = logging.getLogger("jupyter_stax.plugins")

RUNTIMES_GROUP = "jupyter_stax.container_runtimes"
SOURCES_GROUP = "jupyter_stax.image_sources"

_lock = threading.Lock()
_runtimes: dict[str, ContainerRuntime] | None = None
_classes: dict[str, dict[str, type[Any]]] = {}
C = TypeVar("C")
_problems: dict[str, str] = {}


def _report(key: str, message: str) -> None:
    if key not in _problems:
        _problems[key] = message
        log.warning("jupyter_stax: %s", message)


def _load(group: str) -> list[tuple[str, Any]]:
    out = []
    for ep in entry_points(group=group):
        try:
            out.append((ep.name, ep.load()))
        except Exception as e:  # a broken plug-in must not break the others
            _report(
                f"{group}:{ep.name}",
                f"plug-in {ep.name!r} ({ep.value}) of {group} cannot be loaded and is left out: "
                f"{type(e).__name__}: {e}",
            )
    return out


def runtimes() -> dict[str, ContainerRuntime]:
    """Every container runtime by name: the built-in ones, then plug-ins."""
    global _runtimes
    with _lock:
        if _runtimes is None:
            found = builtin_runtimes()
            for name, obj in _load(RUNTIMES_GROUP):
                if name in found and (obj is found[name] or type(found[name]) is obj):
                    continue  # the built-in's own entry point
                try:
                    rt = obj() if isinstance(obj, type) else obj
                    if not isinstance(rt, ContainerRuntime) and not callable(
                        getattr(rt, "render", None)
                    ):
                        raise TypeError("it has no render() method")
                except Exception as e:
                    _report(
                        f"{RUNTIMES_GROUP}:{name}",
                        f"container runtime plug-in {name!r} is not usable and is left out: {e}",
                    )
                    continue
                found[name] = rt
            _runtimes = found
        return dict(_runtimes)


def runtime(name: str) -> ContainerRuntime | None:
    return runtimes().get(name)


def classes(
    group: str, base: type[C], builtin: Mapping[str, type[C]], what: str
) -> dict[str, type[C]]:
    """Every class of ``group`` by name: ``builtin`` first, then the plug-ins that are
    subclasses of ``base`` (others are reported as ``what`` plug-ins and left out). Loaded once
    per group; the caller owns the meaning (e.g. :func:`~.image_sources.source_classes`), so this
    module imports none of them."""
    with _lock:
        found = _classes.get(group)
        if found is None:
            found = dict(builtin)
            for name, obj in _load(group):
                if isinstance(obj, type) and issubclass(obj, base):
                    found.setdefault(name, obj)
                else:
                    _report(
                        f"{group}:{name}",
                        f"{what} plug-in {name!r} is not an {base.__name__} class and is left out",
                    )
            _classes[group] = found
        return dict(found)


def problems() -> list[str]:
    """Plug-ins that could not be loaded (each reported once)."""
    with _lock:
        return list(_problems.values())


def reset() -> None:
    """Forget what was loaded (tests)."""
    global _runtimes
    with _lock:
        _runtimes = None
        _classes.clear()
        _problems.clear()
