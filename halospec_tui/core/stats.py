"""Per-mode statistics with HaloSpec's exact definitions, as JSON-ready plain values.

Definitions (HaloSpec's, docs/halospec.md): latency statistics cover successful steps only;
percentiles are nearest rank, `idx = ceil(p/100 * n) - 1` (halospec_tui/percentile.py), and the
median is that p50 (an element of the data, never an interpolated mean of two, so
[100, 200, 300, 400] has median 200); stddev is the population one; throughput = sum(tokens) / (sum(latency_ms) / 1000); the
score (lower is better) = w.avg*avg + w.p95*p95 + w.stddev*stddev. Every number is a plain
float or int and never NaN, so summaries go straight into json.dumps(allow_nan=False).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from halospec_tui.core.events import StepRow
from halospec_tui.percentile import nearest_rank, percentile_nearest_rank
from halospec_tui.profile import ScoreSettings

__all__ = [
    "draft_changes",
    "convergence_step",
    "nearest_rank",
    "percentile_nearest_rank",
    "summarize",
    "summarize_mode",
]

_LATENCY_KEYS = (
    "avg_ms",
    "median_ms",
    "p95_ms",
    "min_ms",
    "max_ms",
    "stddev_ms",
    "tokens_per_s",
    "score",
    "acceptance",
    "observed_k",
)


def _num(x: Any) -> float | None:
    """A plain finite float, or None (numpy scalars, NaN and inf never leave this module)."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def summarize(rows: Sequence[StepRow], weights: ScoreSettings | None = None) -> dict[str, Any]:
    """Counts over all rows; latency, throughput, score and counters over successful rows."""
    w = weights or ScoreSettings()
    ok = [r for r in rows if r.success and math.isfinite(r.latency_ms)]
    steps = len(rows)
    successes = sum(1 for r in rows if r.success)
    out: dict[str, Any] = {
        "steps": steps,
        "successes": successes,
        "failures": steps - successes,
        "success_rate": successes / steps if steps else 0.0,
        **dict.fromkeys(_LATENCY_KEYS),
    }
    if not ok:
        return out
    lat = np.array([r.latency_ms for r in ok], dtype=np.float64)
    avg, sd = float(lat.mean()), float(lat.std(ddof=0))
    p95 = percentile_nearest_rank(lat.tolist(), 95.0)
    total_ms = float(lat.sum())
    tokens = sum(int(r.tokens) for r in ok)
    out.update(
        avg_ms=_num(avg),
        median_ms=percentile_nearest_rank(lat.tolist(), 50.0),
        p95_ms=p95,
        min_ms=_num(lat.min()),
        max_ms=_num(lat.max()),
        stddev_ms=_num(sd),
        tokens_per_s=_num(tokens / (total_ms / 1000.0)) if total_ms > 0 else None,
        score=_num(w.avg * avg + w.p95 * p95 + w.stddev * sd) if p95 is not None else None,
    )
    counted = [r for r in ok if r.draft_n is not None and r.draft_n_accepted is not None]
    drafted = sum(r.draft_n for r in counted)  # type: ignore[misc]
    if drafted > 0:
        out["acceptance"] = _num(sum(r.draft_n_accepted for r in counted) / drafted)  # type: ignore[misc]
    ks = [r.observed_k for r in ok if r.observed_k is not None and math.isfinite(r.observed_k)]
    if ks:
        out["observed_k"] = _num(np.mean(ks))
    return out


def draft_changes(lengths: Sequence[int]) -> int:
    """Adjacent steps whose draft length differs (the original's draft_change_count)."""
    return sum(1 for a, b in zip(lengths, lengths[1:], strict=False) if a != b)


def convergence_step(lengths: Sequence[int], window: int = 5) -> int | None:
    """First 1-based step at which the last `window` draft lengths are all equal; None if never."""
    if window <= 0 or len(lengths) < window:
        return None
    for end in range(window - 1, len(lengths)):
        if len(set(lengths[end + 1 - window : end + 1])) == 1:
            return end + 1
    return None


def _grouped(rows: Sequence[StepRow], key: str, w: ScoreSettings) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[StepRow]] = {}
    for r in rows:
        name = getattr(r, key)
        if name:
            groups.setdefault(name, []).append(r)
    return {name: summarize(g, w) for name, g in groups.items()}


def summarize_mode(
    mode: str,
    rows: Sequence[StepRow],
    weights: ScoreSettings | None = None,
    convergence_window: int | None = None,
) -> dict[str, Any]:
    """summarize() plus the mode's draft-length behaviour and per-phase and per-category views.

    `rows` are the mode's rows in step order, failed ones included (as in the original, draft
    changes and convergence count every step). `convergence_window` defaults to the weights'
    (5, HaloSpec's convergence_step(k=5)).
    """
    w = weights or ScoreSettings()
    window = w.convergence_window if convergence_window is None else convergence_window
    lengths = [int(r.draft_length) for r in rows]
    out = {"mode": mode, **summarize(rows, w)}
    out["draft_changes"] = draft_changes(lengths)
    out["convergence_step"] = convergence_step(lengths, window)
    out["phases"] = _grouped(rows, "phase", w)
    out["categories"] = _grouped(rows, "category", w)
    out["k_values"] = {
        "min": min(lengths) if lengths else None,
        "max": max(lengths) if lengths else None,
        "mean": _num(np.mean(lengths)) if lengths else None,
    }
    return out
