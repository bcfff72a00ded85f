"""The evaluation table of one run: every fixed k and every controller, compared per segment.

`evaluation_for_run(rows, profile, controller_ms)` turns one run's rows into the table (the
runner puts it in the run summary as ``summary["evaluation"]`` whenever a run has an adaptive
mode and at least one other mode, so summary.json and the monitor carry it). Running N seeded
runs and taking their medians is `halospec_tui.evaluation`'s; the text tables and plots are
`text.py`'s.

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

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from halospec_tui.core import scenario as scenario_mod
from halospec_tui.core.events import StepRow
from halospec_tui.modes import fixed_k, is_fixed
from halospec_tui.percentile import percentile_nearest_rank
from halospec_tui.profile import Profile

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
