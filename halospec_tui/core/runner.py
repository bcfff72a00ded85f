"""The sweep: modes in rounds (core/schedule.py), warmup, measured steps, phases, load, the
recommendation as it stands; events out.

The runner runs on whatever thread calls `run()` and is steered from any other thread with
pause/resume/cancel/toggle_load/decide. It never reads from its subscribers: everything it knows
goes out as events (see events.py), and the results writer is an inline subscriber, so every
finished row is on disk before the next request starts.

Order. `run.order` (auto: from the draft channel) decides when each mode's steps run:
interleaved rounds of one step per mode, blocks of steps per mode per round, or HaloSpec's
sequential order. Each mode keeps its own controller, step count, phase and rows whatever the
order, so a mode's rows read the same in every order (`step` is the mode's own step number;
the `round` column says which round a row belongs to).

Conditions. Every row records the foreign CPU that ran during it (core/load.ForeignCpu) and
whether it is contaminated: foreign CPU over `run.foreign_cpu_limit`, or CPU load in a mode the
load schedule does not cover (the `l` key, or HALOSPEC_LOAD's load meeting a fixed mode's steps
in an interleaved round). Contaminated rows and rows of a scheduled load phase are left out of
the recommendation (core/recommendation.py), which is published after every round as a
`Standings` event; with `run.until = "decided"` it also decides when to stop and which modes
drop out of later rounds.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halospec_tui import modes
from halospec_tui.backends.base import Backend, Reply
from halospec_tui.backends.metrics import delta
from halospec_tui.controllers.base import Controller, Observation
from halospec_tui.controllers.registry import make_controller
from halospec_tui.core import scenario as scenario_mod
from halospec_tui.core import verdict
from halospec_tui.core.evaluation import metrics as eval_metrics
from halospec_tui.core.events import (
    ControllerDecision,
    EventBus,
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
    StepRow,
    WarmupDone,
    WarmupStep,
)
from halospec_tui.core.recommendation import (
    Recommendation,
    attach_standings,
    ranking_refusal,
    recommend_from_rows,
    with_apply,
)
from halospec_tui.core.scenario import PromptSchedule
from halospec_tui.core.schedule import planned_rounds, resolve_order, round_plan
from halospec_tui.core.stats import summarize_mode
from halospec_tui.profile import Profile

LIVE_REPLICATES = 400  # bootstrap replicates for the standings shown while the run goes on
FINAL_REPLICATES = 2000
STANDINGS_EVERY = 20  # live standings after each of the first 20 rounds, then every n/20th


class Cancelled(Exception):
    """Raised inside the runner when a cancel request is seen at a safe point."""


class Background:
    """One job at a time on a thread of its own; a job submitted while another waits replaces
    it (only the latest standings matter). The live standings are computed here, so the
    sweep's thread goes straight on to the next request."""

    def __init__(self, fn: Callable[[Any], None], name: str) -> None:
        self._fn, self._name = fn, name
        self._cv = threading.Condition()
        self._job: Any = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, job: Any) -> None:
        with self._cv:
            if self._closed:
                return
            self._job = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._closed:
                    self._cv.wait()
                if self._job is None:
                    return
                job, self._job = self._job, None
            try:
                self._fn(job)
            except Exception:  # standings are a view: never take the run down
                traceback.print_exc()

    def close(self, timeout: float = 10.0) -> None:
        """Drop what waits, let the job in hand finish (so nothing lands after this)."""
        with self._cv:
            self._closed = True
            self._job = None
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)


@dataclass
class ModeRun:
    """One mode's state across the rounds: its controller, steps, phase and rows."""

    mode: str
    index: int
    controller: Controller
    steps: int  # steps planned (in a decided run: at least these, more while undecided)
    done: int = 0
    rows: list[StepRow] = field(default_factory=list)
    prev_k: int | None = None
    phase: str = ""
    load_seen: bool = False
    warmed: bool = False
    started: bool = False
    finished: bool = False
    eliminated: bool = False
    dropped_round: int = 0
    metrics_delta: dict[str, float] | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fixed(self) -> bool:
        return self.controller.name == modes.FIXED

    @property
    def left(self) -> int:
        return 0 if self.finished or self.eliminated else max(0, self.steps - self.done)


