"""Image builders: what turns a Containerfile and build ARGs into an image directory.

:class:`ChImage` (Charliecloud's ``ch-image``, Debian's ``charliecloud-builders``, unprivileged,
no network needed for a local base; the default) and :class:`Buildah` (``buildah bud``, chroot
isolation, vfs storage) are built in; more come as plug-ins in the entry-point group
``jupyter_stax.builders`` (subclasses of :class:`Builder`), as image sources and container
runtimes do (:mod:`jupyter_stax.engine.plugins`).

A builder imports the recipe's base under a name of its own (:meth:`Builder.import_base`), builds
one variant with its output going to a log file (:meth:`Builder.build`), and gives the root file
system directory of the result; labels and output formats are :mod:`.outputs`' job.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from ...core.errors import StaxError
from .. import plugins

BUILDERS_GROUP = "jupyter_stax.builders"
#: lines of the builder's log an error shows
TAIL_LINES = 12


class BuilderMissing(StaxError):
    """The builder is not installed (or cannot run) here."""

    http_status = 503


class BuildFailed(StaxError):
    """The builder failed on one variant; the message ends with the log's last lines."""


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Builder:
    """One builder. ``storage``: the builder's own storage directory (None: its default)."""

    name: ClassVar[str] = "?"

    def __init__(self, storage: Path | None = None) -> None:
        self.storage = storage

    def problem(self) -> str | None:
        """Why this builder cannot run here (with what to install), or None."""
        raise NotImplementedError

    def import_base(self, source: Path, name: str, log: Path) -> None:
        """Make ``source`` (a root file system directory or a tarball) the image ``name``."""
        raise NotImplementedError

    def build(
        self,
        containerfile: Path,
        context: Path,
        args: Mapping[str, str],
        tag: str,
        log: Path,
        *,
        rebuild: bool = False,
    ) -> Path:
        """Build ``tag``; its root file system directory. BuildFailed with the log's tail."""
        raise NotImplementedError

    def base_ref(self, name: str) -> str:
        """How a Containerfile's FROM names the base imported as ``name``."""
        return name

    def release(self, tag: str) -> None:
        """The directory :meth:`build` gave for ``tag`` is no longer needed (unmount it)."""


