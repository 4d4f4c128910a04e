"""What a build measures in an image and writes out, without a builder: os from os-release and
kabi from libc.so.6 with links followed as the image sees them (absolute links stay inside the
image), labels in a Charliecloud directory and an OCI layout that the catalog sources read back,
and OCI bases unpacked with whiteouts applied."""

from __future__ import annotations

import io
import json
import platform
import tarfile
from pathlib import Path

import pytest

from jupyter_stax.engine.builds import outputs
from jupyter_stax.engine.builds.bases import Base, dir_fingerprint, locate, unpack_oci
from jupyter_stax.engine.image_sources import CharliecloudDir, OciLayout

HOST_LIBC = next(iter(Path("/lib").glob("*-linux-gnu/libc.so.6")), None)


def rootfs(d: Path) -> Path:
    (d / "usr" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (d / "etc").mkdir()
    (d / "usr" / "lib" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (d / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    (d / "lib").symlink_to("usr/lib")  # merged /usr, as Debian 12
    if HOST_LIBC is not None:
        (d / "usr" / "lib" / "x86_64-linux-gnu" / "libc-real.so").write_bytes(
            HOST_LIBC.read_bytes()
        )
        # an absolute link: must resolve inside the image, not on this host
        (d / "usr" / "lib" / "x86_64-linux-gnu" / "libc.so.6").symlink_to(
            "/usr/lib/x86_64-linux-gnu/libc-real.so"
        )
    return d


def test_inspect_root_follows_links_inside_the_image(tmp_path: Path) -> None:
    if HOST_LIBC is None:
        pytest.skip("no glibc on this host to copy into the image")
    m = outputs.inspect_root(rootfs(tmp_path / "img"))
    assert m.os == "Debian GNU/Linux 12 (bookworm)"
    assert m.kabi == ".".join(platform.libc_ver()[1].split(".")[:2])
    bare = tmp_path / "bare"
    (bare / "etc").mkdir(parents=True)
    assert outputs.inspect_root(bare) == outputs.Measured(None, None)
    # a link that escapes with .. stays at the image's root
    (bare / "etc" / "os-release").symlink_to("../../../../etc/os-release")
    assert outputs.inside(bare, "etc/os-release") is None


def test_labels_written_are_read_back(tmp_path: Path) -> None:
    root = rootfs(tmp_path / "img")
    labels = {"org.hpe.staxs.cpu": "x86_64", "org.hpe.staxs.mpi": "mpich", "x.y": "z"}
    ref, digest = outputs.write_ch(root, tmp_path / "out" / "v1", labels, "x86_64")
    assert ref == str(tmp_path / "out" / "v1") and digest.startswith("sha256:")
    assert outputs.tree_digest(Path(ref)) == digest
    img = CharliecloudDir(ref).images()[0]
    assert (img.labels.cpu, img.labels.mpi, img.labels.other) == ("x86_64", "mpich", {"x.y": "z"})
    ref2, digest2 = outputs.write_oci(root, tmp_path / "out" / "v2", "v2", labels, "x86_64")
    img2 = OciLayout(ref2).images()[0]
    assert img2.digest == digest2 and img2.labels.mpi == "mpich"


def _layer(files: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_oci_base_unpacked_with_whiteouts(tmp_path: Path) -> None:
    import hashlib

    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}"

    l1 = blob(_layer({"etc": None, "etc/a": b"1", "etc/gone": b"x", "bin": None}))
    l2 = blob(_layer({"etc/.wh.gone": b"", "etc/b": b"2"}))
    man = blob(json.dumps({"layers": [{"digest": l1}, {"digest": l2}]}).encode())
    (layout / "oci-layout").write_text("{}")
    (layout / "index.json").write_text(
        json.dumps(
            {
                "manifests": [
                    {"digest": man, "annotations": {"org.opencontainers.image.ref.name": "t"}}
                ]
            }
        )
    )
    base = locate(f"oci:{layout}:t", tmp_path)
    assert base == Base(f"oci:{layout}:t", "oci", layout, man, "t")
    out = unpack_oci(base, tmp_path / "unpacked")
    assert sorted(p.name for p in (out / "etc").iterdir()) == ["a", "b"]
    assert (out / ".stax-unpacked").exists()
    # the fingerprint of a directory base changes when a file does
    fp = dir_fingerprint(out)
    (out / "etc" / "a").write_text("changed!")
    assert dir_fingerprint(out) != fp


def test_a_tarball_base_is_read_once_per_stat(tmp_path: Path) -> None:
    """A tarball base's sha256 is kept by the file's stat: the next plan does not read it
    again (the cache's answer is what comes back), a changed file is read again."""
    import os

    from jupyter_stax.engine.builds.files import file_digest

    tar = tmp_path / "base.tar"
    with tarfile.open(tar, "w") as t:
        t.add(rootfs(tmp_path / "root"), arcname=".")
    cache = tmp_path / "state" / "digests.json"
    first = locate(str(tar), tmp_path, cache)
    assert first.kind == "tar" and first.digest == file_digest(tar)
    (key,) = json.loads(cache.read_text())
    cache.write_text(json.dumps({key: "sha256:remembered"}))  # proves the file is not read
    assert locate(str(tar), tmp_path, cache).digest == "sha256:remembered"
    with tar.open("ab") as f:
        f.write(b"\0" * 512)
    st = tar.stat()
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = locate(str(tar), tmp_path, cache)
    assert again.digest == file_digest(tar) != first.digest
    assert list(json.loads(cache.read_text()).values()) == [again.digest]  # the old key is gone
    assert locate(str(tar), tmp_path).digest == again.digest  # no cache: read every time