class Runner:
    def __init__(
        self,
        profile: Profile,
        backend: Backend,
        bus: EventBus,
        *,
        prompts: PromptSchedule,
        run_dir: Path,
        load: Any = None,  # LoadInjector (duck-typed: on, scheduled, start, stop, toggle)
        cpu_percent: Callable[[], float | None] | None = None,
        foreign_cpu: Callable[[float], float | None] | None = None,
    ) -> None:
        self.profile = profile
        self.backend = backend
        self.bus = bus
        self.prompts = scenario_mod.scenario_prompts(prompts, profile)
        self.run_dir = Path(run_dir)
        self.load = load
        self._cpu = cpu_percent or (lambda: None)
        self._foreign = foreign_cpu or (lambda since: None)
        self._running = threading.Event()
        self._running.set()
        self._cancel = threading.Event()
        self._wake = threading.Event()
        self._until = profile.run.until
        self.order = resolve_order(profile.run.order, backend.draft_channel)
        self.global_step = 0
        self.round = 0
        self.mode_summaries: list[dict[str, Any]] = []
        # what the end-of-run evaluation table needs of every finished mode's rows (slim
        # records, and only when the run has such a table: every row is in results.csv)
        self._keep_eval_rows = eval_metrics.applies(profile.run.modes)
        self.eval_rows: list[eval_metrics.EvalRow] = []
        self.controller_ms: dict[str, list[float]] = {}  # per mode: decide+observe ms per step
        self.summary: dict[str, Any] | None = None
        self.recommendation: Recommendation | None = None
        self._warned_identical = False
        self._mode = ""
        self._runs: list[ModeRun] = []
        self._best_tie = (10**9, 0)  # smallest tie set seen, and the round it was first seen
        self._live = Background(self._publish_standings, "standings")
        backend.set_notifier(self._backend_notice)  # backends speak through Notices too

    def _backend_notice(self, level: str, text: str) -> None:
        self.bus.publish(Notice(level, text, self._mode))

    # --- commands (any thread) -----------------------------------------------------------
    def pause(self) -> None:
        if self._running.is_set():
            self._running.clear()
            self.bus.publish(Paused(True))

    def resume(self) -> None:
        if not self._running.is_set():
            self._running.set()
            self._wake.set()
            self.bus.publish(Paused(False))

    def toggle_pause(self) -> bool:
        """Returns True when now paused."""
        if self._running.is_set():
            self.pause()
            return True
        self.resume()
        return False

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def cancel(self) -> None:
        """Stop the run (any thread): the request in flight is abandoned at once (the
        backend's abort hook shuts its connection) and recorded as an interrupted row."""
        self._cancel.set()
        self._running.set()
        self._wake.set()
        self.backend.abort()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def toggle_load(self) -> bool:
        """CPU load on/off now, in any mode; returns the new state."""
        if self.load is None:
            self.bus.publish(Notice("warning", "no load injector in this session"))
            return False
        return bool(self.load.toggle())

    @property
    def until(self) -> str:
        return self._until

    def decide(self) -> bool:
        """Switch to `until = "decided"` (the monitor's key): go on past the planned steps
        until the recommendation is decided. Returns False when the order cannot (sequential)."""
        if self.order == "sequential":
            self.bus.publish(
                Notice("warning", "until decided needs rounds: this run's order is sequential")
            )
            return False
        if self._until != "decided":
            self._until = "decided"
            self.bus.publish(
                Notice(
                    "info",
                    f"until decided: rounds go on (up to {self.profile.run.max_rounds}) until "
                    "the recommendation is separated or the tie set stops shrinking",
                )
            )
        return True

    # --- waiting that cancel and pause can interrupt ---------------------------------------
    def _checkpoint(self) -> None:
        if self._cancel.is_set():
            raise Cancelled
        if not self._running.is_set():
            while not self._running.wait(0.1):
                pass
            if self._cancel.is_set():
                raise Cancelled

    def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            self._checkpoint()
            return
        if self._cancel.wait(seconds):
            raise Cancelled

    # --- the sweep ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        p = self.profile
        modes = list(p.run.modes)
        self._runs = [
            ModeRun(m, i, make_controller(m, p.controller), p.steps_for(m))
            for i, m in enumerate(modes)
        ]
        self.bus.publish(
            RunStarted(
                run_dir=str(self.run_dir),
                profile=p.name,
                backend=self.backend.kind,
                draft_channel=self.backend.draft_channel,
                model=self.backend.model,
                modes=tuple(modes),
                total_steps=p.total_steps(),
                settings={
                    "warmup": p.run.warmup,
                    "cooldown_s": p.run.cooldown_s,
                    "load_scheduled": p.load.scheduled,
                    "load_start_step": p.load.start_step,
                    "load_duration_s": p.load.duration_s,
                    "url": self.backend.url,
                    "scenario": scenario_mod.describe(p.scenario)
                    if scenario_mod.active(p.scenario)
                    else None,
                    "order": self.order,
                    "until": self._until,
                    "rounds": self._planned_rounds(),
                    "metric": p.run.metric,
                },
            )
        )
        if self.backend.draft_channel == "none":
            self.bus.publish(
                Notice(
                    "warning",
                    f"draft channel none: {self.backend.kind} keeps the draft length it was "
                    "started with; the harness cannot set k, so a mode counts as applied only "
                    "if the server's counters happen to match its k",
                )
            )
        cancelled = False
        error = ""
        run_metrics: dict[str, float] | None = None
        try:
            if self.order == "sequential":
                for mr in self._runs:
                    self._run_sequential(mr, len(modes))
            else:
                if self.order == "interleaved":
                    for mr in self._runs:
                        self._enter(mr, warmup=p.run.warmup)
                    # counters over the measured rounds; per-mode deltas do not exist when
                    # every round switches mode, so each mode is judged on its replies' own
                    # counters, with the run's /metrics as the server's word on all of them
                    run_metrics = self.backend.metrics()
                self._run_rounds(run_metrics)
        except Cancelled:
            cancelled = True
        except Exception as e:  # report, keep what finished, let the caller decide
            error = f"{e.__class__.__name__}: {e}"
            self.bus.publish(Notice("error", f"run stopped by an error: {error}"))
            raise
        finally:
            if self.load is not None and self.load.on and self.load.scheduled:
                self.load.stop()
            self._live.close()  # no live standings may land after the final ones
            try:
                self._finish_open_modes(run_metrics)
            finally:
                self.summary = self._run_summary(cancelled, final=True)
                self.bus.publish(
                    RunFinished(
                        run_dir=str(self.run_dir),
                        summary=self.summary,
                        cancelled=cancelled,
                        error=error,
                    )
                )
        return self.summary

    def _planned_rounds(self) -> int:
        return planned_rounds(
            self.order, [mr.steps for mr in self._runs], self.profile.run.block_steps
        )

    # --- orders -------------------------------------------------------------------------------
    def _run_sequential(self, mr: ModeRun, count: int) -> None:
        """HaloSpec's order: warmup, the mode's steps, its verdict; then the next mode."""
        self.round = 1
        before = None
        try:
            self._enter(mr, warmup=self.profile.run.warmup)
            # counters from here on cover the measured steps only, not the warmup
            before = self.backend.metrics()
            for _ in range(mr.steps):
                self._step(mr, last=mr.done + 1 == mr.steps)
        finally:
            self._stop_scheduled_load()
            if mr.rows:
                mr.metrics_delta = delta(before, self.backend.metrics())
                self._collect_evidence(mr)
                self._finish_mode(mr)

    def _run_rounds(self, run_metrics: dict[str, float] | None) -> None:
        """Interleaved or blocks: rounds until every mode has its steps (or, until decided,
        until the recommendation is decided); modes finish as their steps run out."""
        p = self.profile
        while True:
            remaining = {mr.mode: mr.left for mr in self._runs}
            if not any(remaining.values()):
                if not self._extend():
                    return
                remaining = {mr.mode: mr.left for mr in self._runs}
            self.round += 1
            plan = round_plan(
                self.order, self.round, remaining, seed=p.run.seed, block_steps=p.run.block_steps
            )
            self.bus.publish(
                RoundStarted(
                    round=self.round,
                    modes=tuple(s.mode for s in plan),
                    planned=max(self._planned_rounds(), self.round),
                )
            )
            by_name = {mr.mode: mr for mr in self._runs}
            for stint in plan:
                mr = by_name[stint.mode]
                before = None
                if self.order == "blocks":
                    # a switch reloads or restarts the server: warm it up again (the whole
                    # warmup the first time, one request after that) and bracket the block's
                    # counters so each mode gets its own /metrics delta
                    self._enter(mr, warmup=p.run.warmup if not mr.warmed else min(1, p.run.warmup))
                    before = self.backend.metrics()
                for i in range(stint.steps):
                    self._step(mr, last=i == stint.steps - 1 and self.order == "blocks")
                if self.order == "blocks":
                    after = self.backend.metrics()
                    mr.metrics_delta = _add(mr.metrics_delta, delta(before, after))
                    self._collect_evidence(mr)
                    self._stop_scheduled_load()
                if mr.left == 0 and self._until == "steps" and self.order == "blocks":
                    self._finish(mr, run_metrics)
            self._after_round(run_metrics)

    def _early_verdicts(self) -> None:
        """Interleaved modes are judged at the end; a server that ignores k shows in the first
        rounds already, so say it then (once), while the user can still stop the run."""
        if self._warned_identical or self.order != "interleaved":
            return
        provisional = [
            {
                "mode": mr.mode,
                "draft_control": verdict.mode_verdict(mr.rows, self.backend.draft_channel),
            }
            for mr in self._runs
            if mr.rows and mr.fixed
        ]
        pairs = verdict.identical_pairs(provisional)
        if not pairs:
            return
        self._warned_identical = True
        a, b, obs = pairs[0]
        self.bus.publish(
            Notice(
                "warning",
                f"DRAFT LENGTH NOT APPLIED: {a} and {b} asked for different draft lengths but "
                f"the server drafted the same (~{obs:g} per step). The server behind "
                f"{self.backend.kind} ignores the {self.backend.draft_channel} channel: these "
                "modes will not be ranked (stop with q / Ctrl+C, or use a channel the server "
                "honours: llamacpp-managed pool, Lemonade reload; docs/servers.md)",
            )
        )

    def _after_round(self, run_metrics: dict[str, float] | None) -> None:
        """Standings after a round; in a decided run, drop clearly worse modes."""
        if self.round == 3:
            self._early_verdicts()
        if self._until != "decided":
            # by round count, not by time: the same run shows the same standings at the same
            # point; computed off the sweep's thread, from a copy of the rows so far
            every = max(1, -(-self.round // STANDINGS_EVERY))
            if self.round % every == 0:
                self._live.submit((self.round, self._snapshot()))
            return
        rec = self._recommend(LIVE_REPLICATES)  # a decided run needs the answer now
        if rec is None:
            return
        self.bus.publish(Standings(round=self.round, recommendation=rec.as_dict()))
        if not self._minimums_done():
            return
        for name in rec.eliminate:
            mr = self._run_of(name)
            if mr is not None and not mr.finished and not mr.eliminated:
                mr.eliminated = True
                mr.dropped_round = self.round
                self.bus.publish(
                    Notice(
                        "info",
                        f"{name} drops out after round {self.round}: clearly "
                        f"{'slower' if self.profile.run.metric == 'tokens_per_s' else 'worse'} than "
                        f"{rec.mode} (99 % sure, after comparing every mode)",
                        name,
                    )
                )
                if self.order != "interleaved":  # interleaved modes are judged at the end
                    self._finish(mr, run_metrics)
        if len(rec.tied) < self._best_tie[0]:
            self._best_tie = (len(rec.tied), self.round)

    def _minimums_done(self) -> bool:
        return all(mr.done >= mr.steps or mr.finished for mr in self._runs)

    def _extend(self) -> bool:
        """Until decided: give every mode still in the race more steps, or say we are done."""
        if self._until != "decided":
            return False
        p = self.profile
        active = [mr for mr in self._runs if not mr.finished and not mr.eliminated]
        if not active or self.round >= p.run.max_rounds:
            if active:
                self.bus.publish(
                    Notice(
                        "info", f"until decided: the budget of {p.run.max_rounds} rounds is spent"
                    )
                )
            return False
        rec = self._recommend(LIVE_REPLICATES)
        if rec is None or rec.mode is None:
            return self.round < p.run.max_rounds and self._add_steps(active)
        if rec.decided or len(active) <= 1:
            self.bus.publish(Notice("info", f"decided after {self.round} rounds: {rec.reason}"))
            return False
        since, best_round = self._best_tie[0], self._best_tie[1]
        stalled = self.round >= 10 and self.round - best_round >= max(10, self.round // 2)
        if stalled and since <= len(rec.tied):
            self.bus.publish(
                Notice(
                    "info",
                    f"the tie set stopped shrinking ({len(rec.tied)} modes since round "
                    f"{best_round}): stopping after {self.round} rounds: {rec.reason}",
                )
            )
            return False
        return self._add_steps(active)

    def _add_steps(self, active: list[ModeRun]) -> bool:
        per = 1 if self.order == "interleaved" else max(1, self.profile.run.block_steps)
        for mr in active:
            mr.steps = mr.done + per
        return True

    def _run_of(self, mode: str) -> ModeRun | None:
        return next((mr for mr in self._runs if mr.mode == mode), None)

    # --- entering a mode: the backend's k, warmup ----------------------------------------------
    def _enter(self, mr: ModeRun, *, warmup: int) -> None:
        """prepare_mode (reload / restart / pool server for the mode's k) and the warmup."""
        p = self.profile
        if not mr.started:
            mr.started = True
            self.bus.publish(
                ModeStarted(
                    mode=mr.mode,
                    index=mr.index,
                    count=len(self._runs),
                    steps=mr.steps,
                    warmup=p.run.warmup,
                    controller=mr.controller.name,
                )
            )
        self._mode = mr.mode
        kind, _ = modes.parse(mr.mode)
        self.backend.prepare_mode(mr.mode, mr.controller.warmup_k if kind == modes.FIXED else None)
        if not mr.warmed:
            self._warmup(mr, warmup)
            mr.warmed = True
        else:
            for i in range(warmup):  # re-warm after a switch: not logged, not calibrated
                self._checkpoint()
                self.backend.complete(
                    self.prompts.prompt_for(mr.mode, i, None),
                    mr.prev_k or mr.controller.warmup_k,
                    sequence=mr.mode,
                )

    def _warmup(self, mr: ModeRun, n: int) -> None:
        p = self.profile
        mode, controller = mr.mode, mr.controller
        self.bus.publish(PhaseChanged(mode=mode, phase="warmup", step=0))
        latencies: list[float] = []
        k = controller.warmup_k
        for i in range(n):
            if i:
                self._sleep(p.run.warmup_interval_s)
            self._checkpoint()
            reply = self.backend.complete(self.prompts.prompt_for(mode, i, None), k, sequence=mode)
            if reply.interrupted:
                raise Cancelled
            if reply.success:
                latencies.append(reply.latency_ms)
            self.bus.publish(
                WarmupStep(
                    mode=mode,
                    i=i + 1,
                    n=n,
                    k=k,
                    success=reply.success,
                    latency_ms=reply.latency_ms,
                    error=reply.error,
                )
            )
        thresholds = controller.calibrate(latencies)
        note = "" if latencies or n == 0 else "no successful warmup request: default thresholds"
        self.bus.publish(
            WarmupDone(mode=mode, latencies_ms=tuple(latencies), thresholds=thresholds, note=note)
        )
        if n:
            self._sleep(p.run.cooldown_s)

    # --- one measured step --------------------------------------------------------------------
    def _load_for(self, mr: ModeRun, step: int) -> None:
        """The load schedules at the mode's step: the scenario's (by step, every mode) and
        HaloSpec's (at load.start_step of the modes it names, for load.duration_s)."""
        p = self.profile
        if self.load is None:
            return
        action = scenario_mod.load_action(p.scenario, step)
        if action == "start" and not self.load.on:
            self.load.start(duration_s=None, scheduled=True)
        elif action == "stop" and self.load.on and self.load.scheduled:
            self.load.stop()
        if p.load_scheduled_for(mr.mode) and step == p.load.start_step and not self.load.on:
            self.load.start(duration_s=p.load.duration_s, scheduled=True)

    def _stop_scheduled_load(self) -> None:
        """HaloSpec's load belongs to the mode it started in: it ends with the mode's stint
        (sequential and blocks; interleaved rounds let it run its duration)."""
        if (
            self.load is not None
            and self.load.on
            and self.load.scheduled
            and not scenario_mod.has_load(self.profile.scenario)
        ):
            self.load.stop()

    def _covered(self, mode: str) -> bool:
        """Whether a load schedule covers this mode (its load rows are the experiment)."""
        return scenario_mod.has_load(self.profile.scenario) or self.profile.load_scheduled_for(mode)

    def _phase(self, mr: ModeRun) -> str:
        if self.load is not None and self.load.on:
            return "load"
        return "recovery" if mr.load_seen else "steady"

    def _step(self, mr: ModeRun, *, last: bool) -> None:
        p = self.profile
        self._checkpoint()
        self._mode = mr.mode
        step = mr.done + 1
        self._load_for(mr, step)
        load_on = self.load is not None and self.load.on
        mr.load_seen = mr.load_seen or load_on
        new_phase = self._phase(mr)
        if new_phase != mr.phase:
            mr.phase = new_phase
            self.bus.publish(PhaseChanged(mode=mr.mode, phase=new_phase, step=step))
        starts = self.load.starts if self.load is not None else 0
        scheduled_before = bool(self.load is not None and self.load.on and self.load.scheduled)
        controller = mr.controller
        t_ctl = time.perf_counter()
        decision = controller.decide()
        ctl_ms = (time.perf_counter() - t_ctl) * 1000.0
        if not mr.fixed or step == 1:
            self.bus.publish(
                ControllerDecision(mode=mr.mode, step=step, prev_k=mr.prev_k, decision=decision)
            )
        k = decision.k
        prompt = self.prompts.prompt_for(mr.mode, p.run.warmup + step - 1, step)
        t_start = time.monotonic()
        reply = self.backend.complete(prompt, k, sequence=mr.mode)
        foreign = self._foreign(t_start)
        if not reply.interrupted:  # a stop's abandoned request tells the controller nothing
            t_ctl = time.perf_counter()
            controller.observe(Observation.of(k, reply, prompt.category))
            self.controller_ms.setdefault(mr.mode, []).append(
                ctl_ms + (time.perf_counter() - t_ctl) * 1000.0
            )
        # the phase is what held while the request ran: load that was on at any time since
        # the phase was taken (even on and off again) counts as load for this row, and what
        # follows it is recovery, not steady
        load_during = load_on or (
            self.load is not None and (self.load.on or self.load.starts != starts)
        )
        row_phase = "load" if load_during else mr.phase
        mr.load_seen = mr.load_seen or load_during
        scheduled = scheduled_before or bool(
            self.load is not None and self.load.on and self.load.scheduled
        )
        self.global_step += 1
        mr.done = step
        row = step_row(
            global_step=self.global_step,
            step=step,
            mode=mr.mode,
            phase=row_phase,
            k=k,
            reply=reply,
            prompt_id=prompt.id,
            category=prompt.category,
            decision=decision,
            load_on=self.load is not None and self.load.on,
            channel=self.backend.draft_channel,
            cpu=self._cpu(),
            round_no=self.round,
            foreign_cpu=foreign,
            contaminated=self._contamination(mr.mode, load_during, scheduled, foreign),
        )
        mr.rows.append(row)
        self.bus.publish(StepResult(row=row, text=reply.text, reply_json=reply.raw))
        if reply.interrupted:  # recorded as such (error "interrupted"); the run ends here
            raise Cancelled
        if not reply.success:
            self.bus.publish(
                Notice("warning", f"{mr.mode} step {step} failed: {reply.error}", mr.mode)
            )
        mr.prev_k = k
        if not last and (self.order != "sequential" or step < mr.steps):
            self._sleep(p.run.cooldown_s)

    def _contamination(
        self, mode: str, load_during: bool, scheduled: bool, foreign: float | None
    ) -> str:
        limit = self.profile.run.foreign_cpu_limit
        if limit > 0 and foreign is not None and foreign > limit:
            return f"foreign CPU {foreign:.0f} %"
        if load_during and not scheduled:
            return "load switched on by hand"
        if load_during and not self._covered(mode):
            return "load not scheduled for this mode"
        return ""

    # --- finishing modes ------------------------------------------------------------------------
    def _finish(self, mr: ModeRun, run_metrics: dict[str, float] | None) -> None:
        """A blocks-order mode that ran its last block (or dropped out): its summary and
        verdict now, with its own blocks' counters. Interleaved modes share the server's
        counters and are all judged together at the end (`_finish_open_modes`)."""
        if not mr.finished:
            self._finish_mode(mr)

    def _interleaved_evidence(
        self, runs: list[ModeRun], run_metrics: dict[str, float] | None
    ) -> None:
        """When every round switches mode there is no per-mode /metrics delta: the server's
        counters over the measured rounds (read once) and the channel's proof serve every mode,
        beside each reply's own counters."""
        end = self.backend.metrics() if run_metrics is not None else None
        run_delta = delta(run_metrics, end) if run_metrics is not None else None
        probe = ModeRun("", -1, runs[0].controller, 0)
        self._collect_evidence(probe)
        for mr in runs:
            if mr.metrics_delta is None:
                mr.metrics_delta = run_delta
            if not mr.evidence:
                mr.evidence = list(probe.evidence)

    def _finish_open_modes(self, run_metrics: dict[str, float] | None) -> None:
        open_runs = [mr for mr in self._runs if not mr.finished and mr.rows]
        if self.order == "interleaved" and open_runs:
            self._interleaved_evidence(open_runs, run_metrics)
        for mr in open_runs:
            self._finish_mode(mr)

    def _collect_evidence(self, mr: ModeRun) -> None:
        try:
            ev = self.backend.mode_evidence() or None
        except Exception as e:  # proof is best effort; never lose the mode over it
            ev = {"error": f"{e.__class__.__name__}: {e}"}
        if ev:
            mr.evidence.append(ev)

    @staticmethod
    def _merged_evidence(mr: ModeRun) -> dict[str, Any] | None:
        """One block's proof, or the first that failed when several blocks had their own."""
        if not mr.evidence:
            return None
        bad = [e for e in mr.evidence if e.get("confirmed") is False]
        merged = dict(bad[0] if bad else mr.evidence[-1])
        if len(mr.evidence) > 1:
            merged["blocks"] = len(mr.evidence)
        return merged

    def _finish_mode(self, mr: ModeRun) -> None:
        p = self.profile
        mr.finished = True
        mode, rows = mr.mode, mr.rows
        summary = summarize_mode(mode, rows, p.score, p.score.convergence_window)
        if self._keep_eval_rows:
            self.eval_rows.extend(eval_metrics.EvalRow.of(r) for r in rows)
        ctl = self.controller_ms.get(mode) or []
        summary["controller_ms_per_step"] = round(sum(ctl) / len(ctl), 4) if ctl else None
        summary["contaminated_steps"] = sum(1 for r in rows if r.contaminated)
        if mr.eliminated:
            summary["eliminated_after_round"] = mr.dropped_round
        summary["draft_control"] = verdict.mode_verdict(
            rows, self.backend.draft_channel, mr.metrics_delta, self._merged_evidence(mr)
        )
        if self.order == "interleaved" and mr.metrics_delta is not None:
            summary["draft_control"]["evidence"]["metrics_scope"] = "whole run (interleaved)"
        self.mode_summaries.append(summary)
        self._verdict_notices(mode, summary)
        self.bus.publish(
            ModeFinished(mode=mode, summary=summary, run_summary=self._run_summary(cancelled=False))
        )

    def _verdict_notices(self, mode: str, summary: dict[str, Any]) -> None:
        p = self.profile
        changed = verdict.cross_check(self.mode_summaries)
        pairs = verdict.identical_pairs(self.mode_summaries)
        loud = bool(pairs) and not self._warned_identical
        dc = summary["draft_control"]
        if not loud:
            by_name = {m["mode"]: m for m in self.mode_summaries}
            redo = [m for m in changed if m != mode]
            if dc["verdict"] == "not_applied":
                redo.append(mode)
            for name in redo:
                note = by_name[name]["draft_control"]["evidence"].get("note", "")
                self.bus.publish(
                    Notice(
                        "warning",
                        f"{name}: draft length NOT applied ({self.backend.draft_channel} "
                        f"channel) — {note}; not ranked",
                        mode,
                    )
                )
        if loud:
            self._warned_identical = True
            a, b, obs = pairs[0]
            left = len(p.run.modes) - len(self.mode_summaries)
            self.bus.publish(
                Notice(
                    "warning",
                    f"DRAFT LENGTH NOT APPLIED: {a} and {b} asked for different draft lengths "
                    f"but the server drafted the same (~{obs:g} per step). The server behind "
                    f"{self.backend.kind} ignores the {self.backend.draft_channel} channel: these "
                    "modes are not ranked"
                    + (
                        f", and the {left} modes still to run will measure the same "
                        "configuration (stop with q / Ctrl+C, or use a channel the server "
                        "honours: llamacpp-managed pool, Lemonade reload; docs/servers.md)"
                        if left
                        else ""
                    ),
                    mode,
                )
            )

    # --- the recommendation -----------------------------------------------------------------
    def _snapshot(self) -> tuple[dict[str, list[StepRow]], dict[str, dict[str, Any]]]:
        """Every mode's rows so far (copies of the lists) and the verdicts already given."""
        rows = {mr.mode: list(mr.rows) for mr in self._runs if mr.rows}
        done = {m["mode"]: m["draft_control"] for m in self.mode_summaries if "draft_control" in m}
        return rows, done

    def _publish_standings(self, job: tuple[int, Any]) -> None:
        round_no, snapshot = job
        rec = self._recommend(LIVE_REPLICATES, snapshot)
        if rec is not None:
            self.bus.publish(Standings(round=round_no, recommendation=rec.as_dict()))

    def _recommend(self, replicates: int, snapshot: Any = None) -> Recommendation | None:
        """The recommendation from every mode's clean rows so far; verdicts of modes still
        running are provisional (from their rows), and only `applied` modes are ranked."""
        p = self.profile
        rows, done = snapshot if snapshot is not None else self._snapshot()
        if not rows:
            return None
        not_ranked: dict[str, str] = {}
        verdicts: dict[str, str] = {}
        for mode, mode_rows in rows.items():
            dc = done.get(mode) or verdict.mode_verdict(mode_rows, self.backend.draft_channel)
            verdicts[mode] = str(dc.get("verdict", ""))
            why = ranking_refusal(dc, p.score.winner_among)
            if why:
                not_ranked[mode] = why
        rec = recommend_from_rows(
            rows,
            profile=p,
            not_ranked=not_ranked,
            paired=self.order != "sequential",
            replicates=replicates,
        )
        rec.verdicts = verdicts
        return rec

    def _run_summary(self, cancelled: bool, *, final: bool = False) -> dict[str, Any]:
        p = self.profile
        place = {m: i for i, m in enumerate(p.run.modes)}
        # the profile's order, whatever order the modes finished in
        self.mode_summaries.sort(key=lambda m: place.get(m["mode"], len(place)))
        modes = self.mode_summaries
        if final:
            rec = self._recommend(FINAL_REPLICATES)
            self.recommendation = rec
            if rec is not None:
                rec_dict = with_apply(rec.as_dict(), self.backend.kind, p)
                attach_standings(modes, rec_dict)
                self.bus.publish(Standings(round=self.round, recommendation=rec_dict, final=True))
            else:
                rec_dict = None
        else:
            rec_dict = (self.summary or {}).get("recommendation")
        self.eval_rows.sort(key=lambda r: (place.get(r.mode, len(place)), r.step))
        evaluation = eval_metrics.evaluation_for_run(self.eval_rows, p, self.controller_ms)
        return {
            "modes": modes,
            "winner": rec_dict.get("mode") if rec_dict else None,
            "recommendation": rec_dict,
            "metric": p.run.metric,
            "order": self.order,
            "until": self._until,
            "rounds": self.round,
            "profile": p.name,
            "backend": self.backend.kind,
            "draft_channel": self.backend.draft_channel,
            "model": self.backend.model,
            "url": self.backend.url,
            "run_dir": str(self.run_dir),
            "cancelled": cancelled,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **({"evaluation": evaluation} if evaluation is not None else {}),
        }


def _add(a: dict[str, float] | None, b: dict[str, float] | None) -> dict[str, float] | None:
    if a is None:
        return b
    if b is None:
        return a
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in set(a) | set(b)}


def step_row(
    *,
    global_step: int,
    step: int,
    mode: str,
    phase: str,
    k: int,
    reply: Reply,
    prompt_id: str,
    category: str,
    decision: Any,
    load_on: bool,
    channel: str,
    cpu: float | None,
    round_no: int = 0,
    foreign_cpu: float | None = None,
    contaminated: str = "",
) -> StepRow:
    """One results row (results.csv) for one step."""
    v = decision.values
    ok = reply.success
    tps = reply.tokens / (reply.latency_ms / 1000.0) if ok and reply.latency_ms > 0 else None
    return StepRow(
        global_step=global_step,
        step=step,
        mode=mode,
        phase=phase,
        draft_length=k,
        success=int(ok),
        latency_ms=round(reply.latency_ms, 3) if ok else 0.0,
        tokens=reply.tokens if ok else 0,
        timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
        prompt_id=prompt_id,
        category=category,
        draft_n=reply.draft_n,
        draft_n_accepted=reply.draft_n_accepted,
        acceptance=_r(reply.acceptance, 4),
        observed_k=_r(reply.observed_k, 3),
        prompt_n=reply.prompt_n,
        prompt_ms=reply.prompt_ms,
        predicted_n=reply.predicted_n,
        predicted_ms=reply.predicted_ms,
        server_ms=_r(reply.server_ms, 3),
        tokens_per_s=_r(tps, 3),
        cpu_percent=cpu,
        load_on=int(load_on),
        attempts=reply.attempts,
        ema_ms=_r(v.get("ema_ms"), 3),
        low_thr_ms=_r(v.get("low_thr_ms"), 3),
        high_thr_ms=_r(v.get("high_thr_ms"), 3),
        controller_reason=decision.reason,
        draft_channel=channel,
        error=reply.error,
        round=round_no,
        foreign_cpu=foreign_cpu,
        contaminated=contaminated,
        ttft_ms=reply.ttft_ms if ok else None,
        itl_p50_ms=reply.itl_p50_ms if ok else None,
        itl_p95_ms=reply.itl_p95_ms if ok else None,
    )


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)