def _env() -> dict[str, str]:
    """The builder's environment: ours, less what points a Python at OUR packages (a builder
    is an outside tool: Debian's ch-image under /usr/bin/python3 broke on the requests and
    pyOpenSSL of a PYTHONPATH that the Jupyter server or a kernel had set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if not env.get("USER"):  # ch-image and ch-run need $USER
        env["USER"] = pwd.getpwuid(os.getuid()).pw_name
    return env


def distribution_tool(name: str) -> list[str]:
    """The command that runs tool ``name``. A distribution's Python tool (``/usr/bin/NAME``
    starting with ``#!/usr/bin/env python3``, as Debian's ``ch-image`` does) runs with the
    distribution's ``/usr/bin/python3``, not with whichever ``python3`` comes first on the PATH:
    inside a virtual environment or under pyenv that is another Python, which the tool was not
    made for (Debian 12's ch-image fails on Python 3.13's pathlib)."""
    exe = shutil.which(name)
    if exe is None or not exe.startswith("/usr/bin/") or not Path("/usr/bin/python3").is_file():
        return [name]
    try:
        with open(exe, "rb") as f:
            first = f.readline(200)
    except OSError:
        return [name]
    if first.strip() in (b"#!/usr/bin/env python3", b"#! /usr/bin/env python3"):
        return ["/usr/bin/python3", exe]
    return [name]


class ChImage(Builder):
    """Charliecloud's unprivileged ``ch-image`` (storage: ``-s DIR``, else
    ``$CH_IMAGE_STORAGE``, else its default ``/var/tmp/$USER.ch``)."""

    name = "ch-image"

    def _storage(self) -> Path:
        if self.storage is not None:
            return self.storage
        env = os.environ.get("CH_IMAGE_STORAGE")
        return Path(env) if env else Path("/var/tmp") / f"{_env()['USER']}.ch"

    def _cmd(self, *args: str) -> list[str]:
        return [*distribution_tool("ch-image"), "-s", str(self._storage()), *args]

    def problem(self) -> str | None:
        if shutil.which("ch-image") is None:
            return (
                "the ch-image builder is not installed: apt-get install charliecloud-builders "
                "(Debian/Ubuntu), or see https://hpc.github.io/charliecloud/"
            )
        return None

    def has(self, name: str) -> bool:
        return (self._storage() / "img" / name).is_dir()

    def _run(self, argv: list[str], log: Path, what: str) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            out.write(("$ " + " ".join(argv) + "\n").encode())
            out.flush()
            try:
                p = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env()
                )
            except OSError as e:
                raise BuilderMissing(f"cannot run {argv[0]}: {e.strerror}") from None
        if p.returncode != 0:
            raise BuildFailed(
                f"{what} failed (ch-image exit {p.returncode}); the log's last lines "
                f"({log}):\n{tail(log)}"
            )

    def import_base(self, source: Path, name: str, log: Path) -> None:
        if self.has(name):
            return
        self._run(self._cmd("import", str(source), name), log, f"importing base {source}")

    def build(
        self,
        containerfile: Path,
        context: Path,
        args: Mapping[str, str],
        tag: str,
        log: Path,
        *,
        rebuild: bool = False,
    ) -> Path:
        argv = self._cmd("build", *(["--rebuild"] if rebuild else []))
        for k, v in args.items():
            argv += ["--build-arg", f"{k}={v}"]
        argv += ["-t", tag, "-f", str(containerfile), str(context)]
        self._run(argv, log, f"building {tag}")
        root = self._storage() / "img" / tag
        if not root.is_dir():
            raise BuildFailed(f"ch-image built {tag} but {root} is missing; see {log}")
        return root


class Buildah(Builder):
    """``buildah bud`` with chroot isolation and its own vfs storage (``storage``, else
    ``/var/tmp/$USER.buildah``): works as root without a daemon; the built image is mounted
    to be copied out, then released."""

    name = "buildah"

    def __init__(self, storage: Path | None = None) -> None:
        super().__init__(storage)
        self._mounted: dict[str, str] = {}

    def _root(self) -> Path:
        return self.storage or Path("/var/tmp") / f"{_env()['USER']}.buildah"

    def _cmd(self, *args: str) -> list[str]:
        root = self._root()
        return [
            "buildah",
            "--storage-driver",
            "vfs",
            "--root",
            str(root / "root"),
            "--runroot",
            str(root / "run"),
            *args,
        ]

    def problem(self) -> str | None:
        if shutil.which("buildah") is None:
            return "buildah is not installed: apt-get install buildah"
        return None

    def _out(self, argv: list[str], log: Path, what: str) -> str:
        log.parent.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(
            argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_env()
        )
        with log.open("a") as out:
            out.write("$ " + " ".join(argv) + "\n" + p.stdout + p.stderr)
        if p.returncode != 0:
            raise BuildFailed(
                f"{what} failed (buildah exit {p.returncode}); the log's last lines "
                f"({log}):\n{tail(log)}"
            )
        return p.stdout.strip()

    def base_ref(self, name: str) -> str:
        return f"localhost/{name}"

    def import_base(self, source: Path, name: str, log: Path) -> None:
        probe = subprocess.run(
            self._cmd("inspect", "--type", "image", self.base_ref(name)),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            env=_env(),
        )
        if probe.returncode == 0:
            return
        what = f"importing base {source}"
        ctr = self._out(self._cmd("from", "scratch"), log, what)
        try:
            verb = "copy" if source.is_dir() else "add"  # add unpacks a tarball
            self._out(self._cmd(verb, ctr, str(source), "/"), log, what)
            self._out(self._cmd("commit", "-q", ctr, name), log, what)
        finally:
            subprocess.run(self._cmd("rm", ctr), capture_output=True, env=_env())

    def build(
        self,
        containerfile: Path,
        context: Path,
        args: Mapping[str, str],
        tag: str,
        log: Path,
        *,
        rebuild: bool = False,
    ) -> Path:
        argv = self._cmd("bud", "--pull=never", "--isolation", "chroot")
        if rebuild:
            argv.append("--no-cache")
        for k, v in args.items():
            argv += ["--build-arg", f"{k}={v}"]
        argv += ["-t", tag, "-f", str(containerfile), str(context)]
        self._out(argv, log, f"building {tag}")
        ctr = self._out(self._cmd("from", "--pull=never", f"localhost/{tag}"), log, "mount")
        self._mounted[tag] = ctr
        return Path(self._out(self._cmd("mount", ctr), log, f"mounting {tag}"))

    def release(self, tag: str) -> None:
        ctr = self._mounted.pop(tag, None)
        if ctr is not None:
            subprocess.run(self._cmd("umount", ctr), capture_output=True, env=_env())
            subprocess.run(self._cmd("rm", ctr), capture_output=True, env=_env())


BUILTIN_BUILDERS: dict[str, type[Builder]] = {"ch-image": ChImage, "buildah": Buildah}


def builder_classes() -> dict[str, type[Builder]]:
    """Every builder by name: the built-in ones, then plug-ins (``jupyter_stax.builders``)."""
    return plugins.classes(BUILDERS_GROUP, Builder, BUILTIN_BUILDERS, "builder")


def get_builder(name: str | None = None, storage: Path | None = None) -> Builder:
    """The builder ``name`` (default: the first one that can run here); BuilderMissing saying
    what to install."""
    if name is None or name in BUILTIN_BUILDERS:
        # a built-in that runs here needs no look at the plug-ins (that reads every installed
        # package's entry points: a cached build spends its time on such start-up costs)
        for builtin in [BUILTIN_BUILDERS[name]] if name else BUILTIN_BUILDERS.values():
            b = builtin(storage)
            if b.problem() is None:
                return b
    classes = builder_classes()
    if name is not None:
        cls = classes.get(name)
        if cls is None:
            raise BuilderMissing(f"unknown builder {name!r}; known: {', '.join(sorted(classes))}")
        b = cls(storage)
        why = b.problem()
        if why:
            raise BuilderMissing(why)
        return b
    problems = []
    for cls in classes.values():
        b = cls(storage)
        why = b.problem()
        if why is None:
            return b
        problems.append(why)
    raise BuilderMissing("no image builder can run here: " + "; ".join(problems))
