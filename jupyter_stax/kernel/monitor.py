"""A live view of one execution as standard ipywidgets 8: state, progress, steps, Cancel and
Retry, a log pane that tails the selected step, and the DAG.

Everything goes through a :class:`~jupyter_stax.service.StaxService`, so the monitor works the
same on the local store and through a Jupyter server. Creating it reads the execution once
(so an unknown id fails there); after that it never blocks the kernel:

* in a kernel (a running asyncio loop on the creating thread), an asyncio task on that loop polls,
  and every service call runs in a worker thread (``loop.run_in_executor``); widgets are updated
  on the loop's thread;
* elsewhere (plain Python, tests) a daemon thread polls and updates the widgets.

Each look goes through the follower of :mod:`jupyter_stax.follow` (a :class:`LogTail` of the
selected step and stream: one ``get`` and the log reads). Polling stops once the execution is
final (after the last refresh and the last read of the selected log) or when
:meth:`Monitor.close` is called; a retry starts it again. Widget values are
meant to be read from saved notebooks: the progress bar's ``value``/``max``/``bar_style``/
``description``, one ``HTML`` per step whose value holds ``data-step`` and ``data-state``, the
buttons' ``disabled``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped, unused-ignore]

from ..core import dagview, text
from ..core.errors import StaxError
from ..core.models import Execution
from ..core.states import RETRYABLE
from ..follow import FollowTimeout, LogPiece, LogTail, Pacer, Poll
from ..service import StaxService
from .display import (
    BAR_STYLES,
    LOG_KEEP,
    clean_log_text,
    execution_html,
    execution_text,
    header_row_html,
    log_pane_html,
    step_row_html,
    title_html,
)

__all__ = ["LOG_KEEP", "Monitor", "one_line"]

log = logging.getLogger("jupyter_stax.monitor")

#: bytes asked for in one read_log call
LOG_CHUNK = 256 * 1024
#: read_log calls per refresh at most (catching up with a fast writer)
LOG_READS = 8
STREAMS = ("stdout", "stderr")
_MESSAGE_COLORS = {"info": "#495057", "ok": "#2f9e44", "error": "#e03131"}


def one_line(e: BaseException) -> str:
    """An error as one line: a StaxError's message and details, else ``Type: message``."""
    if isinstance(e, StaxError):
        msg = "; ".join([e.message, *e.details])
    else:
        msg = f"{type(e).__name__}: {e}"
    return " ".join(msg.split())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass
