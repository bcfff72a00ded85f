"""HaloSpec's percentile, stated once: nearest rank, `idx = ceil(p/100 * n) - 1`.

An element of the data, never an interpolated mean of two (so [100, 200, 300, 400] has median
200). The statistics of a run (core/stats.py), HaloSpec's latency controller and the monitor's
live percentiles all use it, so every p50/p95 the user sees is computed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def nearest_rank(sorted_values: Sequence[float], p: float) -> float | None:
    """The p-th percentile of values already sorted ascending; None if there are none.

    The expression order matches the original's `(pct / 100.0) * n` so float rounding agrees."""
    n = len(sorted_values)
    if n == 0:
        return None
    idx = min(max(math.ceil((p / 100.0) * n) - 1, 0), n - 1)
    return sorted_values[idx]


def percentile_nearest_rank(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile of `values` in any order, as floats; None if empty."""
    return nearest_rank(sorted(float(x) for x in values), p)
