"""Batches runner events for the UI thread; no Textual here.

The event bus calls the pump on its delivery thread for every event. The pump only appends to
a list; its own thread hands the list over (one `post(batch)` call, which the app turns into
one Textual message) at most every `interval` seconds, and sooner, but never more than
`1 / min_gap` times a second, for events a user waits to see (pause, run end). So however
fast steps arrive, the UI redraws a few times a second and the runner never waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from halospec_tui.core.events import Event, LoadChanged, Paused, RunFinished

URGENT = (Paused, RunFinished, LoadChanged)


class EventPump:
    def __init__(
        self, post: Callable[[list[Event]], None], *, interval: float = 0.25, min_gap: float = 0.1
    ) -> None:
        self._post = post
        self.interval = interval
        self.min_gap = min_gap
        self._buf: list[Event] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0

    def __call__(self, ev: Event) -> None:
        with self._lock:
            self._buf.append(ev)
        if isinstance(ev, URGENT):
            self._wake.set()

    def start(self) -> EventPump:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="monitor-pump", daemon=True)
            self._thread.start()
        return self

    def flush(self) -> None:
        with self._lock:
            batch, self._buf = self._buf, []
        if batch:
            self.batches += 1
            self._post(batch)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
            self._stop.wait(self.min_gap)
        self.flush()

    def stop(self, timeout: float = 1.0) -> None:
        """Hand over what is left and end the thread."""
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
