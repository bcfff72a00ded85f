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


def quantile_ci95(values: Sequence[float], p: float) -> list[float] | None:
    """A distribution-free 95 % interval for the p-th percentile: the order statistics
    x(l) <= x(u) with P(l <= B < u) >= 0.95 for B ~ Binomial(n, p/100) (no resampling, the
    same answer every time); None when n is too small for one (a median needs 6 values)."""
    v = sorted(values)
    n, q = len(v), p / 100.0
    if n == 0 or not 0.0 < q < 1.0:
        return None
    log_q, log_1q, log_n = math.log(q), math.log1p(-q), math.lgamma(n + 1)
    cdf, lo, hi = 0.0, None, None
    for b in range(n + 1):  # cdf = P(B <= b)
        log_pmf = log_n - math.lgamma(b + 1) - math.lgamma(n - b + 1)
        cdf += math.exp(log_pmf + b * log_q + (n - b) * log_1q)
        if cdf <= 0.025:
            lo = b + 1  # P(B < lo) = P(B <= b) <= 2.5 %
        elif cdf >= 0.975:
            hi = b + 1  # P(B < hi) = P(B <= b) >= 97.5 %
            break
    if lo is None or hi is None or hi > n:
        return None
    return [float(v[lo - 1]), float(v[hi - 1])]


def _latency_split(rows: Sequence[StepRow]) -> dict[str, Any]:
    """TTFT and inter-token latency of the streamed successful steps (request.stream).

    TTFT p50/p95 are nearest-rank over the steps' TTFTs; ITL p50 is the median of the
    steps' own ITL p50s and ITL p95 the median of their p95s (a typical request's gaps, not
    one long request's). `streamed_steps` says how many steps they rest on, and the medians
    carry distribution-free 95 % intervals (quantile_ci95) when there are enough steps."""
    ttft = [r.ttft_ms for r in rows if r.ttft_ms is not None and math.isfinite(r.ttft_ms)]
    p50s = [r.itl_p50_ms for r in rows if r.itl_p50_ms is not None]
    p95s = [r.itl_p95_ms for r in rows if r.itl_p95_ms is not None]
    return {
        "streamed_steps": len(ttft),
        "ttft_p50_ms": percentile_nearest_rank(ttft, 50.0),
        "ttft_p50_ci95_ms": quantile_ci95(ttft, 50.0),
        "ttft_p95_ms": percentile_nearest_rank(ttft, 95.0),
        "itl_p50_ms": percentile_nearest_rank(p50s, 50.0),
        "itl_p50_ci95_ms": quantile_ci95(p50s, 50.0),
        "itl_p95_ms": percentile_nearest_rank(p95s, 50.0),
    }


def summarize(rows: Sequence[StepRow], weights: ScoreSettings | None = None) -> dict[str, Any]:
    """Counts over all rows; latency, throughput, score and counters over successful rows.

    A step the run's stop abandoned (error "interrupted") is counted apart, never as a
    failure: the server did nothing wrong."""
    w = weights or ScoreSettings()
    interrupted = sum(1 for r in rows if r.interrupted)
    rows = [r for r in rows if not r.interrupted]
    ok = [r for r in rows if r.success and math.isfinite(r.latency_ms)]
    steps = len(rows)
    successes = sum(1 for r in rows if r.success)
    out: dict[str, Any] = {
        "steps": steps,
        "successes": successes,
        "failures": steps - successes,
        "success_rate": successes / steps if steps else 0.0,
        "interrupted": interrupted,
        **dict.fromkeys(_LATENCY_KEYS),
        **_latency_split(ok),
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
    lengths = [int(r.draft_length) for r in rows if not r.interrupted]
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
