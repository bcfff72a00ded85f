"""evaluate: every fixed k and every controller on one seeded scenario, N runs, their medians.

`run_evaluation` runs a profile N times (seed, seed+1, ...) with every fixed k of
``scenario.fixed_k`` and every adaptive mode of ``run.modes``, each run a normal run folder,
and writes evaluation.json with the per-run tables (core/evaluation/metrics.py) and their
medians (`aggregate`). On the embedded engine the modes of a run are interleaved step by step
(`run_interleaved`); elsewhere they run one after another through a Session, with a fresh
engine per mode (`FreshBackend`) when the scenario asks for one.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from halospec_tui import modes as modes_mod
from halospec_tui.backends.base import Backend, Reply
from halospec_tui.backends.embedded.launcher import EmbeddedServer
from halospec_tui.backends.embedded_backend import EmbeddedBackend
from halospec_tui.backends.factory import make_backend
from halospec_tui.controllers.base import Observation
from halospec_tui.controllers.registry import NEW_CONTROLLERS, make_controller
from halospec_tui.core import scenario as scenario_mod
from halospec_tui.core.evaluation.metrics import evaluation_for_run
from halospec_tui.core.evaluation.text import k_tracking_plots
from halospec_tui.core.events import StepResult, StepRow
from halospec_tui.core.load import CpuSampler, LoadInjector
from halospec_tui.core.results import ResultsWriter, write_json
from halospec_tui.core.runner import step_row
from halospec_tui.core.scenario import PromptSchedule
from halospec_tui.core.stats import pick_winner, summarize_mode
from halospec_tui.profile import Profile, ProfileError, load_prompts
from halospec_tui.prompts import Prompt
from halospec_tui.session import Session

# --- several runs ----------------------------------------------------------------------------


def _median_tree(trees: list[Any]) -> Any:
    """Element-wise median of same-shaped JSON trees (numbers: median of those present;
    strings: the most common; lists of one length, such as the segments: element by element;
    lists of different lengths: the first tree's)."""
    present = [t for t in trees if t is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for t in present if isinstance(t, dict) for k in t))
        return {k: _median_tree([t.get(k) for t in present if isinstance(t, dict)]) for k in keys}
    if isinstance(first, list):
        if all(isinstance(t, list) and len(t) == len(first) for t in present):
            return [_median_tree([t[i] for t in present]) for i in range(len(first))]
        return first
    if isinstance(first, bool | str):
        return Counter(present).most_common(1)[0][0]
    if isinstance(first, int | float):
        nums = [float(t) for t in present if isinstance(t, int | float)]
        med = statistics.median(nums)
        return (
            int(med)
            if all(isinstance(t, int) for t in present) and med.is_integer()
            else round(med, 4)
        )
    return first


