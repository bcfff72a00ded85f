"""What the monitor knows about a run, built only from runner events; no Textual here.

The app feeds batches of events to `MonitorState.apply_all` on the UI thread and then redraws
the panes named in `dirty`. Every history kept here is bounded (deques with a maxlen), so a
100,000-step run uses the same memory as a 10-step one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from halospec_tui.core.events import (
    ControllerDecision,
    Event,
    LoadChanged,
    ModeFinished,
    ModeStarted,
    Notice,
    Paused,
    PhaseChanged,
    RoundStarted,
    RunFinished,
    RunStarted,
    Standings,
    StepResult,
    WarmupDone,
    WarmupStep,
)
from halospec_tui.core.stats import nearest_rank
from halospec_tui.modes import FIXED

HISTORY = 512  # points per sparkline: more than any pane is wide
PCT_WINDOW = 8192  # latencies kept for the live p50/p95 (exact until a mode is longer)
LOG_PENDING_MAX = 200  # log lines held between two redraws; older ones are counted, not kept

PANES = ("header", "banner", "progress", "charts", "controller", "modes", "log")

CHANNEL_TEXT = {
    "request": "per request (speculative.n_max)",
    "reload": "model reload per k",
    "pool": "one server per k",
    "restart": "server restart per k",
    "none": "not applied (channel none)",
}


def fmt_num(v: float | None, nd: int = 1, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:,.{nd}f}{unit}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class LogEntry:
    level: str  # info, warning, error, mode, load, done
    text: str
    elapsed: float | None  # seconds since the run started (None before)


class ModeView:
    """The mode being run: its step counters and bounded per-step histories."""

    def __init__(
        self, name: str, index: int, count: int, steps: int, warmup: int, controller: str
    ) -> None:
        self.name = name
        self.index = index
        self.count = count
        self.steps = steps
        self.warmup = warmup
        self.controller = controller
        self.step = 0  # last measured step seen
        self.warmup_i = 0
        self.successes = 0
        self.failures = 0
        self.latency: deque[float] = deque(maxlen=HISTORY)
        self.draft_length: deque[float] = deque(maxlen=HISTORY)
        self.acceptance: deque[float] = deque(maxlen=HISTORY)
        self._window: deque[float] = deque(maxlen=PCT_WINDOW)
        self._pct: tuple[float | None, float | None] | None = None
        self.last_latency: float | None = None
        self.last_ttft: float | None = None  # time to first token of the last streamed step
        self.last_k: int | None = None
        self.last_acceptance: float | None = None
        self._acc_window: deque[float] = deque(maxlen=PCT_WINDOW)
        self._acc_pct: tuple[float | None, float | None] | None = None
        self._k_window: deque[float] = deque(maxlen=PCT_WINDOW)
        self._k_pct: tuple[float | None, float | None] | None = None
        self.tokens = 0  # successful steps' tokens and latency: the live tokens/s
        self.latency_ms = 0.0
        self.contaminated = 0
        # the mode's controller, as its last decision left it
        self.ctl_k: int | None = None
        self.ctl_prev_k: int | None = None
        self.ctl_reason = ""
        self.ctl_step = 0
        self.ctl_values: dict[str, float | None] = {}
        self.thresholds: dict[str, float | None] = {}

    def add(self, row: Any) -> None:
        self.step = row.step
        self.last_k = row.draft_length
        self.draft_length.append(float(row.draft_length))
        self._k_window.append(float(row.draft_length))
        self._k_pct = None
        if getattr(row, "contaminated", ""):
            self.contaminated += 1
        if row.success:
            self.successes += 1
            self.tokens += int(row.tokens)
            self.latency_ms += float(row.latency_ms)
            self.last_latency = row.latency_ms
            self.latency.append(row.latency_ms)
            self._window.append(row.latency_ms)
            self._pct = None
            if row.ttft_ms is not None:
                self.last_ttft = row.ttft_ms
        elif not row.interrupted:  # a step the stop abandoned is no failure of the server
            self.failures += 1
        if row.acceptance is not None:
            self.last_acceptance = row.acceptance
            self.acceptance.append(row.acceptance)
            self._acc_window.append(row.acceptance)
            self._acc_pct = None

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / (self.latency_ms / 1000.0) if self.latency_ms > 0 else None

    @property
    def windowed(self) -> bool:
        """True when the live percentiles cover only the last PCT_WINDOW steps."""
        return self.successes > PCT_WINDOW

    def latency_pct(self) -> tuple[float | None, float | None]:
        if self._pct is None:
            v = sorted(self._window)
            self._pct = (nearest_rank(v, 50), nearest_rank(v, 95))
        return self._pct

    def acceptance_pct(self) -> tuple[float | None, float | None]:
        if self._acc_pct is None:
            v = sorted(self._acc_window)
            self._acc_pct = (nearest_rank(v, 50), nearest_rank(v, 95))
        return self._acc_pct

    def draft_pct(self) -> tuple[float | None, float | None]:
        if self._k_pct is None:
            v = sorted(self._k_window)
            self._k_pct = (nearest_rank(v, 50), nearest_rank(v, 95))
        return self._k_pct


class MonitorState:
    """Folds runner events into what the panes show. Call only from one thread."""

    def __init__(self, clock: Callable[[], float] = time.time, *, event_times: bool = True) -> None:
        """`clock` gives "now" in the events' time base (time.time); with `event_times=False`
        an event counts as happening when it is applied (tests freeze `clock` this way)."""
        self.clock = clock
        self.event_times = event_times
        self.dirty: set[str] = set(PANES)
        # header
        self.profile = ""
        self.backend = ""
        self.draft_channel = ""
        self.model = ""
        self.run_dir = ""
        self.url = ""
        # run
        self.modes: tuple[str, ...] = ()
        self.total_steps = 0
        self.warmup_per_mode = 0
        self.started_at: float | None = None
        self.steps_done = 0
        self.warmups_done = 0
        self.failures = 0
        self.views: dict[str, ModeView] = {}  # every mode seen, in the order first seen
        self.focus: str | None = None  # the mode the user picked for the charts (f)
        self.latest: str | None = None  # the mode of the latest event
        self.order = ""  # interleaved, blocks, sequential
        self.until = "steps"
        self.round = 0
        self.rounds_planned = 0
        self.standings: dict[str, Any] | None = None  # the recommendation as it stands
        self.standings_round = 0  # the round it stands after
        self.phase = "starting"
        self.phase_step = 0
        self.paused = False
        self.stopping = False
        self.done = False
        self.cancelled = False
        self.error = ""
        self.finished_at: float | None = None
        # load
        self.load_on = False
        self.load_since: float | None = None
        self.load_duration: float | None = None
        self.load_scheduled = False
        self.load_cores = 0
        # results
        self.finished: list[dict[str, Any]] = []
        self.winner: str | None = None
        self.summary: dict[str, Any] | None = None
        self.modes_version = 0  # bumped when `finished` or `winner` change
        # log
        self.pending_log: deque[LogEntry] = deque(maxlen=LOG_PENDING_MAX)
        self.dropped_log = 0
        self.events_seen = 0
        self._ev_time: float | None = None

    # --- which mode the panes show -----------------------------------------------------------
    @property
    def mode(self) -> ModeView | None:
        """The mode the charts and the controller pane show: the one the user picked (f);
        in HaloSpec's sequential order, the mode running; with rounds, the first adaptive mode
        (its k moves), else the leader, so the panes do not flicker from step to step."""
        if self.focus in self.views:
            return self.views[self.focus]
        if self.order in ("interleaved", "blocks") and not self._warming():
            adaptive = [v for v in self.views.values() if v.controller != FIXED]
            if adaptive:
                return adaptive[0]
            lead = (self.standings or {}).get("mode")
            if lead in self.views:
                return self.views[lead]
        return self.views.get(self.latest or "")

    def _warming(self) -> bool:
        return self.phase == "warmup" and self.steps_done == 0

    def cycle_focus(self) -> str | None:
        """Show the next mode in the charts (the `f` key)."""
        names = list(self.views)
        if not names:
            return None
        cur = self.mode.name if self.mode is not None else names[-1]
        self.focus = names[(names.index(cur) + 1) % len(names)] if cur in names else names[0]
        self.dirty.update(("charts", "controller", "progress", "banner"))
        return self.focus

    def view(self, mode: str) -> ModeView:
        v = self.views.get(mode)
        if v is None:  # joined mid-run
            v = self.views[mode] = ModeView(mode, len(self.views), len(self.modes) or 1, 0, 0, "")
        return v

    @property
    def ctl_kind(self) -> str:
        m = self.mode
        return m.controller if m is not None else ""

    @property
    def ctl_k(self) -> int | None:
        m = self.mode
        return m.ctl_k if m is not None else None

    @property
    def ctl_prev_k(self) -> int | None:
        m = self.mode
        return m.ctl_prev_k if m is not None else None

    @property
    def ctl_reason(self) -> str:
        m = self.mode
        return m.ctl_reason if m is not None else ""

    @property
    def ctl_step(self) -> int:
        m = self.mode
        return m.ctl_step if m is not None else 0

    @property
    def ctl_values(self) -> dict[str, float | None]:
        m = self.mode
        return m.ctl_values if m is not None else {}

    @property
    def thresholds(self) -> dict[str, float | None]:
        m = self.mode
        return m.thresholds if m is not None else {}

    # --- folding --------------------------------------------------------------------------
    def apply_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.apply(ev)

    def apply(self, ev: Event) -> None:
        self.events_seen += 1
        self._ev_time = self._t(ev)
        handler = _HANDLERS.get(type(ev))
        if handler is not None:
            handler(self, ev)

    def _t(self, ev: Event) -> float:
        return ev.t if self.event_times else self.clock()

    def log(self, level: str, text: str) -> None:
        if len(self.pending_log) == self.pending_log.maxlen:
            self.dropped_log += 1
        at = self._ev_time if self._ev_time is not None else self.clock()
        since = None if self.started_at is None else max(0.0, at - self.started_at)
        self.pending_log.append(LogEntry(level, text, since))
        self.dirty.add("log")

    def take_log(self) -> tuple[list[LogEntry], int]:
        entries, dropped = list(self.pending_log), self.dropped_log
        self.pending_log.clear()
        self.dropped_log = 0
        return entries, dropped

    def _run_started(self, ev: RunStarted) -> None:
        self.profile, self.backend = ev.profile, ev.backend
        self.draft_channel, self.model, self.run_dir = ev.draft_channel, ev.model, ev.run_dir
        self.url = str(ev.settings.get("url", "") or "")
        self.modes, self.total_steps = tuple(ev.modes), ev.total_steps
        self.warmup_per_mode = int(ev.settings.get("warmup", 0) or 0)
        self.order = str(ev.settings.get("order") or "sequential")
        self.until = str(ev.settings.get("until") or "steps")
        self.rounds_planned = int(ev.settings.get("rounds") or 0)
        self.started_at = self._t(ev)
        self.phase = "warmup"
        self.dirty.update(("header", "banner", "progress"))
        self.log(
            "info",
            f"run started: {len(ev.modes)} modes, {ev.total_steps} measured steps → {ev.run_dir}",
        )

    def _mode_started(self, ev: ModeStarted) -> None:
        self.views[ev.mode] = ModeView(
            ev.mode, ev.index, ev.count, ev.steps, ev.warmup, ev.controller
        )
        self.latest = ev.mode
        self.warmup_per_mode = ev.warmup
        self.dirty.update(("banner", "progress", "charts", "controller", "modes"))
        self.log(
            "mode",
            f"mode {ev.mode} ({ev.index + 1}/{ev.count}): {ev.warmup} warmup + "
            f"{ev.steps} steps, controller {ev.controller}",
        )

    def _warmup_step(self, ev: WarmupStep) -> None:
        self.warmups_done += 1
        self.latest = ev.mode
        self.view(ev.mode).warmup_i = ev.i
        self.dirty.update(("banner", "progress"))
        if not ev.success:
            self.log(
                "warning", f"{ev.mode} warmup {ev.i}/{ev.n} failed: {ev.error or 'no reason given'}"
            )

    def _warmup_done(self, ev: WarmupDone) -> None:
        self.view(ev.mode).thresholds = dict(ev.thresholds)
        self.dirty.add("controller")
        shown = {k: v for k, v in ev.thresholds.items() if v is not None}
        if shown:
            parts = " · ".join(f"{_label(k)} {fmt_num(v, 1)}" for k, v in shown.items())
            self.log("info", f"{ev.mode} thresholds: {parts}")
        if ev.note:
            self.log("warning", f"{ev.mode}: {ev.note}")

    def _phase_changed(self, ev: PhaseChanged) -> None:
        same = ev.phase == self.phase
        self.phase, self.phase_step = ev.phase, ev.step
        self.dirty.add("banner")
        # with rounds every mode changes phase in turn: say it once, when the run's phase moves
        if ev.phase != "warmup" and not (same and self.order in ("interleaved", "blocks")):
            self.log(
                "load" if ev.phase == "load" else "info",
                f"{ev.mode} phase {ev.phase.upper()} from step {ev.step}",
            )

    def _decision(self, ev: ControllerDecision) -> None:
        v = self.view(ev.mode)
        v.ctl_prev_k = ev.prev_k
        v.ctl_k = ev.decision.k
        v.ctl_reason = ev.decision.reason
        v.ctl_step = ev.step
        v.ctl_values = dict(ev.decision.values)
        if self.mode is v:
            self.dirty.add("controller")

    def _step(self, ev: StepResult) -> None:
        row = ev.row
        self.steps_done += 1
        if not row.success:
            self.failures += 1
        v = self.view(row.mode)
        self.latest = row.mode
        v.steps = max(v.steps, row.step)
        v.add(row)
        if v.controller == FIXED or v.ctl_k is None:
            v.ctl_k = row.draft_length
        self.dirty.update(("progress", "modes"))
        if self.mode is v:
            self.dirty.update(("charts", "controller"))
        if self.paused:  # "paused before step N" moves when the step in flight lands
            self.dirty.add("banner")

    def _load(self, ev: LoadChanged) -> None:
        now = self._t(ev)
        self.load_cores = ev.cores
        if ev.on:
            self.load_on, self.load_since = True, now
            self.load_scheduled, self.load_duration = ev.scheduled, ev.duration_s
            how = f"scheduled for {fmt_num(ev.duration_s, 0)} s" if ev.scheduled else "manual"
            self.log("load", f"load ON: {_cores(ev.cores)}, {how}")
        else:
            ran = now - self.load_since if self.load_since is not None else None
            self.load_on, self.load_since = False, None
            self.log("load", f"load OFF after {fmt_num(ran, 1)} s")
        self.dirty.update(("banner", "header"))

    def _paused(self, ev: Paused) -> None:
        if self.paused != ev.paused:
            self.log("info", "paused: no new step starts until p" if ev.paused else "resumed")
        self.paused = ev.paused
        self.dirty.add("banner")

    def _notice(self, ev: Notice) -> None:
        self.log(ev.level if ev.level in ("info", "warning", "error") else "info", ev.text)

    def _round(self, ev: RoundStarted) -> None:
        self.round = ev.round
        self.rounds_planned = max(self.rounds_planned, ev.planned)
        # a decided run grows: count the round's steps into the total once it passes the plan
        self.total_steps = max(self.total_steps, self.steps_done + len(ev.modes))
        self.dirty.update(("banner", "progress"))

    def _standings(self, ev: Standings) -> None:
        self.standings = ev.recommendation
        self.standings_round = ev.round
        self.winner = ev.recommendation.get("mode")
        self.modes_version += 1
        self.dirty.update(("modes", "banner"))
        if self.mode is not None and self.focus is None:
            self.dirty.update(("charts", "controller"))

    def standing(self, mode: str) -> dict[str, Any]:
        """This mode's place in the standings (label, interval, vs the leader), or {}."""
        for s in (self.standings or {}).get("standings") or []:
            if s.get("mode") == mode:
                return s
        return {}

    def mode_rows(self) -> list[dict[str, Any]]:
        """One dict per mode for the modes table: the finished summary where there is one,
        else what the live views know; each with its standing."""
        done = {m.get("mode"): m for m in self.finished}
        names = list(dict.fromkeys([*self.modes, *self.views, *done]))
        rows = []
        for name in names:
            m = dict(done.get(name) or {})
            v = self.views.get(name)
            if not m and v is None:
                continue
            if not m and v is not None:
                p50, p95 = v.latency_pct()
                steps = v.successes + v.failures
                m = {
                    "mode": name,
                    "steps": steps,
                    "median_ms": p50,
                    "p95_ms": p95,
                    "tokens_per_s": v.tokens_per_s,
                    "acceptance": v.last_acceptance,
                    "success_rate": v.successes / steps if steps else None,
                    "contaminated_steps": v.contaminated,
                    "live": True,
                }
            st = self.standing(name)
            if st:
                m["confidence"] = {k: x for k, x in st.items() if k != "mode"}
            rows.append(m)
        return rows

    def _mode_finished(self, ev: ModeFinished) -> None:
        self.finished = [m for m in self.finished if m.get("mode") != ev.mode] + [ev.summary]
        if ev.run_summary and ev.run_summary.get("recommendation") is not None:
            self.winner = ev.run_summary.get("winner")
        self.modes_version += 1
        self.dirty.add("modes")
        s = ev.summary
        self.log(
            "mode",
            f"{ev.mode} done: avg {fmt_num(s.get('avg_ms'))} ms · "
            f"p95 {fmt_num(s.get('p95_ms'))} ms · score {fmt_num(s.get('score'))} · "
            f"ok {fmt_num(100 * (s.get('success_rate') or 0), 0)} %",
        )

    def _run_finished(self, ev: RunFinished) -> None:
        self.done, self.cancelled, self.error = True, ev.cancelled, ev.error
        self.summary = ev.summary
        self.finished_at = self._t(ev)
        modes = ev.summary.get("modes")
        if isinstance(modes, list) and modes:
            self.finished = list(modes)
        self.winner = ev.summary.get("winner")
        if isinstance(ev.summary.get("recommendation"), dict):
            self.standings = ev.summary["recommendation"]
        self.modes_version += 1
        self.load_on = False
        self.dirty.update(PANES)
        if ev.error:
            self.log("error", f"run stopped by an error: {ev.error}")
        elif ev.cancelled:
            self.log("done", f"run cancelled after {self.steps_done} steps; files are complete")
        else:
            rec = self.standings or {}
            self.log(
                "done",
                f"run finished: recommendation {self.winner or 'none'}"
                + (f" · {rec.get('reason')}" if rec.get("reason") else ""),
            )

    # --- derived values the panes show ------------------------------------------------------
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else self.clock()
        return max(0.0, end - self.started_at)

    def work(self) -> tuple[int, int]:
        """(done, total) requests, warmups included, for the whole-run progress bar."""
        total = self.total_steps + self.warmup_per_mode * len(self.modes)
        return self.warmups_done + self.steps_done, max(total, 1)

    def time_left(self) -> float | None:
        done, total = self.work()
        el = self.elapsed()
        if self.done:
            return 0.0
        if not done or not el or el <= 0:
            return None
        return el * (total - done) / done

    def load_elapsed(self) -> float | None:
        if not self.load_on or self.load_since is None:
            return None
        return max(0.0, self.clock() - self.load_since)

    def banner_phase(self) -> str:
        """starting, warmup, steady, load, recovery, paused, stopping, done."""
        if self.done:
            return "done"
        if self.stopping:
            return "stopping"
        if self.paused:
            return "paused"
        if self.load_on:
            return "load"
        return self.phase

    def channel_text(self) -> str:
        return CHANNEL_TEXT.get(self.draft_channel, self.draft_channel or "–")


def _cores(n: int) -> str:
    return f"{n} core" if n == 1 else f"{n} cores"


def _label(key: str) -> str:
    return {
        "low_thr_ms": "low_thr ms",
        "high_thr_ms": "high_thr ms",
        "p_low_ms": "warmup p_low ms",
        "p_high_ms": "warmup p_high ms",
        "ema_ms": "EMA ms",
    }.get(key, key)


_HANDLERS: dict[type, Callable[[MonitorState, Any], None]] = {
    RunStarted: MonitorState._run_started,
    ModeStarted: MonitorState._mode_started,
    WarmupStep: MonitorState._warmup_step,
    WarmupDone: MonitorState._warmup_done,
    PhaseChanged: MonitorState._phase_changed,
    ControllerDecision: MonitorState._decision,
    StepResult: MonitorState._step,
    LoadChanged: MonitorState._load,
    Paused: MonitorState._paused,
    Notice: MonitorState._notice,
    ModeFinished: MonitorState._mode_finished,
    RoundStarted: MonitorState._round,
    Standings: MonitorState._standings,
    RunFinished: MonitorState._run_finished,
}
