"""The wheel ships the PSI/J descriptor: installed from the wheel alone, PSI/J finds 'sge'."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_wheel_registers_the_executor_with_psij(tmp_path: Path) -> None:
    if not (ROOT / "jupyter_stax" / "labextension" / "static" / "style.js").exists():
        pytest.skip("the labextension is not built (pip install -e . builds it)")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    build = [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("*.whl")
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert (target / "psij-descriptors" / "jupyter_stax_descriptors.py").is_file()
    assert not (target / "psij-descriptors" / "__init__.py").exists()  # a namespace directory
    code = (
        "import psij\n"
        "for name in ('sge', 'gridengine'):\n"
        "    e = psij.JobExecutor._executors[name][-1]\n"
        "    print(name, e.exc, e.plugin_path)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    executor_py = target / "jupyter_stax" / "psij_sge" / "executor.py"
    assert out.stdout.splitlines() == [f"sge None {executor_py}", f"gridengine None {executor_py}"]


def test_register_without_the_descriptor(tmp_path: Path) -> None:
    """Where jupyter_stax sits on sys.path without psij-descriptors/, register() adds 'sge'."""
    import shutil

    shutil.copytree(
        ROOT / "jupyter_stax",
        tmp_path / "jupyter_stax",
        ignore=shutil.ignore_patterns("labextension", "__pycache__"),
    )
    code = (
        "import os, sys\n"
        "sys.path = [p for p in sys.path if not os.path.exists(\n"
        "    os.path.join(p or '.', 'psij-descriptors', 'jupyter_stax_descriptors.py'))]\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import psij\n"
        "assert 'sge' not in psij.JobExecutor.get_executor_names()\n"
        "import jupyter_stax.psij_sge as m\n"
        "m.register()\n"
        "m.register()  # twice is harmless\n"
        "ex = psij.JobExecutor.get_instance('gridengine')\n"
        "print(ex.name, psij.JobExecutor._executors['sge'][-1].plugin_path)\n"
        "ex._queue_poll_thread.done = True\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    executor_py = tmp_path / "jupyter_stax" / "psij_sge" / "executor.py"
    assert out.stdout.split() == ["gridengine", str(executor_py)]


def test_two_copies_on_sys_path_first_wins_quietly(tmp_path: Path) -> None:
    """A checkout on PYTHONPATH besides another copy: the first registers, PSI/J logs nothing."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "psij-descriptors", copy / "psij-descriptors")
    shutil.copytree(
        ROOT / "jupyter_stax",
        copy / "jupyter_stax",
        ignore=shutil.ignore_patterns("labextension", "__pycache__"),
    )
    code = "import psij; print(psij.JobExecutor._executors['sge'][-1].plugin_path)"
    for first in (ROOT, copy):
        second = copy if first == ROOT else ROOT
        env = {**os.environ, "PYTHONPATH": f"{first}{os.pathsep}{second}"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""
        assert out.stdout.strip() == str(first / "jupyter_stax" / "psij_sge" / "executor.py")
