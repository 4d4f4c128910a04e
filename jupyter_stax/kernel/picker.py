"""The submit form of a notebook (``%stax picker``): choose the cluster (its queue, account and
walltime defaults and live numbers show), see the StaX images that fit it and why the others do
not, fill resources and parameters, submit; the live monitor appears below.

Values picked here are DEFAULTS: a step that sets its own image or resource keeps it. Standard
ipywidgets 8 only. Reading the cluster's live numbers and the image list happens on a worker
thread, so changing the cluster never blocks the kernel.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped, unused-ignore]

from ..core.api import LocalSummary, SlurmSummary
from ..core.assignments import AssignmentError, parse_value, split_assignment
from ..core.cluster_text import connection_line
from ..core.errors import StaxError
from ..service import StaxService
from .api import RESOURCE_KEYS, Execution, Workflow
from .display import ImageEntry, image_entries
from .monitor import one_line

__all__ = ["Picker"]

NO_IMAGE = "(as the steps say)"


class Picker(widgets.VBox):  # type: ignore[misc]
    """``Picker(workflow, service)``: a form that submits ``workflow``. ``submit()`` does what
    the button does and returns the Execution (the last one is ``execution``)."""

    def __init__(
        self,
        workflow: Workflow,
        service: StaxService,
        *,
        on_submit: Callable[[Execution], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow = workflow
        self.service = service
        self.on_submit = on_submit
        self.execution: Execution | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stax-picker")
        self._lock = threading.Lock()
        self._seq = 0
        self.entries: list[ImageEntry] = []

        clusters = service.clusters()
        self._clusters = {c.name: c for c in clusters}
        names = list(self._clusters)
        style = {"description_width": "110px"}
        self.cluster = widgets.Dropdown(
            options=names, value=names[0], description="Cluster", style=style
        )
        self.cluster_info = widgets.HTML()
        self.image = widgets.Dropdown(
            options=[NO_IMAGE], value=NO_IMAGE, description="StaX image", style=style
        )
        self.images_info = widgets.HTML()
        self.steps = widgets.SelectMultiple(
            options=[s.name for s in workflow.steps],
            description="Steps",
            rows=min(6, max(2, len(workflow))),
            style=style,
        )
        self.nodes = widgets.BoundedIntText(0, min=0, max=100000, description="Nodes", style=style)
        self.ntasks = widgets.BoundedIntText(0, min=0, max=10**7, description="Tasks", style=style)
        self.cpus_per_task = widgets.BoundedIntText(
            0, min=0, max=4096, description="CPUs per task", style=style
        )
        self.gpus = widgets.BoundedIntText(
            0, min=0, max=64, description="GPUs per task", style=style
        )
        self.memory = widgets.Text("", placeholder="e.g. 4G", description="Memory", style=style)
        self.time = widgets.Text("", placeholder="HH:MM:SS", description="Walltime", style=style)
        self.params = widgets.Textarea(
            "", placeholder="one NAME=VALUE per line", description="Parameters", style=style
        )
        self.submit_button = widgets.Button(
            description="Submit", icon="play", button_style="primary"
        )
        self.message = widgets.HTML()
        self.output = widgets.Output()
        self.submit_button.on_click(lambda _b: self._clicked())
        self.cluster.observe(lambda _c: self._reload(), names="value")
        self.children = [
            widgets.HTML(
                "<b>Submit the notebook's workflow</b> "
                "<span style='color:#868e96'>(values here are defaults: what a step "
                "sets itself wins)</span>"
            ),
            self.cluster,
            self.cluster_info,
            self.image,
            self.images_info,
            self.steps,
            widgets.HBox(
                [
                    widgets.VBox([self.nodes, self.ntasks, self.cpus_per_task]),
                    widgets.VBox([self.gpus, self.memory, self.time]),
                ]
            ),
            self.params,
            widgets.HBox([self.submit_button, self.message]),
            self.output,
        ]
        self.add_class("stax-picker")
        #: the read of the chosen cluster's live numbers and images (done once it is shown)
        self.loading = self._load_cluster()

    # ------------------------------------------------------------------ cluster and images
    def _reload(self) -> None:
        self.loading = self._load_cluster()

    def _load_cluster(self) -> concurrent.futures.Future[None]:
        """Show the chosen cluster's defaults now, its live numbers and images when read."""
        name = str(self.cluster.value)
        c = self._clusters[name]
        with self._lock:
            self._seq += 1
            seq = self._seq
        self.cluster_info.value = _cluster_html(c, None, "reading live numbers …")
        self.images_info.value = "<i>reading the StaX catalog …</i>"

        def work() -> None:
            detail: Any = None
            note = ""
            try:
                detail = self.service.cluster(name)
            except Exception as e:
                note = f"no live numbers: {one_line(e)}"
            entries: list[ImageEntry] = []
            problem = ""
            try:
                entries = image_entries(self.service.images(name))
            except Exception as e:
                problem = f"cannot read the StaX catalog: {one_line(e)}"
            with self._lock:
                if seq != self._seq:
                    return  # another cluster was chosen meanwhile
                self.cluster_info.value = _cluster_html(c, detail, note)
                self._show_images(entries, problem)

        return self._pool.submit(work)

    def _show_images(self, entries: list[ImageEntry], problem: str) -> None:
        self.entries = entries
        fitting = [e.name for e in entries if e.fits]
        keep = self.image.value if self.image.value in fitting else NO_IMAGE
        self.image.options = [NO_IMAGE, *fitting]
        self.image.value = keep
        if problem:
            self.images_info.value = f"<i>{escape(problem)}</i>"
            return
        if not entries:
            self.images_info.value = "<i>no StaX images in the catalog</i>"
            return
        rows = "".join(
            f"<li data-image='{escape(e.name)}' data-fits='{str(e.fits).lower()}'>"
            f"{'✅' if e.fits else '⛔'} <b>{escape(e.name)}</b>"
            f"{' (' + escape(e.family) + ')' if e.family else ''}"
            f"{'' if e.fits else ': ' + escape(e.reason)}</li>"
            for e in entries
        )
        self.images_info.value = f"<ul class='stax-images' style='margin:2px 0'>{rows}</ul>"

    # ------------------------------------------------------------------ submitting
    def workflow_to_submit(self) -> Workflow:
        """The workflow with the form's image and resources filled in where a step sets none."""
        wf = self.workflow.copy()
        image = None if self.image.value == NO_IMAGE else str(self.image.value)
        picked: dict[str, Any] = {
            "nodes": self.nodes.value or None,
            "ntasks": self.ntasks.value or None,
            "cpus_per_task": self.cpus_per_task.value or None,
            "gpus": self.gpus.value or None,
            "memory": self.memory.value.strip() or None,
            "time": self.time.value.strip() or None,
        }
        for s in wf.steps:
            res = s.resources.model_dump()
            merged = {k: res.get(k) if res.get(k) is not None else picked[k] for k in RESOURCE_KEYS}
            update: dict[str, Any] = {"resources": merged}
            if image and not s.image:
                update["image"] = image
            wf._steps[s.name] = type(s).model_validate({**s.model_dump(), **update})
        return wf

    def parameters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n, line in enumerate(self.params.value.splitlines(), 1):
            if not line.strip():
                continue
            try:
                key, value = split_assignment(line.strip())
            except AssignmentError as e:
                raise StaxError(f"parameters, line {n}: {e}") from None
            out[key] = parse_value(value.strip())  # typed as on every surface
        return out

    def submit(self) -> Execution:
        """Submit as the button does; the Execution (its monitor shows in ``output``)."""
        wf = self.workflow_to_submit()
        ex = wf.submit(
            str(self.cluster.value),
            params=self.parameters(),
            steps=list(self.steps.value) or None,
            service=self.service,
        )
        self.execution = ex
        if self.on_submit is not None:
            self.on_submit(ex)
        self.output.clear_output()
        with self.output:
            from .ipython import show

            show(ex.monitor())
        self.message.value = f"<span style='color:#2f9e44'>submitted {escape(ex.id)}</span>"
        return ex

    def _clicked(self) -> None:
        self.submit_button.disabled = True
        try:
            self.submit()
        except Exception as e:
            self.message.value = f"<span style='color:#e03131'>{escape(one_line(e))}</span>"
        finally:
            self.submit_button.disabled = False

    def close(self) -> None:
        """Close the widgets; waits for a read in flight (one sinfo/squeue at most), so no
        thread of the picker outlives it."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        super().close()


def _cluster_html(c: Any, detail: Any, note: str) -> str:
    bits = [
        f"scheduler <b>{escape(c.scheduler)}</b>",
        f"queue <b>{escape(c.queue or '-')}</b>",
        f"account <b>{escape(c.account or '-')}</b>",
        f"walltime <b>{escape(c.walltime)}</b>",
        f"launcher <b>{escape(c.launcher)}</b>",
    ]
    summary = getattr(detail, "summary", None)
    if isinstance(summary, SlurmSummary):
        n, j = summary.nodes, summary.jobs
        bits.append(
            f"now: nodes {n.idle} idle, {n.allocated} allocated, {n.unavailable} unavailable "
            f"of {n.total}; my jobs {j.queued} queued, {j.running} running"
        )
    elif isinstance(summary, LocalSummary):
        load = f"load {summary.load_average[0]:.2f}, " if summary.load_average else ""
        bits.append(f"now: {summary.cpus or '?'} CPUs, {load}{summary.running_steps} steps running")
    elif detail is not None and getattr(detail, "note", None):
        bits.append(f"<i>{escape(detail.note)}</i>")
    conn = connection_line(getattr(detail, "connection", None))
    if conn:
        bits.append(f"<span class='stax-cluster-connection'>{escape(conn)}</span>")
    if note:
        bits.append(f"<i>{escape(note)}</i>")
    return "<div class='stax-cluster-info' style='font-size:12px'>" + " · ".join(bits) + "</div>"
