"""The sweep: modes in order, warmup, measured steps, phases, load schedule; events out.

The runner runs on whatever thread calls `run()` and is steered from any other thread with
pause/resume/cancel/toggle_load. It never reads from its subscribers: everything it knows
goes out as events (see events.py), and the results writer is an inline subscriber, so every
finished row is on disk before the next request starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halospec_tui.backends.base import Backend, Reply
from halospec_tui.backends.metrics import delta
from halospec_tui.core import evaluate as evaluate_mod
from halospec_tui.core import scenario as scenario_mod
from halospec_tui.core import verdict
from halospec_tui.core.controllers import make_controller
from halospec_tui.core.controllers.base import Controller, Observation
from halospec_tui.core.events import (
    ControllerDecision,
    EventBus,
    ModeFinished,
    ModeStarted,
    Notice,
    Paused,
    PhaseChanged,
    RunFinished,
    RunStarted,
    StepResult,
    StepRow,
    WarmupDone,
    WarmupStep,
)
from halospec_tui.core.prompts import PromptSchedule
from halospec_tui.core.stats import pick_winner, summarize_mode
from halospec_tui.profile import Profile, parse_mode


class Cancelled(Exception):
    """Raised inside the runner when a cancel request is seen at a safe point."""


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
    ) -> None:
        self.profile = profile
        self.backend = backend
        self.bus = bus
        self.prompts = scenario_mod.scenario_prompts(prompts, profile)
        self.run_dir = Path(run_dir)
        self.load = load
        self._cpu = cpu_percent or (lambda: None)
        self._running = threading.Event()
        self._running.set()
        self._cancel = threading.Event()
        self._wake = threading.Event()
        self.global_step = 0
        self.mode_summaries: list[dict[str, Any]] = []
        # what the end-of-run evaluation table needs of every finished mode's rows (slim
        # records, and only when the run has such a table: every row is in results.csv)
        self._keep_eval_rows = evaluate_mod.applies(profile.run.modes)
        self.eval_rows: list[evaluate_mod.EvalRow] = []
        self.controller_ms: dict[str, list[float]] = {}  # per mode: decide+observe ms per step
        self.summary: dict[str, Any] | None = None
        self._warned_identical = False
        self._mode = ""
        if hasattr(backend, "set_notifier"):  # backends speak through Notices too
            backend.set_notifier(self._backend_notice)

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
        abort = getattr(self.backend, "abort", None)
        if abort is not None:
            abort()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def toggle_load(self) -> bool:
        """CPU load on/off now, in any mode; returns the new state."""
        if self.load is None:
            self.bus.publish(Notice("warning", "no load injector in this session"))
            return False
        return bool(self.load.toggle())

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
        try:
            for index, mode in enumerate(modes):
                self._run_mode(index, mode, len(modes))
        except Cancelled:
            cancelled = True
        except Exception as e:  # report, keep what finished, let the caller decide
            error = f"{e.__class__.__name__}: {e}"
            self.bus.publish(Notice("error", f"run stopped by an error: {error}"))
            raise
        finally:
            if self.load is not None and self.load.on and self.load.scheduled:
                self.load.stop()
            self.summary = self._run_summary(cancelled)
            self.bus.publish(
                RunFinished(
                    run_dir=str(self.run_dir),
                    summary=self.summary,
                    cancelled=cancelled,
                    error=error,
                )
            )
        return self.summary

    def _run_summary(self, cancelled: bool) -> dict[str, Any]:
        p = self.profile
        modes = self.mode_summaries
        evaluation = evaluate_mod.evaluation_for_run(self.eval_rows, p, self.controller_ms)
        return {
            "modes": modes,
            "winner": pick_winner(modes, p.score.winner_among),
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

    def _run_mode(self, index: int, mode: str, count: int) -> None:
        p = self.profile
        controller = make_controller(mode, p)
        kind, _ = parse_mode(mode)
        steps = p.steps_for(mode)
        self.bus.publish(
            ModeStarted(
                mode=mode,
                index=index,
                count=count,
                steps=steps,
                warmup=p.run.warmup,
                controller=controller.name,
            )
        )
        self._mode = mode
        self.backend.prepare_mode(mode, controller.warmup_k if kind == "fixed" else None)
        metrics_before: dict[str, float] | None = None
        rows: list[StepRow] = []
        try:
            self._warmup(mode, controller)
            # counters from here on cover the measured steps only, not the warmup
            metrics_before = self.backend.metrics()
            self._steps(mode, controller, steps, rows)
        finally:
            if self.load is not None and self.load.on and self.load.scheduled:
                self.load.stop()
            if rows:
                self._finish_mode(mode, rows, metrics_before)

    def _warmup(self, mode: str, controller: Controller) -> None:
        p = self.profile
        n = p.run.warmup
        self.bus.publish(PhaseChanged(mode=mode, phase="warmup", step=0))
        latencies: list[float] = []
        k = controller.warmup_k
        for i in range(n):
            if i:
                self._sleep(p.run.warmup_interval_s)
            self._checkpoint()
            reply = self.backend.complete(self.prompts.prompt_for(mode, i, None), k)
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

    def _phase(self, load_seen: bool) -> str:
        if self.load is not None and self.load.on:
            return "load"
        return "recovery" if load_seen else "steady"

    def _steps(self, mode: str, controller: Controller, steps: int, rows: list[StepRow]) -> None:
        p = self.profile
        scheduled = p.load_scheduled_for(mode)
        load_seen = False
        phase = ""
        prev_k: int | None = None
        fixed = controller.name == "fixed"
        warmup = p.run.warmup
        overhead = self.controller_ms.setdefault(mode, [])
        for step in range(1, steps + 1):
            self._checkpoint()
            action = scenario_mod.load_action(p.scenario, step) if self.load is not None else None
            if action == "start" and not self.load.on:
                self.load.start(duration_s=None, scheduled=True)
            elif action == "stop" and self.load.on and self.load.scheduled:
                self.load.stop()
            if (
                scheduled
                and step == p.load.start_step
                and self.load is not None
                and not self.load.on
            ):
                self.load.start(duration_s=p.load.duration_s, scheduled=True)
            load_seen = load_seen or (self.load is not None and self.load.on)
            new_phase = self._phase(load_seen)
            if new_phase != phase:
                phase = new_phase
                self.bus.publish(PhaseChanged(mode=mode, phase=phase, step=step))
            starts = self.load.starts if self.load is not None else 0
            t_ctl = time.perf_counter()
            decision = controller.decide()
            ctl_ms = (time.perf_counter() - t_ctl) * 1000.0
            if not fixed or step == 1:
                self.bus.publish(
                    ControllerDecision(mode=mode, step=step, prev_k=prev_k, decision=decision)
                )
            k = decision.k
            prompt = self.prompts.prompt_for(mode, warmup + step - 1, step)
            reply = self.backend.complete(prompt, k)
            if not reply.interrupted:  # a stop's abandoned request tells the controller nothing
                t_ctl = time.perf_counter()
                controller.observe(Observation.of(k, reply, prompt.category))
                overhead.append(ctl_ms + (time.perf_counter() - t_ctl) * 1000.0)
            # the phase is what held while the request ran: load that was on at any time
            # since the phase was taken (even on and off again) counts as load for this row,
            # and what follows it is recovery, not steady
            load_during = self.load is not None and (self.load.on or self.load.starts != starts)
            row_phase = "load" if load_during else phase
            load_seen = load_seen or load_during
            self.global_step += 1
            row = step_row(
                global_step=self.global_step,
                step=step,
                mode=mode,
                phase=row_phase,
                k=k,
                reply=reply,
                prompt_id=prompt.id,
                category=prompt.category,
                decision=decision,
                load_on=self.load is not None and self.load.on,
                channel=self.backend.draft_channel,
                cpu=self._cpu(),
            )
            rows.append(row)
            self.bus.publish(StepResult(row=row, text=reply.text, reply_json=reply.raw))
            if reply.interrupted:  # recorded as such (error "interrupted"); the run ends here
                raise Cancelled
            if not reply.success:
                self.bus.publish(
                    Notice("warning", f"{mode} step {step} failed: {reply.error}", mode)
                )
            prev_k = k
            if step < steps:
                self._sleep(p.run.cooldown_s)

    def _finish_mode(
        self, mode: str, rows: list[StepRow], metrics_before: dict[str, float] | None
    ) -> None:
        p = self.profile
        summary = summarize_mode(mode, rows, p.score, p.score.convergence_window)
        if self._keep_eval_rows:
            self.eval_rows.extend(evaluate_mod.EvalRow.of(r) for r in rows)
        ctl = self.controller_ms.get(mode) or []
        summary["controller_ms_per_step"] = round(sum(ctl) / len(ctl), 4) if ctl else None
        metrics_delta = delta(metrics_before, self.backend.metrics())
        channel_evidence = None
        if hasattr(self.backend, "mode_evidence"):
            try:
                channel_evidence = self.backend.mode_evidence() or None
            except Exception as e:  # proof is best effort; never lose the mode over it
                channel_evidence = {"error": f"{e.__class__.__name__}: {e}"}
        summary["draft_control"] = verdict.mode_verdict(
            rows, self.backend.draft_channel, metrics_delta, channel_evidence
        )
        self.mode_summaries.append(summary)
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
        self.bus.publish(
            ModeFinished(mode=mode, summary=summary, run_summary=self._run_summary(cancelled=False))
        )


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
) -> StepRow:
    """One results row (results.csv) for one step: the runner's and the evaluation's."""
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
        ttft_ms=reply.ttft_ms if ok else None,
        itl_p50_ms=reply.itl_p50_ms if ok else None,
        itl_p95_ms=reply.itl_p95_ms if ok else None,
    )


def _r(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)
