"""The clusters a user can run on: ``local`` always, plus a clusters file and settings.

The clusters file is ``$JUPYTER_STAX_CLUSTERS`` if set, else ``stax/clusters.yaml`` in the
Jupyter config directory (``jupyter --config-dir``, usually ``~/.jupyter``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .documents import load_clusters_document, to_model
from .errors import InvalidClusterConfig, UnknownCluster
from .models import KNOWN_SCHEDULERS, Cluster

LOCAL = "local"
ENV_CLUSTERS = "JUPYTER_STAX_CLUSTERS"
ENV_WORK_DIR = "JUPYTER_STAX_WORK_DIR"
#: the work directory of a remote cluster without one (in the remote account's home)
REMOTE_WORK_DIR = "~/stax-runs"


def _local(c: Cluster) -> Cluster:
    """The ``local`` cluster with the traits and container runtime this machine has filled in
    where the configuration leaves them unset."""
    from .images import detect_local_runtime, detect_local_traits

    update: dict[str, Any] = {"traits": c.traits.merged(detect_local_traits())}
    if c.container_runtime is None:
        update["container_runtime"] = detect_local_runtime()
    return c.model_copy(update=update)


def default_clusters_file() -> Path:
    if os.environ.get(ENV_CLUSTERS):
        return Path(os.environ[ENV_CLUSTERS]).expanduser()
    from jupyter_core.paths import jupyter_config_dir

    return Path(jupyter_config_dir()) / "stax" / "clusters.yaml"


def default_work_dir() -> Path:
    return Path(os.environ.get(ENV_WORK_DIR) or "~/stax-runs").expanduser()


class ClusterRegistry:
    """Named clusters; ``local`` (PSI/J's local executor) is always present."""

    def __init__(
        self,
        clusters: Iterable[Cluster] = (),
        *,
        source: str | None = None,
        work_dir: str | Path | None = None,
    ) -> None:
        self.source = source
        self.default_work_dir = Path(work_dir).expanduser() if work_dir else None
        self._clusters: dict[str, Cluster] = {LOCAL: _local(Cluster(name=LOCAL, scheduler="local"))}
        for c in clusters:
            if c.name == LOCAL and c.scheduler != "local":
                raise InvalidClusterConfig(
                    f"cluster 'local' is the machine itself and must use scheduler 'local', "
                    f"not {c.scheduler!r}; give your {c.scheduler} cluster another name"
                )
            if c.name == LOCAL:
                c = _local(c)
            if c.scheduler not in KNOWN_SCHEDULERS:
                raise InvalidClusterConfig(
                    f"cluster {c.name!r}: unknown scheduler {c.scheduler!r}; "
                    f"use one of {', '.join(KNOWN_SCHEDULERS)}"
                )
            self._clusters[c.name] = c

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        work_dir: str | Path | None = None,
    ) -> ClusterRegistry:
        """Clusters from the clusters file (missing file = only ``local``) plus ``extra``
        (``{name: settings}``, e.g. from traitlets), which win over the file. ``work_dir``: where
        executions of clusters without their own ``work_dir`` go (default: see
        :func:`default_work_dir`)."""
        file = Path(path).expanduser() if path else default_clusters_file()
        clusters: dict[str, Cluster] = {}
        if file.exists():
            try:
                text = file.read_text()
            except OSError as e:
                raise InvalidClusterConfig(
                    f"cannot read clusters file {str(file)!r}: {e}"
                ) from None
            for c in load_clusters_document(text, source=f"clusters file {str(file)!r}"):
                clusters[c.name] = c
        elif path:
            raise InvalidClusterConfig(f"clusters file {str(file)!r} does not exist")
        for name, body in (extra or {}).items():
            data = {"name": name, **dict(body)}
            clusters[name] = to_model(
                Cluster, data, source=f"cluster setting {name!r}", error=InvalidClusterConfig
            )
        return cls(clusters.values(), source=str(file), work_dir=work_dir)

    def get(self, name: str) -> Cluster:
        try:
            return self._clusters[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, list(self._clusters), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f" in {self.source}" if self.source else ""
            raise UnknownCluster(
                f"unknown cluster {name!r}{hint}; known clusters: {', '.join(self._clusters)}. "
                f"Define it{where} (see README: Configuring clusters)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._clusters

    def __iter__(self) -> Any:
        return iter(self._clusters.values())

    def names(self) -> list[str]:
        return list(self._clusters)

    def work_dir(self, cluster: Cluster) -> Path:
        """Where the cluster's execution directories go. A remote cluster's is a path ON THE
        CLUSTER, returned as written (``~`` is its home there: the engine resolves it over SSH,
        see :func:`jupyter_stax.engine.planning.cluster_work_dir`)."""
        if cluster.remote:
            return Path(cluster.work_dir or REMOTE_WORK_DIR)
        if cluster.work_dir:
            return Path(cluster.work_dir).expanduser()
        return self.default_work_dir or default_work_dir()