class _Snapshot:
    seq: int
    execution: Execution | None = None
    log: bool = False  # the log pane's text changed
    error: BaseException | None = None
    what: str = ""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Monitor(widgets.VBox):  # type: ignore[misc]
    """``Monitor(service, execution_id)``: display it, and it follows the execution live.
    ``execution``: the execution as the caller just read it (shown at once; the first read
    of the service then happens in the background).

    ``refresh()`` is one synchronous update, ``wait(timeout)`` refreshes until the execution is
    final, ``close()`` stops polling and closes the widgets. ``mermaid`` is the DAG as Mermaid
    text, ``log_text`` what the log pane shows. Raises the service's error (NotFound ...) when the
    execution cannot be read at creation.
    """

    def __init__(
        self,
        service: StaxService,
        execution_id: str,
        *,
        interval: float = 1.0,
        start: bool = True,
        execution: Execution | None = None,
        **kwargs: Any,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        super().__init__(**kwargs)
        self.service = service
        self.interval = float(interval)
        self._lock = threading.RLock()
        self._loop = _running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stax-monitor")
        self._actions = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stax-action")
        self._closed = False
        self._stop = threading.Event()
        self._task: asyncio.Future[None] | concurrent.futures.Future[None] | None = None
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._shown_seq = -1
        self._busy: str | None = None
        self._fetch_error_shown = False
        #: the Future of the last Cancel / Retry (done once its outcome is shown)
        self.action: concurrent.futures.Future[None] | None = None
        # the log pane shows what _tail (the selected step and stream) returned, cut to LOG_KEEP
        self._tail: LogTail | None = None
        self._read_lock = threading.Lock()  # one look at a time, its text added in order
        self._log_buf = ""
        self._log_cut = False
        self._log_done = False  # everything of a final step was read (or cannot be)

        given = execution is not None and execution.id.startswith(execution_id)
        ex = execution if given and execution is not None else service.get(execution_id)
        self.execution_id = ex.id
        self._ex = ex
        self._build(ex)
        self._tail = self._new_tail()
        if given and start:
            # the caller just read it (a submission): show it now, read again in the background
            with self._lock:
                self._show(ex)
        else:
            self.refresh()
        if start:
            self.start()

    # ------------------------------------------------------------------ widgets
    def _build(self, ex: Execution) -> None:
        names = [s.name for s in ex.steps]
        self.header = widgets.HTML()
        self.progress = widgets.IntProgress(
            value=0,
            min=0,
            max=len(names),
            description="",
            bar_style="info",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="360px"),
        )
        self.counts = widgets.HTML()
        # one HTML per step; the rows share one layout and one style (fewer widget models)
        layout = widgets.Layout(width="100%")
        head = widgets.HTML(header_row_html(), layout=layout)
        style = head.style
        self.rows: dict[str, Any] = {
            s.name: widgets.HTML(layout=layout, style=style) for s in ex.steps
        }
        self.steps_box = widgets.VBox(
            [head, *self.rows.values()], layout=widgets.Layout(margin="4px 0")
        )
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", button_style="warning", tooltip="Cancel every step"
        )
        self.retry_button = widgets.Button(
            description="Retry failed",
            icon="redo",
            tooltip="Run the failed, lost, canceled and skipped steps again",
        )
        self.message = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", overflow="hidden"))
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.retry_button.on_click(lambda _b: self.retry())
        self.dag = widgets.HTML(layout=widgets.Layout(overflow="auto"))
        self.step_select = widgets.Dropdown(
            options=names, value=names[0] if names else None, description="Log of"
        )
        self.stream_select = widgets.ToggleButtons(
            options=list(STREAMS), value="stdout", style={"button_width": "70px"}
        )
        self.log_view = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.step_select.observe(self._on_select, names="value")
        self.stream_select.observe(self._on_select, names="value")
        self._own: list[Any] = [
            self.header,
            self.progress,
            self.counts,
            head,
            *self.rows.values(),
            layout,
            style,
            self.steps_box,
            self.cancel_button,
            self.retry_button,
            self.message,
            self.dag,
            self.step_select,
            self.stream_select,
            self.log_view,
        ]
        lines = [
            widgets.HBox([self.progress, self.counts]),
            widgets.HBox([self.cancel_button, self.retry_button, self.message]),
            widgets.HBox([self.step_select, self.stream_select]),
        ]
        self._own += lines
        self.children = [
            self.header,
            lines[0],
            self.steps_box,
            lines[1],
            self.dag,
            lines[2],
            self.log_view,
        ]
        self.add_class("stax-monitor")
        self._render_log()

    def _show(self, ex: Execution) -> None:
        """Put an execution into the widgets (with the lock held)."""
        self._ex = ex
        done, total = ex.progress
        self.header.value = title_html(ex)
        self.progress.max = total
        self.progress.value = done
        self.progress.bar_style = BAR_STYLES[ex.state]
        self.progress.description = f"{done}/{total} steps done"
        self.counts.value = escape(text.progress_line(ex, _now()).split("] ", 1)[-1])
        for s, row in zip(ex.steps, text.step_rows(ex, _now()), strict=True):
            if s.name in self.rows:
                self.rows[s.name].value = step_row_html(s, row)
        self.dag.value = dagview.svg(ex)
        self._update_buttons()

    def _update_buttons(self) -> None:
        """As the sidebar's detail tab: Cancel while the execution runs (orange only when it
        can be clicked), Retry once it is final with a step in a retryable state."""
        ex = self._ex
        busy = self._busy is not None or self._closed
        can_cancel = not ex.state.final and not ex.cancel_requested
        can_retry = ex.state.final and any(s.state in RETRYABLE for s in ex.steps)
        self.cancel_button.disabled = busy or not can_cancel
        self.cancel_button.button_style = "" if self.cancel_button.disabled else "warning"
        self.retry_button.disabled = busy or not can_retry

    def _say(self, msg: str, kind: str, *, fetch_error: bool = False) -> None:
        """One line in the message widget (``kind``: info, ok or error); "" clears it."""
        self._fetch_error_shown = fetch_error
        color = _MESSAGE_COLORS.get(kind, "inherit")
        self.message.value = (
            f'<span class="stax-message" data-kind="{kind}" title="{escape(msg)}" '
            f'style="color:{color};white-space:nowrap">{escape(msg)}</span>'
            if msg
            else ""
        )

    def _render_log(self) -> None:
        self.log_view.value = log_pane_html(
            str(self.step_select.value),
            str(self.stream_select.value),
            self._log_buf,
            cut=self._log_cut,
            done=self._log_done,
        )

    # ------------------------------------------------------------------ reading
    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _new_tail(self) -> LogTail | None:
        """The follower of the selected step and stream (None: no step to select)."""
        step = self.step_select.value
        if step is None:
            return None
        return LogTail(
            self.service,
            self.execution_id,
            str(step),
            str(self.stream_select.value),
            attempts="current",
            keep=LOG_KEEP,
            limit=LOG_CHUNK,
            reads=LOG_READS,
        )

    def _fetch(self) -> _Snapshot:
        """Every service call of one update (runs on a worker thread); never raises."""
        with self._read_lock:
            seq = self._next_seq()
            tail = self._tail
            try:
                if tail is None:
                    return _Snapshot(seq, self.service.get(self.execution_id))
                pieces = tail.look()
            except Exception as e:
                error = e
            else:
                with self._lock:
                    mine = tail is self._tail
                    if mine:
                        self._add_log(pieces)
                        self._log_done = tail.done
                return _Snapshot(seq, tail.execution, log=mine and bool(pieces))
        try:  # what failed: reading the execution, or only its log?
            ex = self.service.get(self.execution_id)
        except Exception as e:
            return _Snapshot(seq, error=e, what="cannot read the execution")
        return _Snapshot(seq, ex, error=error, what="cannot read the log")

    def _add_log(self, pieces: list[LogPiece]) -> None:
        """Add what the follower read to the pane's text (with the lock held)."""
        for p in pieces:
            data = clean_log_text(p.data)
            if p.new_attempt:
                self._log_buf, self._log_cut = "", False  # a new attempt: start over
            if p.skipped:  # started inside a line (maybe a character): drop that line
                data = data.split("\n", 1)[1] if "\n" in data else data
                self._log_buf, self._log_cut = "", True
            buf = self._log_buf + data
            if len(buf) > LOG_KEEP:
                cut = len(buf) - LOG_KEEP
                nl = buf.find("\n", cut, cut + 4096)
                buf = buf[(nl + 1 if nl >= 0 else cut) :]
                self._log_cut = True
            self._log_buf = buf

    def _apply(self, snap: _Snapshot) -> None:
        """Show what a fetch found, unless something newer is shown already."""
        with self._lock:
            if self._closed:
                return
            if snap.execution is not None and snap.seq > self._shown_seq:
                self._shown_seq = snap.seq
                self._show(snap.execution)
                if self._fetch_error_shown:
                    self._say("", "")
            if snap.log or self._tail is not None:
                self._render_log()
            elif snap.error is None and snap.execution is not None:
                self._log_done = snap.execution.state.final  # no step selected: nothing to read
            if snap.error is not None:
                if snap.execution is not None and snap.execution.state.final:
                    self._log_done = True  # do not poll a final execution for a broken log
                if self._busy is None:
                    self._say(f"{snap.what}: {one_line(snap.error)}", "error", fetch_error=True)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn`` on the loop's thread in a kernel, else right here."""
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(fn, *args)
                return
            except RuntimeError:
                pass  # the loop closed meanwhile
        fn(*args)

    def _kick(self) -> None:
        """One update in the background (after the user changed the log selection)."""
        if self._closed:
            return

        def done(f: concurrent.futures.Future[_Snapshot]) -> None:
            if not f.cancelled():
                self._post(self._apply, f.result())

        try:
            self._pool.submit(self._fetch).add_done_callback(done)
        except RuntimeError:
            pass  # shut down by close()

    def _on_select(self, _change: Any) -> None:
        with self._lock:
            self._tail = self._new_tail()
            self._log_buf = ""
            self._log_cut = self._log_done = False
            self._render_log()
        self._kick()

    @property
    def _finished(self) -> bool:
        return self._ex.state.final and self._log_done

    # ------------------------------------------------------------------ polling
    @property
    def polling(self) -> bool:
        """Whether a background poll runs."""
        if self._task is not None and not self._task.done():
            return True
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Follow the execution in the background (a no-op when already following or closed).
        Called at creation unless ``start=False``."""
        with self._lock:
            if self._closed or self.polling or self._finished:
                return
            self._stop = stop = threading.Event()
            loop = self._loop
            if loop is not None and loop.is_running():
                if _running_loop() is loop:
                    self._task = loop.create_task(self._poll_async(stop))
                else:
                    self._task = asyncio.run_coroutine_threadsafe(self._poll_async(stop), loop)
                return
            self._thread = threading.Thread(
                target=self._poll_thread, args=(stop,), name="stax-monitor-poll", daemon=True
            )
            self._thread.start()

    async def _poll_async(self, stop: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                snap = await loop.run_in_executor(self._pool, self._fetch)
                if stop.is_set():
                    return
                self._apply(snap)
                if self._finished:
                    return
                await asyncio.sleep(self.interval)
        except Exception:  # RuntimeError when close() shut the pool down: expected then
            if not stop.is_set():
                log.exception("monitor of %s stopped", self.execution_id)

    def _poll_thread(self, stop: threading.Event) -> None:
        pacer = Pacer(Poll.every(self.interval), stop)
        try:
            while not stop.is_set():
                snap = self._fetch()
                if stop.is_set():
                    return
                self._apply(snap)
                if self._finished:
                    return
                if not pacer.pause(changed=True):
                    return
        except Exception:
            log.exception("monitor of %s stopped", self.execution_id)

    def stop(self) -> None:
        """Stop polling; the widgets stay as they are."""
        with self._lock:
            self._stop.set()
            if self._task is not None and not self._task.done():
                self._task.cancel()

    def close(self) -> None:
        """Stop polling and close every widget of the monitor."""
        self.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._actions.shutdown(wait=False)
        for w in self._own:
            w.close()
        super().close()

    # ------------------------------------------------------------------ public API
    @property
    def closed(self) -> bool:
        return self._closed

    def send_all(self) -> None:
        """Send the whole state of every widget of the monitor again. Updates made by the
        background poll go out between cells; a saved notebook (nbclient, nbconvert) records
        only messages of the cell that runs, so a blocking wait calls this at its end."""
        with self._lock:
            if self._closed:
                return
            for w in [self, *self._own]:
                if isinstance(w, widgets.Widget) and w.comm is not None:
                    w.send_state()

    @property
    def execution(self) -> Execution:
        """The execution as last shown."""
        return self._ex

    @property
    def mermaid(self) -> str:
        """The DAG as Mermaid text (``flowchart LR``), states as last shown."""
        return dagview.mermaid(self._ex)

    @property
    def log_text(self) -> str:
        """What the log pane shows (the last ``LOG_KEEP`` characters of the selected log)."""
        return self._log_buf

    def refresh(self) -> Execution:
        """One synchronous update, service calls included (on the calling thread). Raises the
        service's error (the message line shows it too)."""
        snap = self._fetch()
        self._apply(snap)
        if snap.error is not None:
            raise snap.error
        return self._ex

    def wait(self, timeout: float | None = None) -> Execution:
        """Refresh until the execution is final and the selected log read to its end; the
        final execution. TimeoutError after ``timeout`` seconds."""
        pacer = Pacer(Poll.every(self.interval), timeout=timeout)
        while True:
            ex = self.refresh()
            if self._finished:
                return ex
            if pacer.expired:
                raise FollowTimeout(ex, timeout or 0.0)
            pacer.pause(changed=True)

    def cancel(self) -> concurrent.futures.Future[None]:
        """What the Cancel button does: ask the service to cancel, in a worker thread. The
        outcome shows in the message line."""
        return self._act("cancel", self.service.cancel)

    def retry(self) -> concurrent.futures.Future[None]:
        """What the Retry button does: run the failed, lost, canceled and skipped steps again,
        and follow them."""
        return self._act("retry", self.service.retry)

    def _act(self, verb: str, call: Callable[[str], Execution]) -> concurrent.futures.Future[None]:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"this monitor of {self.execution_id} is closed")
            self._busy = verb
            self._update_buttons()
            self._say("canceling …" if verb == "cancel" else "retrying …", "info")

        def run() -> None:
            ex: Execution | None = None
            error: BaseException | None = None
            try:
                ex = call(self.execution_id)
            except Exception as e:
                error = e
            self._post(self._acted, verb, ex, error, self._next_seq())

        fut = self._actions.submit(run)
        self.action = fut
        return fut

    def _acted(
        self, verb: str, ex: Execution | None, error: BaseException | None, seq: int
    ) -> None:
        with self._lock:
            self._busy = None
            if self._closed:
                return
            if error is not None or ex is None:
                self._say(f"{verb} failed: {one_line(error or RuntimeError('no answer'))}", "error")
            else:
                if seq > self._shown_seq:
                    self._shown_seq = seq
                    self._show(ex)
                if verb == "cancel":
                    said = f"execution {ex.state.value}" if ex.state.final else "cancel requested"
                    self._say(said, "ok")
                else:
                    again = [s.name for s in ex.steps if not s.state.final]
                    self._say(f"retrying {len(again)} step(s): {', '.join(again)}", "ok")
                    self._tail = self._new_tail()  # the last one is done: follow the new attempts
                    self._log_buf, self._log_cut, self._log_done = "", False, False
            self._update_buttons()
        if error is None and verb == "retry" and not self._closed:
            self.start()

    # ------------------------------------------------------------------ reprs
    def __repr__(self) -> str:
        done, total = self._ex.progress
        return (
            f"<Monitor of execution {self.execution_id}: {self._ex.state.value}, "
            f"{done}/{total} steps done>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget, with the status as text/plain (not cut at 110) and text/html fallbacks
        for frontends without widgets (nbconvert, GitHub)."""
        data = super()._repr_mimebundle_(**kwargs)
        if isinstance(data, dict):
            data["text/plain"] = execution_text(self._ex)
            data["text/html"] = execution_html(self._ex)
        return data
