"""Building StaX variants (issue 18): jupyter_stax's build of one variant against a direct
``ch-image build`` of the same Containerfile and build args, interleaved in ONE invocation; then
the second ``jupyter stax build`` of an unchanged 4-variant matrix (every variant cached).

Targets (issue 18): per variant, jupyter_stax / direct ch-image <= 1.1; the cached second build
of 4 variants < 2 s (the whole ``jupyter stax build`` command, Python start included).

Both builds run the RUN lines for real (``--rebuild`` on the direct one, ``force`` on ours), and
both run ch-image the same way (Debian's ch-image with ``/usr/bin/python3``, the environment
jupyter_stax gives a builder): what differs is jupyter_stax's work around the builder (planning,
the base check, copying the image to the output, measuring os and glibc, writing labels, the
content digest, the build record). The base is a busybox-static root file system made here (no
network).

The cached second build is the whole command in a new process, as a user runs it: with Python's
bytecode cache (what an installed package has; in a temporary ``PYTHONPYCACHEPREFIX``, filled by
the first build) and, when this shell sets ``PYTHONDONTWRITEBYTECODE``, also without it. Its CPU
time (user + system) is printed beside the wall time: on a loaded machine the wall time is mostly
waiting for a core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, cpu_children, fmt, machine, parser, summary, verdict, write_json

CONTAINERFILE = """\
FROM base
ARG mpi=none
ARG gpu=none
RUN echo "mpi=$mpi gpu=$gpu" > /etc/stax-variant
RUN mkdir -p /opt/app && for i in 1 2 3 4 5 6 7 8; do echo "$mpi $gpu $i" > /opt/app/f$i; done
"""
APPLETS = ("sh", "cat", "echo", "ls", "mkdir", "true", "false", "test", "[")


def make_base(d: Path) -> None:
    for sub in ("bin", "etc", "tmp", "dev", "proc", "sys", "home", "root", "usr/bin"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", d / "bin" / "busybox")
    for a in APPLETS:
        (d / "bin" / a).symlink_to("busybox")
    for f in ("passwd", "group", "hosts", "resolv.conf"):
        (d / "etc" / f).touch()
    (d / "etc" / "os-release").write_text('NAME="BusyBox"\nVERSION_ID=1\n')


def main() -> int:
    p = parser(__doc__ or "", n=4, repeat=3)
    a = p.parse_args()
    if not shutil.which("ch-image") or not Path("/bin/busybox").exists():
        print("needs ch-image (charliecloud-builders) and busybox-static", file=sys.stderr)
        return 2
    from jupyter_stax.engine.builds.builders import _env, distribution_tool
    from jupyter_stax.engine.builds.run import plan_build, run_plan

    tmp = Path(tempfile.mkdtemp(prefix="stax-bench-build-", dir=a.tmpdir))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("USER", "root")
    os.environ.setdefault("USER", env["USER"])
    storage = tmp / "ch-storage"
    env["CH_IMAGE_STORAGE"] = str(storage)
    os.environ["CH_IMAGE_STORAGE"] = str(storage)
    make_base(tmp / "base")
    (tmp / "Containerfile").write_text(CONTAINERFILE)
    (tmp / "stax.yaml").write_text(
        "stax: bench\nbase: ch:base\nmatrix: {mpi: [none, mpich], gpu: [none, cuda]}\n"
        "output: images\n"
    )
    try:
        # warm-up: the base imported, the first variant built once (both paths share the base)
        run_plan(plan_build(tmp / "stax.yaml", variants=["mpi=none", "gpu=none"]))
        direct_cf = tmp / "images" / ".stax-build" / "Containerfile"  # FROM the imported base
        ours: list[float] = []
        direct: list[float] = []
        per: list[float] = []
        around: list[float] = []
        combos = [("none", "none"), ("mpich", "none"), ("none", "cuda"), ("mpich", "cuda")]
        for rep in range(a.repeat):
            for mpi, gpu in combos[: a.n]:
                t0 = time.monotonic()
                subprocess.run(
                    [
                        *distribution_tool("ch-image"), "-s", str(storage), "build", "--rebuild",
                        "--build-arg", f"mpi={mpi}", "--build-arg", f"gpu={gpu}",
                        "-t", f"direct-{mpi}-{gpu}", "-f", str(direct_cf), str(tmp),
                    ],
                    check=True, capture_output=True, env=_env(),
                )  # fmt: skip
                d = time.monotonic() - t0
                t0 = time.monotonic()
                rep_ = run_plan(
                    plan_build(tmp / "stax.yaml", force=True, variants=[f"mpi={mpi}", f"gpu={gpu}"])
                )
                o = time.monotonic() - t0
                assert rep_.results[0].status == "built", rep_.results[0].message
                direct.append(d)
                ours.append(o)
                per.append(o / d)
                b = rep_.results[0].builder_seconds or 0.0
                around.append(o - b)  # ours minus the builder's own run: what we add
                print(f"  repeat {rep + 1} {mpi}-{gpu}: direct {d:.2f} s, jupyter_stax {o:.2f} s")
        ratio = summary(per)
        print(f"per variant, jupyter_stax / direct ch-image: {fmt(ratio)}; "
              f"{verdict(ratio['median'], 1.1)}")  # fmt: skip
        print(f"  direct ch-image build: {fmt(summary(direct), ' s')}")
        print(f"  jupyter_stax build:    {fmt(summary(ours), ' s')}")
        print(f"  jupyter_stax's own work around the builder: {fmt(summary(around), ' s', 3)}")

        # the second build of an unchanged 4-variant matrix: the whole command
        # this Python's own `jupyter` (a venv's, an install's), not a version manager's shim
        # that re-execs it (pyenv's costs a bash and a `pyenv exec` per command)
        own = Path(sys.executable).parent / "jupyter"
        jupyter = str(own) if own.exists() else shutil.which("jupyter") or "jupyter"
        print(f"  the command: {jupyter} stax --no-server build ... (4 variants, all cached)")
        cat = tmp / "catalog.yaml"
        cmd = [
            jupyter,
            "stax",
            "--no-server",
            "build",
            str(tmp / "stax.yaml"),
            "--catalog",
            str(cat),
        ]
        pyc = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        pyc["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        first = subprocess.run(cmd, capture_output=True, text=True, env=pyc)
        assert first.returncode == 0, first.stderr
        modes = {"with bytecode cache": pyc}
        if env.get("PYTHONDONTWRITEBYTECODE"):
            modes["PYTHONDONTWRITEBYTECODE=1 (as this shell)"] = env
        cached_by: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in modes}
        for _ in range(a.repeat):
            for mode, e in modes.items():
                c0, t0 = cpu_children(), time.monotonic()
                again = subprocess.run(cmd, capture_output=True, text=True, env=e)
                cached_by[mode][0].append(time.monotonic() - t0)
                cached_by[mode][1].append(cpu_children() - c0)
                assert again.returncode == 0 and again.stdout.count(" cached ") == 4, again.stdout
        cached = cached_by["with bytecode cache"][0]
        # what the CLI costs anyway (Python start, imports): a command that builds nothing
        base_cmd = [jupyter, "stax", "--no-server", "clusters"]
        start: list[float] = []
        inproc: list[float] = []
        for _ in range(a.repeat):
            t0 = time.monotonic()
            subprocess.run(base_cmd, capture_output=True, env=pyc, check=True)
            start.append(time.monotonic() - t0)
            t0 = time.monotonic()
            r4 = run_plan(plan_build(tmp / "stax.yaml"))
            inproc.append(time.monotonic() - t0)
            assert [r.status for r in r4.results] == ["cached"] * 4
        print(f"  in-process plan + cache check of the 4 variants: {fmt(summary(inproc), ' s', 3)}")
        print(f"  `jupyter stax clusters` (CLI start, no build): {fmt(summary(start), ' s')}")
        for mode, (wall, cpu) in cached_by.items():
            print(f"  cached 4 variants, {mode}: wall {fmt(summary(wall), ' s')}, "
                  f"CPU {fmt(summary(cpu), ' s')}")  # fmt: skip
        c = summary(cached)
        print(f"second build of 4 unchanged variants (jupyter stax build, with bytecode cache): "
              f"{fmt(c, ' s')}; "
              f"{'target < 2 s: met' if c['median'] < 2 else 'target < 2 s: MISSED'}")  # fmt: skip
        data: dict[str, Any] = {
            "machine": machine(),
            "ratio_per_variant": ratio,
            "direct_s": direct,
            "ours_s": ours,
            "around_builder_s": around,
            "cached_4_variants_s": cached,
            "cached_4_variants_by_mode": {
                m: {"wall_s": w, "cpu_s": c} for m, (w, c) in cached_by.items()
            },
            "cached_4_variants_in_process_s": inproc,
            "cli_start_s": start,
        }
        write_json(a.json, data)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
