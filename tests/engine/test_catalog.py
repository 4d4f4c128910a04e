"""Catalog sources (catalog file, OCI layout, Charliecloud directories, SIF, registry), plug-ins
loaded from entry points, and the store's schema migration for image provenance."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_stax.core.models import Cluster
from jupyter_stax.engine import plugins
from jupyter_stax.engine.catalog import Catalog
from jupyter_stax.engine.image_sources import (
    SourceUnavailable,
    parse_sif_inspect,
    parse_skopeo_inspect,
)
from jupyter_stax.engine.store import SCHEMA_VERSION, Store

from ..images import LABELS, charliecloud_image, oci_layout

# Output in the shape `apptainer inspect --json --labels` prints (apptainer 1.x) and
# `skopeo inspect docker://...` prints; neither tool is installable on the test machines.
APPTAINER_INSPECT = json.dumps(
    {
        "data": {
            "attributes": {
                "labels": {
                    "org.hpe.staxs.cpu": "x86_64",
                    "org.hpe.staxs.gpu": "cuda",
                    "org.hpe.staxs.mpi": "mpich",
                    "org.hpe.staxs.kabi": "2.28",
                    "org.label-schema.build-arch": "amd64",
                    "org.label-schema.schema-version": "1.0",
                }
            }
        },
        "type": "container",
    }
)
SKOPEO_INSPECT = json.dumps(
    {
        "Name": "ghcr.io/example/gromacs",
        "Digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "RepoTags": ["2024-x86-cuda"],
        "Created": "2024-05-01T10:00:00Z",
        "DockerVersion": "",
        "Labels": {"org.hpe.staxs.cpu": "x86_64", "org.hpe.staxs.gpu": "cuda"},
        "Architecture": "amd64",
        "Os": "linux",
        "Layers": [],
        "Env": ["PATH=/usr/bin"],
    }
)


@pytest.fixture(autouse=True)
def fresh_plugins() -> Iterator[None]:
    plugins.reset()
    yield
    plugins.reset()


def test_catalog_file_oci_layout_and_charliecloud_directory(tmp_path: Path) -> None:
    img = charliecloud_image(tmp_path / "ch" / "busy")
    layout, digest = oci_layout(tmp_path / "oci" / "busy", tag="1.0")
    (tmp_path / "images.yaml").write_text(
        "stax:\n"
        "  busy:\n"
        "    variants:\n"
        "      - image: ch/busy\n"  # relative to the catalog file; labels from the image
        "      - name: busy-gpu\n"
        "        image: oci:oci/busy:1.0\n"
        "        labels: {gpu: cuda}\n"  # given labels win over the image's
    )
    cat = Catalog.load([str(tmp_path / "images.yaml"), f"oci:{layout}", f"ch:{tmp_path / 'ch'}"])
    assert cat.problems == []
    by = {i.name: i for i in cat.images}
    assert set(by) == {"busy-x86_64", "busy-gpu", "busy:1.0", "busy"}
    assert (
        by["busy-x86_64"].reference == str(img) and by["busy-x86_64"].labels.as_labels() == LABELS
    )
    assert by["busy-gpu"].labels.gpu == "cuda" and by["busy-gpu"].digest == digest
    assert by["busy:1.0"].reference == f"oci:{layout}:1.0" and by["busy:1.0"].digest == digest
    assert by["busy"].labels.other == {"org.example.built-by": "jupyter_stax tests"}
    assert [(s.kind, s.images) for s in cat.sources] == [
        ("catalog", 2),
        ("oci", 1),
        ("charliecloud", 1),
    ]
    # fit per cluster, with the reason of every rule
    listing = cat.listing(Cluster(name="arm", traits={"cpu": "aarch64"}))
    fits = {
        i.name: (i.fits, [r.message for r in i.rules if r.outcome == "fail"])
        for i in listing.images
    }
    assert fits["busy"] == (False, ["cpu x86_64 != aarch64"])
    assert fits["busy-gpu"] == (
        False,
        ["cpu x86_64 != aarch64", "gpu cuda not offered (cluster offers: none)"],
    )


def test_unreadable_sources_are_reported_once_and_do_not_break_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no apptainer, no skopeo
    charliecloud_image(tmp_path / "busy")
    (tmp_path / "a.sif").write_bytes(b"SIF")
    cat = Catalog.load(
        [
            f"sif:{tmp_path / 'a.sif'}",
            "docker://ghcr.io/example/gromacs:2024",
            str(tmp_path / "missing.yaml"),
            "ftp://nowhere",
            str(tmp_path / "busy"),
        ]
    )
    assert [i.name for i in cat.images] == ["busy"]
    assert cat.problems == [
        f"SIF images in 'sif:{tmp_path / 'a.sif'}' are not listed: neither apptainer nor "
        "singularity is installed here (they read SIF labels)",
        "registry image 'docker://ghcr.io/example/gromacs:2024' is not listed: skopeo is not "
        "installed here (it reads registry labels)",
        f"catalog file '{tmp_path / 'missing.yaml'}' does not exist",
        "no image source reads 'ftp://nowhere': use a catalog file (.yaml), oci:DIR, ch:DIR, "
        "sif:PATH or docker://REF",
    ]


def test_bad_catalog_files_say_what_is_wrong(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    for text, needle in [
        ("stax: [1]\n", "must have the form 'stax: {FAMILY: {variants: [...]}}'"),
        ("stax:\n  a:\n    variants:\n      - {labels: {}}\n", "variant 1 needs 'image: REF"),
        ("stax:\n  a:\n    variant: []\n", "unknown key(s) variant"),
        ("stax: {a: {variants: [{image: x, colour: red}]}}\n", "unknown key(s) colour"),
        ("stax: [\n", "is not valid YAML at line"),
    ]:
        f.write_text(text)
        cat = Catalog.load([str(f)])
        assert cat.images == [] and len(cat.problems) == 1 and needle in cat.problems[0], text


def test_parse_recorded_apptainer_and_skopeo_output() -> None:
    labels = parse_sif_inspect(APPTAINER_INSPECT)
    assert (
        labels["org.hpe.staxs.gpu"] == "cuda" and labels["org.label-schema.schema-version"] == "1.0"
    )
    ref = "docker://ghcr.io/example/gromacs:2024-x86-cuda"
    img = parse_skopeo_inspect(SKOPEO_INSPECT, ref, ref)
    assert (img.family, img.reference, img.labels.cpu, img.labels.gpu) == (
        "gromacs",
        ref,
        "x86_64",
        "cuda",
    )
    assert img.digest and img.digest.startswith("sha256:5b0bcabd")


def test_sif_source_runs_apptainer_inspect_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line the SIF source runs, through a stand-in ``apptainer`` on PATH that
    prints recorded output (the real one is not installable here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "out.json").write_text(APPTAINER_INSPECT)
    tool = bin_dir / "apptainer"
    tool.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat {tmp_path}/out.json\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    (tmp_path / "gmx.sif").write_bytes(b"SIF")
    cat = Catalog.load([f"sif:{tmp_path}"])
    assert cat.problems == [] and [i.name for i in cat.images] == ["gmx"]
    assert (tmp_path / "args").read_text().split() == [
        "inspect",
        "--json",
        "--labels",
        str(tmp_path / "gmx.sif"),
    ]
    assert cat.images[0].labels.mpi == "mpich"


def _fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str) -> None:
    d = tmp_path / "site" / "stax_fake_plugin-1.0.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: stax-fake-plugin\nVersion: 1.0\n")
    (d / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def test_broken_plugins_are_reported_once_and_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_distribution(
        tmp_path,
        monkeypatch,
        "[jupyter_stax.container_runtimes]\nbroken = stax_no_such_module:Runtime\n"
        "[jupyter_stax.image_sources]\nalso-broken = stax_no_such_module:Source\n",
    )
    with caplog.at_level(logging.WARNING, logger="jupyter_stax.plugins"):
        for _ in range(3):
            assert "apptainer" in plugins.runtimes() and "broken" not in plugins.runtimes()
            cat = Catalog.load([])
    probs = [p for p in cat.problems if "broken" in p]
    assert probs == [
        "plug-in 'broken' (stax_no_such_module:Runtime) of jupyter_stax.container_runtimes "
        "cannot be loaded and is left out: ModuleNotFoundError: No module named "
        "'stax_no_such_module'",
        "plug-in 'also-broken' (stax_no_such_module:Source) of jupyter_stax.image_sources cannot "
        "be loaded and is left out: ModuleNotFoundError: No module named 'stax_no_such_module'",
    ]
    assert sum("cannot be loaded" in r.getMessage() for r in caplog.records) == 2  # once each


def test_a_plugin_runtime_from_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = tmp_path / "site" / "stax_enroot_plugin.py"
    mod.parent.mkdir(parents=True)
    mod.write_text(
        "from jupyter_stax.core.containers import ContainerRuntime\n"
        "class Enroot(ContainerRuntime):\n"
        "    def __init__(self):\n"
        "        super().__init__('enroot', 'enroot')\n"
        "    def argv(self, run):\n"
        "        return ['enroot', 'start', run.image]\n"
    )
    _fake_distribution(
        tmp_path,
        monkeypatch,
        "[jupyter_stax.container_runtimes]\nenroot = stax_enroot_plugin:Enroot\n",
    )
    rt = plugins.runtime("enroot")
    assert rt is not None and plugins.problems() == []
    from jupyter_stax.core.containers import ContainerRun

    assert (
        rt.render(ContainerRun(image="img.sqsh", command=["true"])) == "enroot start img.sqsh true"
    )
    sys.modules.pop("stax_enroot_plugin", None)


def test_store_of_schema_1_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE steps (execution_id TEXT NOT NULL, name TEXT NOT NULL, pos INTEGER NOT NULL,"
        " state TEXT NOT NULL, attempt INTEGER NOT NULL, cluster TEXT NOT NULL, native_id TEXT,"
        " job_name TEXT, exit_code INTEGER, reason TEXT, submitted REAL, started REAL,"
        " finished REAL, directory TEXT NOT NULL, image TEXT, history TEXT NOT NULL DEFAULT '[]',"
        " PRIMARY KEY (execution_id, name));"
    )
    db.close()
    Store(path).close()
    db = sqlite3.connect(path)
    cols = [r[1] for r in db.execute("PRAGMA table_info(steps)")]
    assert "resolved_image" in cols
    assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    db.close()
    Store(path).close()  # opening again is a no-op


def test_unavailable_sif_source_class_raises_source_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_stax.engine.image_sources import SifFiles

    monkeypatch.setenv("PATH", str(tmp_path))
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("apptainer is installed here")
    with pytest.raises(SourceUnavailable, match="neither apptainer nor singularity"):
        SifFiles("x.sif").images()


def test_readme_catalog_example_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if b.startswith("stax:")]
    (tmp_path / "images.yaml").write_text(block)
    monkeypatch.setenv("PATH", str(tmp_path))  # no apptainer: SIF labels come from the file
    cat = Catalog.load([str(tmp_path / "images.yaml")])
    # the second variant's image does not exist here: reported, the first one still listed
    assert [i.name for i in cat.images] == ["gromacs-x86-cuda"]
    assert len(cat.problems) == 1 and "does not exist" in cat.problems[0]