def aggregate(evals: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Medians over runs of every number in the evaluation (ratios: median of the per-run
    ratios); the k tracks and the oracle choices of each run are kept as lists."""
    med = _median_tree([{k: v for k, v in e.items() if k != "k_tracks"} for e in evals])
    med["runs"] = len(evals)
    med["seeds"] = seeds
    med["k_tracks"] = evals[0].get("k_tracks", {}) if evals else {}
    med["oracle_per_run"] = [
        {s["name"]: (s.get("oracle") or {}).get("mode") for s in e.get("segments", [])}
        for e in evals
    ]
    med["best_fixed_per_run"] = [
        ((e.get("overall") or {}).get("best_fixed") or {}).get("mode") for e in evals
    ]
    return med


def evaluation_profile(profile: Profile) -> Profile:
    """The profile evaluate runs: every fixed k of scenario.fixed_k, then the adaptive modes
    of run.modes (model, bandit and heuristic when it lists none), all with the same steps."""
    p = copy.deepcopy(profile)
    adaptive = [m for m in p.run.modes if not modes_mod.is_fixed(m)] or [
        modes_mod.adaptive(name) for name in NEW_CONTROLLERS
    ]
    p.run.modes = [modes_mod.fixed(k) for k in sorted(p.scenario.fixed_k)] + adaptive
    steps = p.scenario.steps or max(p.run.steps_fixed, p.run.steps_adaptive)
    p.run.steps_fixed = p.run.steps_adaptive = steps
    if p.scenario.kind == "none":  # evaluate always applies the scenario hooks
        shifts, load = len(p.scenario.categories) > 1, p.scenario.load_steps > 0
        p.scenario.kind = {
            (False, False): "stationary",
            (True, False): "content_shift",
            (False, True): "load_shift",
            (True, True): "both",
        }[(shifts, load)]
    p.load.scheduled = False  # the scenario's load, by step, replaces HaloSpec's timed load
    return p


class FreshBackend(Backend):
    """A backend that is rebuilt before every mode after the first (scenario.fresh_backend):
    each mode meets a new embedded engine, so its request i draws the same acceptance as every
    other mode's request i (with scenario.unique_prompts). Everything else is the wrapped
    backend's; the notifier and the run folder carry over to each new one."""

    def __init__(self, profile: Profile, make: Callable[[Profile], Backend]) -> None:
        self._profile, self._make = profile, make
        self._inner = make(profile)
        self._modes = 0

    @property  # type: ignore[override]
    def kind(self) -> str:
        return self._inner.kind

    @property  # type: ignore[override]
    def draft_channel(self) -> str:
        return self._inner.draft_channel

    @property  # type: ignore[override]
    def model(self) -> str:
        return self._inner.model

    @property  # type: ignore[override]
    def url(self) -> str:
        return self._inner.url

    def set_notifier(self, notify: Callable[[str, str], None] | None) -> None:
        super().set_notifier(notify)
        self._inner.set_notifier(notify)

    def set_run_dir(self, run_dir: Any) -> None:
        super().set_run_dir(run_dir)
        self._inner.set_run_dir(run_dir)

    def start(self) -> None:
        self._inner.start()

    def prepare_mode(self, mode: str, k: int | None) -> None:
        self._modes += 1
        if self._modes > 1:
            self._inner.close()
            self._inner = self._make(self._profile)
            self._inner.set_notifier(self._notify)
            self._inner.set_run_dir(self.run_dir)
            self._inner.start()
        self._inner.prepare_mode(mode, k)

    def complete(self, prompt: Prompt, k: int) -> Reply:
        return self._inner.complete(prompt, k)

    def metrics(self) -> dict[str, float] | None:
        return self._inner.metrics()

    def mode_evidence(self) -> dict[str, Any]:
        return self._inner.mode_evidence()

    def describe(self) -> str:
        return self._inner.describe()

    def close(self) -> None:
        self._inner.close()


def run_interleaved(
    p: Profile,
    run_dir: Path,
    *,
    log: Callable[[str], None] = print,
    make: Callable[[Profile], Any] | None = None,
) -> dict[str, Any]:
    """One evaluation run with the modes interleaved step by step (scenario.interleave).

    Every mode has its own backend and controller; step s is run for every mode (in an
    order rotated by one each step) before any mode runs step s+1. Background load that
    comes and goes on a shared machine then hits every mode alike, and the scenario's load
    covers the same steps of every mode in one stretch of time. On the embedded engine all
    modes share one engine, each mode a named request stream, so request i meets the same
    acceptance draws in every mode, and the engine is busy without pause, as a real server
    in use is (eleven engines taking turns would each wake from a long sleep, which the
    Linux scheduler rewards with priority over the load: CPU load would hardly touch
    them). Writes the run folder (results.csv, responses.jsonl, summary.json with
    "evaluation", profile.toml) and returns the summary."""
    shared = None  # on the embedded engine: one engine for every mode, a stream per mode
    new_backend: Callable[[Profile, str], Any]
    if make is not None:
        new_backend = lambda prof, mode: make(prof)  # noqa: E731
    elif p.backend.kind == "embedded":
        shared = EmbeddedServer.from_settings(p.embedded, seed=p.run.seed)
        new_backend = lambda prof, mode: EmbeddedBackend(  # noqa: E731
            prof, attach_url=shared.url, stream=mode
        )
    else:
        new_backend = lambda prof, mode: make_backend(prof)  # noqa: E731
    run_dir = Path(run_dir)
    if (run_dir / "results.csv").exists():
        raise ProfileError(f"--out {run_dir}: already holds results.csv (expected a new folder)")
    run_dir.mkdir(parents=True, exist_ok=True)
    p.save(run_dir / "profile.toml")
    sc = p.scenario
    modes = list(p.run.modes)
    steps = p.steps_for(modes[0])
    prompts = scenario_mod.scenario_prompts(PromptSchedule(load_prompts(p)), p)
    writer = ResultsWriter(run_dir)
    cpu = CpuSampler()
    load = LoadInjector(cores=p.load.cores)
    backends: dict[str, Any] = {}
    rows: list[StepRow] = []
    overhead: dict[str, list[float]] = {m: [] for m in modes}
    try:
        if shared is not None:
            shared.start(timeout=max(15.0, p.backend.health_timeout_s))
        controllers = {m: make_controller(m, p.controller) for m in modes}
        for m in modes:
            b = new_backend(p, m)
            b.start()
            kind, _ = modes_mod.parse(m)
            b.prepare_mode(m, controllers[m].warmup_k if kind == modes_mod.FIXED else None)
            backends[m] = b
        for m in modes:  # warmup, as the runner does it
            lat = []
            for i in range(p.run.warmup):
                reply = backends[m].complete(
                    prompts.prompt_for(m, i, None), controllers[m].warmup_k
                )
                if reply.success:
                    lat.append(reply.latency_ms)
            controllers[m].calibrate(lat)
        load_seen = False
        gstep = 0
        for step in range(1, steps + 1):
            action = scenario_mod.load_action(sc, step)
            if action == "start" and not load.on:
                load.start(duration_s=None, scheduled=True)
            elif action == "stop" and load.on:
                load.stop()
            load_seen = load_seen or load.on
            phase = "load" if load.on else ("recovery" if load_seen else "steady")
            start = step % len(modes)
            for m in modes[start:] + modes[:start]:
                ctl = controllers[m]
                t0 = time.perf_counter()
                decision = ctl.decide()
                ctl_ms = (time.perf_counter() - t0) * 1000.0
                k = decision.k
                prompt = prompts.prompt_for(m, p.run.warmup + step - 1, step)
                reply = backends[m].complete(prompt, k)
                t0 = time.perf_counter()
                ctl.observe(Observation.of(k, reply, prompt.category))
                overhead[m].append(ctl_ms + (time.perf_counter() - t0) * 1000.0)
                gstep += 1
                row = step_row(
                    global_step=gstep,
                    step=step,
                    mode=m,
                    phase=phase,
                    k=k,
                    reply=reply,
                    prompt_id=prompt.id,
                    category=prompt.category,
                    decision=decision,
                    load_on=load.on,
                    channel=backends[m].draft_channel,
                    cpu=cpu.sample(),
                )
                rows.append(row)
                writer(StepResult(row=row, text=reply.text))
            if step % 20 == 0 or step == steps:
                log(f"   step {step}/{steps}" + (" (load on)" if load.on else ""))
    finally:
        load.close()
        for b in backends.values():
            b.close()
        if shared is not None:
            shared.stop()
        writer.close()
    order = {m: i for i, m in enumerate(modes)}
    rows.sort(key=lambda r: (order[r.mode], r.step))
    mode_summaries = []
    for m in modes:
        mine = [r for r in rows if r.mode == m]
        s = summarize_mode(m, mine, p.score, p.score.convergence_window)
        ctl = overhead[m]
        s["controller_ms_per_step"] = round(sum(ctl) / len(ctl), 4) if ctl else None
        mode_summaries.append(s)
    summary = {
        "modes": mode_summaries,
        "winner": pick_winner(mode_summaries, "all"),
        "profile": p.name,
        "backend": p.backend.kind,
        "run_dir": str(run_dir),
        "cancelled": False,
        "interleaved": True,
        "evaluation": evaluation_for_run(rows, p, overhead),
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def run_evaluation(
    profile: Profile,
    out: Path,
    runs: int = 1,
    *,
    on_event: Callable[[Any], None] | None = None,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Run the evaluation `runs` times into out/run-N and write out/evaluation.json."""
    base = evaluation_profile(profile)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    evals: list[dict[str, Any]] = []
    seeds: list[int] = []
    run_dirs: list[str] = []
    for i in range(runs):
        if should_stop():
            break
        p = evaluation_profile(base)
        p.run.seed = base.run.seed + i
        run_dir = out / f"run-{i + 1}"
        interleave = p.scenario.interleave and p.backend.kind == "embedded"
        how = "interleaved" if interleave else "one mode after another"
        log(
            f"evaluate run {i + 1}/{runs}: seed {p.run.seed}, {len(p.run.modes)} modes x "
            f"{p.steps_for(p.run.modes[0])} steps, {how} -> {run_dir}"
        )
        if interleave:  # one shared engine, a request stream per mode
            summary = run_interleaved(p, run_dir, log=log)
        else:
            fresh = p.scenario.fresh_backend and p.backend.kind == "embedded"
            backend = FreshBackend(p, make_backend) if fresh else None
            session = Session.create(p, run_dir, backend=backend)
            if on_event is not None:
                session.bus.subscribe(on_event)
            try:
                session.start_backend()
                summary = session.run()
            finally:
                session.close()
        ev = summary.get("evaluation")
        if summary.get("cancelled") or ev is None:
            log(f"run {i + 1} did not finish; it is left out")
            break
        (run_dir / "k_tracking.txt").write_text(k_tracking_plots(ev) + "\n", encoding="utf-8")
        write_json(run_dir / "evaluation.json", ev)
        evals.append(ev)
        seeds.append(p.run.seed)
        run_dirs.append(str(run_dir))
    result = aggregate(evals, seeds) if evals else {"runs": 0}
    result["run_dirs"] = run_dirs
    result["profile"] = profile.name
    result["per_run"] = evals
    write_json(out / "evaluation.json", result)
    return result
