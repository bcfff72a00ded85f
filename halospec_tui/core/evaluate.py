"""Evaluation: every fixed k and every controller on the same scenario, compared per segment.

`evaluation_for_run(rows, profile, controller_ms)` turns one run's rows into the evaluation
table (the runner puts it in the run summary as ``summary["evaluation"]`` whenever a run has
an adaptive mode and at least one other mode, so summary.json and the monitor carry it);
`run_evaluation` runs a profile N times (seed, seed+1, ...) with every fixed k of
``scenario.fixed_k`` and every adaptive mode of ``run.modes``, and writes evaluation.json with
the per-run tables and their medians.

Definitions (all tokens/s are HaloSpec's: sum of tokens / sum of latency, successful steps):

* **segment**: the rows of one content segment and load phase (core/scenario.py); the same
  steps in every mode.
* **settled**: a segment's rows from ``settle_steps`` after its first step on (the stationary
  part after the controllers' warmup). A segment shorter than that is used whole
  (``settled: false``).
* **oracle** of a segment: the fixed k with the most settled tokens/s in it.
  ``ratio_oracle`` = a mode's settled tokens/s / the oracle's (target 1).
* **best fixed** (single): the fixed k with the most tokens/s over the whole run;
  ``ratio_best_fixed`` per segment compares settled tokens/s with that same k's in the segment.
* **overall**: whole-run tokens/s; ``tokens_per_s_with_overhead`` adds the controller's own
  decide+observe time to the latency sum (targets 2 and 3 use it, for fixed modes too), and
  the **oracle schedule** is the per-segment best fixed k over whole segments, combined.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halospec_tui.core import scenario as scenario_mod
from halospec_tui.core.events import StepRow
from halospec_tui.core.stats import percentile_nearest_rank
from halospec_tui.core.tables import text_table
from halospec_tui.profile import Profile, parse_mode

EVALUATION_VERSION = 1


@dataclass(frozen=True, slots=True)
class EvalRow:
    """The seven fields of a StepRow the evaluation reads (about a tenth of a row's memory),
    so that a long run keeps what its end-of-run table needs and not every row it wrote."""

    mode: str
    step: int
    phase: str
    draft_length: int
    success: int
    latency_ms: float
    tokens: int

    @classmethod
    def of(cls, r: StepRow) -> EvalRow:
        return cls(r.mode, r.step, r.phase, r.draft_length, r.success, r.latency_ms, r.tokens)


EvalStep = StepRow | EvalRow  # what the evaluation reads rows from


# --- one run ---------------------------------------------------------------------------------


def tokens_per_s(rows: Sequence[EvalStep], extra_ms: float = 0.0) -> float | None:
    """Completion tokens per second of client latency over the successful rows (plus extra_ms)."""
    ok = [r for r in rows if r.success and r.latency_ms > 0 and math.isfinite(r.latency_ms)]
    ms = sum(r.latency_ms for r in ok) + extra_ms
    return sum(int(r.tokens) for r in ok) / (ms / 1000.0) if ok and ms > 0 else None


def _lat(rows: Sequence[EvalStep], p: float) -> float | None:
    return percentile_nearest_rank([r.latency_ms for r in rows if r.success], p)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def is_fixed(mode: str) -> bool:
    return mode.startswith("fixed_")


def fixed_k(mode: str) -> int:
    return int(mode.split("_", 1)[1])


def controller_of(mode: str) -> str:
    try:
        return parse_mode(mode)[0]
    except ValueError:
        return mode


def applies(modes: Sequence[str]) -> bool:
    """A run gets an evaluation table when it has an adaptive mode and another mode."""
    return len(set(modes)) >= 2 and any(not is_fixed(m) for m in modes)


def evaluation_for_run(
    rows: Sequence[EvalStep],
    profile: Profile,
    controller_ms: dict[str, list[float]] | None = None,
) -> dict[str, Any] | None:
    """The evaluation table of one run's rows (None when `applies` is false)."""
    order: list[str] = []
    by_mode: dict[str, list[EvalStep]] = {}
    for r in rows:
        if r.mode not in by_mode:
            order.append(r.mode)
            by_mode[r.mode] = []
        by_mode[r.mode].append(r)
    if not applies(order):
        return None
    sc = profile.scenario
    settle = sc.settle_steps
    fixed = [m for m in order if is_fixed(m)]
    adaptive = [m for m in order if not is_fixed(m)]
    overhead = controller_ms or {}

    # segments, in order of first step
    keys: list[tuple[int, str]] = []
    seg_rows: dict[tuple[int, str], dict[str, list[EvalStep]]] = {}
    first: dict[tuple[int, str], int] = {}
    last: dict[tuple[int, str], int] = {}
    for mode in order:
        for r in by_mode[mode]:
            key = scenario_mod.segment_key(sc, r.step, r.phase)
            if key not in seg_rows:
                seg_rows[key] = {}
                keys.append(key)
            seg_rows[key].setdefault(mode, []).append(r)
            first[key] = min(first.get(key, r.step), r.step)
            last[key] = max(last.get(key, r.step), r.step)
    keys.sort(key=lambda k: (first[k], k))
    labels = scenario_mod.unique_labels(sc, keys)

    # overall
    def overhead_ms(mode: str) -> float:
        return float(sum(overhead.get(mode) or []))

    overall_modes: dict[str, dict[str, Any]] = {}
    for mode in order:
        rs = by_mode[mode]
        ks = [int(r.draft_length) for r in rs]
        ctl = overhead.get(mode) or []
        overall_modes[mode] = {
            "steps": len(rs),
            "tokens_per_s": _r(tokens_per_s(rs), 3),
            "tokens_per_s_with_overhead": _r(tokens_per_s(rs, overhead_ms(mode)), 3),
            "controller_ms_per_step": _r(sum(ctl) / len(ctl), 4) if ctl else None,
            "p50_ms": _lat(rs, 50.0),
            "p95_ms": _lat(rs, 95.0),
            "k_mean": _r(statistics.fmean(ks), 3) if ks else None,
            "k_changes": sum(1 for a, b in zip(ks, ks[1:], strict=False) if a != b),
        }
    scored_fixed = [m for m in fixed if overall_modes[m]["tokens_per_s_with_overhead"]]
    best_fixed = (
        max(scored_fixed, key=lambda m: overall_modes[m]["tokens_per_s_with_overhead"])
        if scored_fixed
        else None
    )

    segments = []
    oracle_rows: list[EvalStep] = []
    oracle_ks: dict[str, int] = {}
    for key in keys:
        per_mode = seg_rows[key]
        settled_from = first[key] + settle
        is_settled = last[key] >= settled_from
        seg: dict[str, Any] = {
            "name": labels[key],
            "content_index": key[0],
            "load_phase": key[1] or None,
            "category": (scenario_mod.content_segments(sc)[key[0]].category or None)
            if scenario_mod.has_content(sc)
            else None,
            "first_step": first[key],
            "last_step": last[key],
            "settled_from_step": settled_from if is_settled else first[key],
            "settled": is_settled,
        }
        stats: dict[str, dict[str, Any]] = {}
        for mode in order:
            rs = per_mode.get(mode, [])
            tail = [r for r in rs if r.step >= settled_from] if is_settled else rs
            ks = [int(r.draft_length) for r in rs]
            stats[mode] = {
                "steps": len(rs),
                "tokens_per_s": _r(tokens_per_s(rs), 3),
                "tokens_per_s_settled": _r(tokens_per_s(tail), 3),
                "p50_ms": _lat(rs, 50.0),
                "p95_ms": _lat(rs, 95.0),
                "k_mean": _r(statistics.fmean(ks), 3) if ks else None,
                "k_settled_mean": _r(statistics.fmean([int(r.draft_length) for r in tail]), 3)
                if tail
                else None,
            }
        cands = [m for m in fixed if stats[m]["tokens_per_s_settled"]]
        oracle = max(cands, key=lambda m: stats[m]["tokens_per_s_settled"]) if cands else None
        whole = [m for m in fixed if stats[m]["tokens_per_s"]]
        oracle_whole = max(whole, key=lambda m: stats[m]["tokens_per_s"]) if whole else None
        if oracle_whole is not None:
            oracle_rows.extend(per_mode[oracle_whole])
            oracle_ks[labels[key]] = fixed_k(oracle_whole)
        seg["oracle"] = (
            {
                "mode": oracle,
                "k": fixed_k(oracle),
                "tokens_per_s": stats[oracle]["tokens_per_s_settled"],
            }
            if oracle
            else None
        )
        o_tps = stats[oracle]["tokens_per_s_settled"] if oracle else None
        b_tps = stats[best_fixed]["tokens_per_s_settled"] if best_fixed in stats else None
        for mode in order:
            stats[mode]["ratio_oracle"] = _r(_ratio(stats[mode]["tokens_per_s_settled"], o_tps))
            stats[mode]["ratio_best_fixed"] = _r(_ratio(stats[mode]["tokens_per_s_settled"], b_tps))
        seg["modes"] = stats
        segments.append(seg)

    bf_tps = overall_modes[best_fixed]["tokens_per_s_with_overhead"] if best_fixed else None
    oracle_tps = tokens_per_s(oracle_rows) if oracle_rows else None
    for mode in order:
        t = overall_modes[mode]["tokens_per_s_with_overhead"]
        overall_modes[mode]["ratio_best_fixed"] = _r(_ratio(t, bf_tps))
        overall_modes[mode]["ratio_oracle"] = _r(_ratio(t, oracle_tps))
    return {
        "version": EVALUATION_VERSION,
        "scenario": scenario_mod.describe(sc) if scenario_mod.active(sc) else None,
        "settle_steps": settle,
        "fixed_modes": fixed,
        "adaptive_modes": adaptive,
        "segments": segments,
        "overall": {
            "best_fixed": {
                "mode": best_fixed,
                "k": fixed_k(best_fixed),
                "tokens_per_s": bf_tps,
            }
            if best_fixed
            else None,
            "oracle_schedule": {"tokens_per_s": _r(oracle_tps, 3), "ks": oracle_ks}
            if oracle_rows
            else None,
            "oracle_gain": _r(_ratio(oracle_tps, bf_tps) - 1.0) if oracle_tps and bf_tps else None,
            "modes": overall_modes,
        },
        "k_tracks": {m: [int(r.draft_length) for r in by_mode[m]] for m in adaptive},
    }


# --- text output -----------------------------------------------------------------------------


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_evaluation(ev: dict[str, Any], *, fixed_detail: bool = True) -> str:
    """The evaluation as text tables: per segment, then the whole run."""
    lines: list[str] = []
    runs = ev.get("runs")
    if runs:
        lines.append(f"median of {runs} runs (seeds {', '.join(map(str, ev.get('seeds', [])))})")
    overall = ev.get("overall") or {}
    bf = (overall.get("best_fixed") or {}).get("mode")
    for seg in ev.get("segments", []):
        o = seg.get("oracle") or {}
        lines.append("")
        lines.append(
            f"segment {seg['name']}: steps {seg['first_step']}..{seg['last_step']}, settled from "
            f"{seg['settled_from_step']}; oracle {o.get('mode', '-')} "
            f"{_fmt(o.get('tokens_per_s'), '.1f')} tok/s"
        )
        modes = seg.get("modes", {})
        shown = [m for m in modes if fixed_detail or not is_fixed(m) or m in (bf, o.get("mode"))]
        body = []
        for m in shown:
            s = modes[m]
            mark = " (oracle)" if m == o.get("mode") else (" (best fixed)" if m == bf else "")
            body.append(
                [
                    m + mark,
                    _fmt(s.get("tokens_per_s"), ".1f"),
                    _fmt(s.get("tokens_per_s_settled"), ".1f"),
                    _fmt(s.get("p50_ms"), ".1f"),
                    _fmt(s.get("p95_ms"), ".1f"),
                    _fmt(s.get("k_settled_mean"), ".2f"),
                    _fmt(s.get("ratio_oracle"), ".3f"),
                    _fmt(s.get("ratio_best_fixed"), ".3f"),
                ]
            )
        lines += text_table(
            ["mode", "tok/s", "settled", "p50 ms", "p95 ms", "k", "/oracle", "/best fixed"], body
        )
    lines.append("")
    os_ = overall.get("oracle_schedule") or {}
    lines.append(
        f"whole run: best single fixed {bf or '-'} "
        f"{_fmt((overall.get('best_fixed') or {}).get('tokens_per_s'), '.1f')} tok/s; "
        f"per-segment oracle {_fmt(os_.get('tokens_per_s'), '.1f')} tok/s "
        f"(k {', '.join(f'{n} {k}' for n, k in (os_.get('ks') or {}).items()) or '-'}; "
        f"gain over best fixed {_fmt(_pct(overall.get('oracle_gain')), '+.1f')}%)"
    )
    om = overall.get("modes", {})
    body = []
    for m in [m for m in om if not is_fixed(m)] + ([bf] if bf else []):
        s = om[m]
        body.append(
            [
                m,
                _fmt(s.get("tokens_per_s"), ".1f"),
                _fmt(s.get("tokens_per_s_with_overhead"), ".1f"),
                _fmt(s.get("controller_ms_per_step"), ".3f"),
                _fmt(s.get("p50_ms"), ".1f"),
                _fmt(s.get("p95_ms"), ".1f"),
                _fmt(s.get("k_mean"), ".2f"),
                _fmt(s.get("ratio_best_fixed"), ".3f"),
                _fmt(s.get("ratio_oracle"), ".3f"),
            ]
        )
    lines += text_table(
        [
            "mode",
            "tok/s",
            "+overhead",
            "ctl ms",
            "p50 ms",
            "p95 ms",
            "k mean",
            "/best fixed",
            "/oracle",
        ],
        body,
    )
    return "\n".join(lines)


def _pct(x: float | None) -> float | None:
    return None if x is None else x * 100.0


def k_tracking_plot(ev: dict[str, Any], mode: str, width: int = 100, height: int = 14) -> str:
    """A text plot of a controller's k by step (x) over the segments' oracle k (·)."""
    import plotext as plt

    track = (ev.get("k_tracks") or {}).get(mode) or []
    if not track:
        return ""
    xs = list(range(1, len(track) + 1))
    oracle: list[float] = []
    bounds: list[float] = []
    for seg in ev.get("segments", []):
        k = (seg.get("oracle") or {}).get("k")
        for step in range(seg["first_step"], seg["last_step"] + 1):
            if k is not None and step <= len(track):
                oracle.append(step)
                oracle.append(float(k))
        if seg["first_step"] > 1:
            bounds.append(seg["first_step"] - 0.5)
    plt.terminal.limit(False, False)
    f = plt.figure
    f.clear()
    try:
        f.theme("colorless")
        f.plot_size(width, height)
        if oracle:
            f.draw(f.signal(oracle[0::2], oracle[1::2], marker="·"))
        f.draw(f.signal(xs, [float(k) for k in track], marker="x"))
        for b in sorted(set(bounds)):
            f.line(b, "v")
        f.title(f"{mode}: k by step (x), per-segment oracle k (·)")
        out = plt.uncolorize(f.build().string())
    finally:
        f.clear()
    return out


def k_tracking_plots(ev: dict[str, Any], width: int = 100, height: int = 14) -> str:
    return "\n".join(k_tracking_plot(ev, m, width, height) for m in ev.get("adaptive_modes", []))


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
    import copy

    p = copy.deepcopy(profile)
    adaptive = [m for m in p.run.modes if not is_fixed(m)] or [
        "adaptive:model",
        "adaptive:bandit",
        "adaptive:heuristic",
    ]
    p.run.modes = [f"fixed_{k}" for k in sorted(p.scenario.fixed_k)] + adaptive
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


class FreshBackend:
    """A backend that is rebuilt before every mode after the first (scenario.fresh_backend):
    each mode meets a new embedded engine, so its request i draws the same acceptance as every
    other mode's request i (with scenario.unique_prompts). Everything else is the wrapped
    backend's."""

    def __init__(self, profile: Profile, make: Callable[[Profile], Any]) -> None:
        self._profile, self._make = profile, make
        self._inner = make(profile)
        self._modes = 0
        self._notifier: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def set_notifier(self, fn: Any) -> None:
        self._notifier = fn
        if hasattr(self._inner, "set_notifier"):
            self._inner.set_notifier(fn)

    def start(self) -> None:
        self._inner.start()

    def prepare_mode(self, mode: str, k: int | None) -> None:
        self._modes += 1
        if self._modes > 1:
            self._inner.close()
            self._inner = self._make(self._profile)
            if self._notifier is not None and hasattr(self._inner, "set_notifier"):
                self._inner.set_notifier(self._notifier)
            self._inner.start()
        self._inner.prepare_mode(mode, k)

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
    from halospec_tui.backends.factory import make_backend
    from halospec_tui.core.results import write_json
    from halospec_tui.session import Session

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
        # interleaved rounds (the runner's order): one backend, one engine, every mode a
        # request sequence of its own, so request i of every mode meets the same draws
        p.run.order = "auto" if p.scenario.interleave else "sequential"
        log(
            f"evaluate run {i + 1}/{runs}: seed {p.run.seed}, {len(p.run.modes)} modes x "
            f"{p.steps_for(p.run.modes[0])} steps, {p.run.order} -> {run_dir}"
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


def load_evaluation(path: Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "evaluation.json"
    return json.loads(p.read_text(encoding="utf-8"))
