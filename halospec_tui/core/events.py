"""Typed events the runner publishes, and the bus that delivers them.

Every consumer (results writer, headless printer, monitor) sees the run only through these.
Events are frozen dataclasses so a subscriber on another thread can keep them safely.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# StepRow.error of a step a stop abandoned (the backend's Reply.stopped says it first)
from halospec_tui.backends.base import INTERRUPTED

# a ControllerDecision carries the controller's Decision (defined with the controllers)
from halospec_tui.controllers.base import Decision

PHASES = ("warmup", "steady", "load", "recovery")


@dataclass(frozen=True)
class StepRow:
    """One measured step; field order is the CSV column order (HaloSpec's eight first)."""

    global_step: int
    step: int
    mode: str
    phase: str
    draft_length: int
    success: int
    latency_ms: float
    tokens: int
    # new columns
    timestamp: str = ""
    prompt_id: str = ""
    category: str = ""
    draft_n: int | None = None
    draft_n_accepted: int | None = None
    acceptance: float | None = None
    observed_k: float | None = None
    prompt_n: int | None = None
    prompt_ms: float | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    server_ms: float | None = None
    tokens_per_s: float | None = None
    cpu_percent: float | None = None
    load_on: int = 0
    attempts: int = 1
    ema_ms: float | None = None
    low_thr_ms: float | None = None
    high_thr_ms: float | None = None
    controller_reason: str = ""
    draft_channel: str = ""
    error: str = ""  # "interrupted": the request the run's stop abandoned (success 0)
    # the order and the conditions a step met (the recommendation's inputs)
    round: int = 0  # 1-based round of the sweep's order (core/schedule.py)
    foreign_cpu: float | None = None  # % of one core used by other processes during the step
    contaminated: str = ""  # why the step is left out of comparisons ("" = clean)
    # streamed replies only (request.stream): time to first token, inter-token latency
    ttft_ms: float | None = None
    itl_p50_ms: float | None = None
    itl_p95_ms: float | None = None

    @property
    def interrupted(self) -> bool:
        """The step whose request was abandoned when the run was stopped."""
        return not self.success and self.error == INTERRUPTED


@dataclass(frozen=True)
class Event:
    t: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    run_dir: str
    profile: str
    backend: str
    draft_channel: str
    model: str
    modes: tuple[str, ...]
    total_steps: int
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundStarted(Event):
    """A round of the sweep's order begins: these modes, in this order (core/schedule.py)."""

    round: int
    modes: tuple[str, ...]
    planned: int  # rounds planned so far (grows while `until = "decided"` is not decided)


@dataclass(frozen=True)
class Standings(Event):
    """The recommendation as it stands (core/recommendation.py, as a dict): best, tied,
    worse per mode with intervals, and what is being decided."""

    round: int
    recommendation: dict[str, Any]
    final: bool = False


@dataclass(frozen=True)
class ModeStarted(Event):
    mode: str
    index: int  # 0-based
    count: int
    steps: int
    warmup: int
    controller: str  # fixed, latency, acceptance, ...


@dataclass(frozen=True)
class WarmupStep(Event):
    mode: str
    i: int  # 1-based
    n: int
    k: int
    success: bool
    latency_ms: float
    error: str = ""


@dataclass(frozen=True)
class WarmupDone(Event):
    mode: str
    latencies_ms: tuple[float, ...]
    thresholds: dict[str, float | None]  # e.g. low_thr_ms/high_thr_ms for the latency controller
    note: str = ""


@dataclass(frozen=True)
class PhaseChanged(Event):
    mode: str
    phase: str  # one of PHASES
    step: int  # the first step of the new phase (0 during warmup)


@dataclass(frozen=True)
class ControllerDecision(Event):
    mode: str
    step: int
    prev_k: int | None
    decision: Decision


@dataclass(frozen=True)
class StepResult(Event):
    row: StepRow
    text: str = ""
    reply_json: dict[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class LoadChanged(Event):
    on: bool
    cores: int
    scheduled: bool
    duration_s: float | None = None  # planned duration when scheduled


@dataclass(frozen=True)
class Paused(Event):
    paused: bool


@dataclass(frozen=True)
class Notice(Event):
    """Something the user must see: warnings ("draft length not applied"), failures, hints."""

    level: str  # info, warning, error
    text: str
    mode: str = ""


@dataclass(frozen=True)
class ModeFinished(Event):
    mode: str
    summary: dict[str, Any]  # this mode's statistics and draft_control verdict
    run_summary: dict[str, Any] = field(default_factory=dict)  # the whole run so far


@dataclass(frozen=True)
class RunFinished(Event):
    run_dir: str
    summary: dict[str, Any]
    cancelled: bool
    error: str = ""


Subscriber = Callable[[Event], None]
_STOP = object()


class EventBus:
    """Fan-out of events. `inline` subscribers run on the publisher's thread (the results
    writer: it must see every row before the runner moves on); the others get a queue and a
    delivery thread each, so a slow subscriber never blocks the run."""

    def __init__(self) -> None:
        self._inline: list[Subscriber] = []
        self._queued: list[tuple[queue.SimpleQueue[Any], threading.Thread]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber, *, inline: bool = False) -> None:
        with self._lock:
            if inline:
                self._inline.append(fn)
                return
            q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            t = threading.Thread(
                target=self._deliver,
                args=(q, fn),
                daemon=True,
                name=f"events->{getattr(fn, '__qualname__', fn)}",
            )
            t.start()
            self._queued.append((q, t))

    @staticmethod
    def _deliver(q: queue.SimpleQueue[Any], fn: Subscriber) -> None:
        while (ev := q.get()) is not _STOP:
            try:
                fn(ev)
            except Exception:  # a broken subscriber must not take the run down
                traceback.print_exc()

    def publish(self, ev: Event) -> None:
        with self._lock:
            inline, queued = list(self._inline), list(self._queued)
        for fn in inline:
            fn(ev)
        for q, _ in queued:
            q.put(ev)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, then stop the delivery threads."""
        with self._lock:
            queued, self._queued = self._queued, []
        for q, _ in queued:
            q.put(_STOP)
        deadline = time.monotonic() + timeout
        for _, t in queued:
            t.join(max(0.0, deadline - time.monotonic()))
