"""``jupyter stax doctor``: look at the environment jupyter_stax runs in and say what to fix.

Each check gives one :class:`Finding`: ``ok``, ``warn`` (works, but something a user may trip
on) or ``fail`` (something will not work), with the fix. Checks: the Python packages (PSI/J and
typeguard), the store (writable, readable), the clusters file, each cluster's scheduler commands
(and for Slurm ``SLURM_CONF`` and a live ``scontrol ping``; for Grid Engine ``SGE_ROOT``,
``SGE_CELL`` and a live ``qstat -f``; a remote cluster's over SSH, :mod:`.doctor_remote`),
container runtimes, the StaX catalog
sources, the Jupyter server and lab extensions, a running Jupyter server on the same store.
Nothing here changes anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Level = Literal["ok", "warn", "fail"]

#: commands PSI/J's executors run, per scheduler
SCHEDULER_COMMANDS: dict[str, tuple[str, ...]] = {
    "slurm": ("sbatch", "squeue", "scancel", "scontrol"),
    "sge": ("qsub", "qstat", "qdel", "qacct", "qalter"),
    "pbs": ("qsub", "qstat", "qdel"),
    "pbs_classic": ("qsub", "qstat", "qdel"),
    "lsf": ("bsub", "bjobs", "bkill"),
    "cobalt": ("qsub", "qstat", "qdel"),
    "flux": ("flux",),
    "local": (),
}
RUNTIME_COMMANDS = {
    "apptainer": "apptainer",
    "singularity": "singularity",
    "charliecloud": "ch-run",
    "podman": "podman",
    "podman-hpc": "podman-hpc",
    "sarus": "sarus",
    "shifter": "shifter",
}


@dataclass
class Finding:
    level: Level
    what: str
    detail: str
    fix: str = ""


def _run(argv: list[str], timeout: float = 10) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return p.returncode, (p.stdout + p.stderr).strip()


def check_packages() -> Iterator[Finding]:
    from importlib.metadata import PackageNotFoundError, version

    from ._version import __version__

    yield Finding("ok", "jupyter_stax", __version__)
    try:
        psij = version("psij-python")
        yield Finding("ok", "psij-python", psij)
    except PackageNotFoundError:
        yield Finding("fail", "psij-python", "not installed", "pip install psij-python")
    try:
        tg = version("typeguard")
        major = int(tg.split(".")[0])
        if major < 4:
            yield Finding(
                "fail",
                "typeguard",
                f"{tg}: PSI/J's submit() breaks with typeguard 3.x",
                "pip install 'typeguard>=4'",
            )
        else:
            yield Finding("ok", "typeguard", tg)
    except (PackageNotFoundError, ValueError):
        yield Finding("warn", "typeguard", "version unknown", "pip install 'typeguard>=4'")


def check_store(store_path: Path) -> Iterator[Finding]:
    where = store_path.parent
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        yield Finding(
            "fail",
            "store",
            f"{store_path}: {probe} is not a directory",
            "set JUPYTER_STAX_STORE to a path in a writable directory",
        )
        return
    if not os.access(probe, os.W_OK):
        yield Finding(
            "fail",
            "store",
            f"{store_path}: {probe} is not writable",
            "set JUPYTER_STAX_STORE to a writable path (or c.StaxApp.store_path)",
        )
        return
    if not store_path.exists():
        yield Finding("ok", "store", f"{store_path} (created on first use)")
        return
    try:
        from .engine.store import Store

        store = Store(store_path)
        try:
            n = len(store.list_executions(limit=10**6))
        finally:
            store.close()
    except Exception as e:
        yield Finding(
            "fail",
            "store",
            f"{store_path}: {e}",
            "move the file aside (executions in it are lost to jupyter_stax) or fix its "
            "permissions",
        )
        return
    yield Finding("ok", "store", f"{store_path} ({n} executions)")


def check_clusters(clusters_file: Path | None) -> tuple[list[Finding], list[object]]:
    from .core.clusters import ClusterRegistry, default_clusters_file
    from .core.errors import StaxError

    path = clusters_file or default_clusters_file()
    try:
        reg = ClusterRegistry.load(clusters_file)
    except StaxError as e:
        detail = "; ".join([e.message, *e.details])
        return [Finding("fail", "clusters file", f"{path}: {detail}", "fix the file")], []
    shown = str(path) if path.exists() else f"{path} (absent: only 'local')"
    clusters = list(reg)
    names = ", ".join(c.name for c in clusters)
    return [Finding("ok", "clusters file", f"{shown}; clusters: {names}")], clusters


def check_cluster(c: object) -> Iterator[Finding]:
    if getattr(c, "remote", False):  # its commands and files are on the cluster: over SSH
        from .doctor_remote import check_remote_cluster

        for f in check_remote_cluster(c, SCHEDULER_COMMANDS, RUNTIME_COMMANDS):  # type: ignore[arg-type]
            yield Finding(f.level, f.what, f.detail, f.fix)
        return
    name = getattr(c, "name", "?")
    scheduler = str(getattr(c, "scheduler", "local"))
    what = f"cluster {name} ({scheduler})"
    needed = SCHEDULER_COMMANDS.get(scheduler, ())
    missing = [cmd for cmd in needed if shutil.which(cmd) is None]
    if missing:
        yield Finding(
            "fail",
            what,
            f"commands not found: {', '.join(missing)}",
            f"run jupyter_stax where the {scheduler} client commands are on PATH (a login "
            "node), or load their module",
        )
    elif scheduler == "slurm":
        yield from _slurm(what)
    elif scheduler == "sge":
        yield from _sge(what)
    else:
        detail = f"commands found: {', '.join(needed)}" if needed else "PSI/J's local executor"
        yield Finding("ok", what, detail)
    runtime = getattr(c, "container_runtime", None)
    if runtime and runtime != "none":
        exe = RUNTIME_COMMANDS.get(str(runtime))
        if exe is None:
            yield Finding(
                "warn",
                f"{what} runtime",
                f"{runtime}: not a built-in runtime (a plug-in must provide it)",
            )
        elif shutil.which(exe) is None:
            yield Finding(
                "warn" if scheduler != "local" else "fail",
                f"{what} runtime",
                f"{runtime}: {exe} not found here"
                + (" (fine if the compute nodes have it)" if scheduler != "local" else ""),
                f"install {runtime} or set container_runtime in the clusters file",
            )
        else:
            yield Finding("ok", f"{what} runtime", f"{runtime} ({shutil.which(exe)})")


def _slurm(what: str) -> Iterator[Finding]:
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():
        yield Finding(
            "fail", what, f"SLURM_CONF={conf} does not exist", "export SLURM_CONF=<slurm.conf>"
        )
        return
    rc, out = _run(["scontrol", "ping"])
    if rc != 0 or "UP" not in out:
        hint = "" if conf else " (SLURM_CONF is not set)"
        yield Finding(
            "fail",
            what,
            f"slurmctld does not answer{hint}: {' '.join(out.split())[:300]}",
            "export SLURM_CONF=<path of slurm.conf> (one-machine test Slurm: "
            'eval "$(scripts/slurm/start-slurm.sh)"), or check that slurmctld runs',
        )
        return
    yield Finding("ok", what, " ".join(out.split())[:200])


def _sge(what: str) -> Iterator[Finding]:
    root, cell = os.environ.get("SGE_ROOT"), os.environ.get("SGE_CELL") or "default"
    settings = "source $SGE_ROOT/$SGE_CELL/common/settings.sh (one-machine test Grid Engine: "
    settings += 'eval "$(scripts/sge/start-sge.sh)")'
    if not root:
        yield Finding(
            "warn",
            what,
            "SGE_ROOT is not set: only wrappers that default it (Debian's) find the cell",
            settings,
        )
    elif not (Path(root) / cell / "common" / "act_qmaster").is_file():
        yield Finding(
            "fail",
            what,
            f"SGE_ROOT={root} SGE_CELL={cell}: {root}/{cell}/common/act_qmaster does not exist",
            settings,
        )
        return
    rc, out = _run(["qstat", "-f"])
    if rc != 0:
        yield Finding(
            "fail",
            what,
            f"sge_qmaster does not answer `qstat -f`: {' '.join(out.split())[:300]}",
            "check that sge_qmaster runs on the host in $SGE_ROOT/$SGE_CELL/common/act_qmaster "
            f"and that SGE_ROOT/SGE_CELL are right; {settings}",
        )
        return
    instances = [ln.split()[0] for ln in out.splitlines() if "@" in ln.split(" ", 1)[0]]
    detail = f"qstat -f answers: {len(instances)} queue instance(s)"
    detail += f" ({', '.join(instances[:5])})" if instances else ""
    yield Finding("ok" if instances else "warn", what, detail)


def check_catalog(clusters_file: Path | None) -> Iterator[Finding]:
    from .service import LocalService

    try:
        listing = LocalService(clusters_file=clusters_file).images(None)
    except Exception as e:
        yield Finding("fail", "StaX catalog", str(e), "check JUPYTER_STAX_IMAGES / images.yaml")
        return
    if not listing.sources:
        yield Finding(
            "warn",
            "StaX catalog",
            "no catalog source configured: steps can name image references only",
            "write <config dir>/stax/images.yaml or set JUPYTER_STAX_IMAGES (README: StaX images)",
        )
    for src in listing.sources:
        if src.problem:
            yield Finding("warn", f"StaX source {src.spec}", src.problem, "fix or remove it")
        else:
            yield Finding("ok", f"StaX source {src.spec}", f"{src.kind}: {src.images} image(s)")
    for p in listing.problems:
        yield Finding("warn", "StaX catalog", p)


def check_extensions() -> Iterator[Finding]:
    from jupyter_core.paths import jupyter_config_path, jupyter_path

    enabled = None
    for d in jupyter_config_path():
        for f in sorted(Path(d, "jupyter_server_config.d").glob("*.json")):
            try:
                conf = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            value = conf.get("ServerApp", {}).get("jpserver_extensions", {}).get("jupyter_stax")
            if value is not None:
                enabled = (bool(value), f)
                break
        if enabled:
            break
    if enabled is None:
        yield Finding(
            "fail",
            "server extension",
            "jupyter_stax is not enabled in any jupyter_server_config.d",
            "jupyter server extension enable jupyter_stax (or reinstall jupyter-stax)",
        )
    elif not enabled[0]:
        yield Finding(
            "fail",
            "server extension",
            f"disabled by {enabled[1]}",
            "jupyter server extension enable jupyter_stax",
        )
    else:
        yield Finding("ok", "server extension", f"enabled ({enabled[1]})")
    built = Path(__file__).parent / "labextension" / "package.json"
    installed = [Path(d, "labextensions", "jupyter-stax") for d in jupyter_path()]
    found = [p for p in installed if (p / "package.json").exists()]
    if found or built.exists():
        yield Finding("ok", "lab extension", str(found[0] if found else built.parent))
    else:
        yield Finding(
            "warn",
            "lab extension",
            "the prebuilt JupyterLab extension is not installed (no StaX sidebar)",
            "pip install jupyter-stax from a wheel; from a checkout: jupyter labextension "
            "develop --overwrite .",
        )


def check_server(store_path: Path) -> Iterator[Finding]:
    from .client import find_server

    try:
        svc = find_server(store_path)
    except Exception as e:  # a broken runtime file must not break the doctor
        yield Finding("warn", "Jupyter server", f"looking for one failed: {e}")
        return
    if svc is None:
        yield Finding(
            "ok", "Jupyter server", "none serves this store: clients use the background engine"
        )
    else:
        yield Finding("ok", "Jupyter server", f"{svc.describe()} serves this store")


def diagnose(store_path: Path, clusters_file: Path | None) -> list[Finding]:
    findings: list[Finding] = []

    def add(check: Callable[[], Iterator[Finding]], what: str) -> None:
        try:
            findings.extend(check())
        except Exception as e:  # one broken check must not hide the others
            findings.append(Finding("fail", what, f"the check itself failed: {e!r}"))

    add(check_packages, "packages")
    add(lambda: check_store(store_path), "store")
    cluster_findings, clusters = check_clusters(clusters_file)
    findings += cluster_findings
    for c in clusters:
        add(lambda c=c: check_cluster(c), f"cluster {getattr(c, 'name', '?')}")  # type: ignore[misc]
    add(lambda: check_catalog(clusters_file), "StaX catalog")
    add(check_extensions, "extensions")
    add(lambda: check_server(store_path), "Jupyter server")
    return findings


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def report(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{_MARK[f.level]}  {f.what}: {f.detail}")
        if f.fix and f.level != "ok":
            lines.append(f"      fix: {f.fix}")
    fails = sum(f.level == "fail" for f in findings)
    warns = sum(f.level == "warn" for f in findings)
    lines.append(f"\n{fails} problem(s), {warns} warning(s)" if fails or warns else "\nall good")
    return "\n".join(lines)


def as_json(findings: list[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=2)
