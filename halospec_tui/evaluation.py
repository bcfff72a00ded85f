"""evaluate: every fixed k and every controller on one seeded scenario, N runs, their medians.

`run_evaluation` runs a profile N times (seed, seed+1, ...) with every fixed k of
``scenario.fixed_k`` and every adaptive mode of ``run.modes``, each run a normal run folder,
and writes evaluation.json with the per-run tables (core/evaluation/metrics.py) and their
medians (`aggregate`). Every run is a Session on the runner, in its rounds (interleaved where
switching k is cheap); `scenario.interleave = false` runs the modes one after another, with a
fresh engine per mode (`FreshBackend`) when the scenario asks for one.
"""

from __future__ import annotations

import copy
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from halospec_tui import modes as modes_mod
from halospec_tui.backends.base import Backend, BackendUnavailable, Reply
from halospec_tui.backends.factory import make_backend
from halospec_tui.controllers.registry import NEW_CONTROLLERS
from halospec_tui.core.evaluation.text import k_tracking_plots
from halospec_tui.core.results import write_json
from halospec_tui.profile import Profile
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

    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        return self._inner.complete(prompt, k, sequence=sequence)

    def metrics(self) -> dict[str, float] | None:
        return self._inner.metrics()

    def mode_evidence(self) -> dict[str, Any]:
        return self._inner.mode_evidence()

    def describe(self) -> str:
        return self._inner.describe()

    def close(self) -> None:
        self._inner.close()


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
        # the runner's rounds (run.order auto: interleaved where switching k is cheap, blocks
        # where it reloads or restarts): one backend, and on the embedded engine one engine
        # where every mode is a request sequence of its own, so request i of every mode meets
        # the same draws; sequential (scenario.interleave = false) with a fresh engine per mode
        p.run.order = "auto" if p.scenario.interleave else "sequential"
        log(
            f"evaluate run {i + 1}/{runs}: seed {p.run.seed}, {len(p.run.modes)} modes x "
            f"{p.steps_for(p.run.modes[0])} steps, order {p.run.order} -> {run_dir}"
        )
        fresh = (
            p.run.order == "sequential"
            and p.scenario.fresh_backend
            and p.backend.kind == "embedded"
        )
        backend = FreshBackend(p, make_backend) if fresh else None
        session = Session.create(p, run_dir, backend=backend)
        if on_event is not None:
            session.bus.subscribe(on_event)
        try:
            session.start_backend()
            summary = session.run()
        except BackendUnavailable as e:
            if not evals:
                raise  # nothing measured: the caller says which server, in one line
            log(f"run {i + 1}: server not answering ({e.reason}); the finished runs are kept")
            break
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
