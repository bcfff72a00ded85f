"""HaloSpec's statistics, checked against hand-computed values."""

from __future__ import annotations

import json
import math

import pytest

from halospec_tui.core.events import StepRow
from halospec_tui.core.stats import (
    convergence_step,
    draft_changes,
    percentile_nearest_rank,
    summarize,
    summarize_mode,
)
from halospec_tui.profile import ScoreSettings

W = ScoreSettings()


def row(step: int, lat: float, k: int = 4, ok: int = 1, tokens: int = 64, **kw) -> StepRow:
    return StepRow(
        step,
        step,
        kw.pop("mode", "m"),
        kw.pop("phase", "steady"),
        k,
        ok,
        lat if ok else 0.0,
        tokens if ok else 0,
        **kw,
    )


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([100, 200, 300, 400], 50, 200),
        ([100, 200, 300, 400], 95, 400),
        ([400, 100, 300, 200], 25, 100),  # unsorted input
        ([7], 50, 7),
        ([7], 95, 7),
        ([1, 2, 3, 4, 5], 50, 3),
        ([1, 2, 3, 4, 5], 0, 1),  # idx -1 clamps to the first
        ([1, 2, 3, 4, 5], 100, 5),
        (list(range(1, 21)), 95, 19),  # ceil(0.95*20)-1 = 18
        (list(range(1, 11)), 95, 10),
    ],
)
def test_percentile_nearest_rank(values, p, expected):
    assert percentile_nearest_rank(values, p) == expected


def test_percentile_empty():
    assert percentile_nearest_rank([], 50) is None


def test_summarize_hand_computed():
    rows = [row(i + 1, lat) for i, lat in enumerate([100, 200, 300, 400])]
    s = summarize(rows, W)
    sd = math.sqrt(12500)  # population: squared deviations 22500+2500+2500+22500, / 4
    assert s["steps"] == 4 and s["successes"] == 4 and s["failures"] == 0
    assert s["success_rate"] == 1.0
    assert s["avg_ms"] == 250 and s["median_ms"] == 200 and s["p95_ms"] == 400
    assert s["min_ms"] == 100 and s["max_ms"] == 400
    assert s["stddev_ms"] == pytest.approx(111.80339887)
    assert s["tokens_per_s"] == pytest.approx(256 / 1.0)  # 4*64 tokens in 1000 ms
    assert s["score"] == pytest.approx(250 + 0.5 * 400 + 0.2 * sd)
    assert s["acceptance"] is None and s["observed_k"] is None


def test_summarize_failures_excluded_and_custom_weights():
    rows = [row(1, 100), row(2, 0, ok=0), row(3, 300), row(4, 0, ok=0)]
    s = summarize(rows, ScoreSettings(avg=2.0, p95=0.0, stddev=1.0))
    assert (s["steps"], s["successes"], s["failures"], s["success_rate"]) == (4, 2, 2, 0.5)
    assert s["avg_ms"] == 200 and s["median_ms"] == 100 and s["p95_ms"] == 300
    assert s["stddev_ms"] == 100
    assert s["tokens_per_s"] == pytest.approx(128 / 0.4)
    assert s["score"] == pytest.approx(2 * 200 + 100)


def test_summarize_counters_and_observed_k():
    rows = [
        row(1, 100, draft_n=10, draft_n_accepted=5, observed_k=3.0),
        row(2, 100, draft_n=30, draft_n_accepted=25, observed_k=4.0),
        row(3, 100),  # reports no counters: left out, not counted as zero
    ]
    s = summarize(rows, W)
    assert s["acceptance"] == pytest.approx(30 / 40)
    assert s["observed_k"] == pytest.approx(3.5)


@pytest.mark.parametrize("rows", [[], [row(1, 0, ok=0), row(2, 0, ok=0)]])
def test_summarize_empty_and_all_failed(rows):
    s = summarize(rows, W)
    assert s["steps"] == len(rows) and s["successes"] == 0
    assert s["success_rate"] == 0.0
    for key in (
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
    ):
        assert s[key] is None, key
    json.dumps(s, allow_nan=False)


def test_single_success_has_zero_stddev():
    s = summarize([row(1, 500, tokens=10)], W)
    assert s["stddev_ms"] == 0.0 and s["median_ms"] == 500 and s["p95_ms"] == 500
    assert s["tokens_per_s"] == pytest.approx(20.0)
    assert s["score"] == pytest.approx(750.0)


@pytest.mark.parametrize(
    ("lengths", "changes", "conv"),
    [
        ([4, 4, 4, 4, 4], 0, 5),
        ([4, 5, 6, 6, 6, 6, 6], 2, 7),
        ([4, 5, 6, 6, 6, 6, 6, 6], 2, 7),  # the first step at which it holds
        ([4, 5, 4, 5, 4, 5], 5, None),
        ([4, 4, 4, 4], 0, None),  # fewer steps than the window
        ([], 0, None),
        ([1, 2, 2, 2, 2, 2, 1], 2, 6),
    ],
)
def test_draft_changes_and_convergence(lengths, changes, conv):
    assert draft_changes(lengths) == changes
    assert convergence_step(lengths, 5) == conv


def test_convergence_window_values():
    assert convergence_step([3, 3], 1) == 1
    assert convergence_step([3, 3], 0) is None
    assert convergence_step([1, 3, 3], 2) == 3


def test_summarize_mode():
    rows = [
        row(1, 100, k=4, phase="steady", category="code"),
        row(2, 200, k=5, phase="steady", category="prose"),
        row(3, 0, k=6, ok=0, phase="load", category="code"),
        row(4, 400, k=1, phase="load", category=""),
        row(5, 300, k=2, phase="recovery", category="code"),
    ]
    s = summarize_mode("adaptive", rows, W)
    assert s["mode"] == "adaptive" and s["steps"] == 5 and s["failures"] == 1
    assert s["draft_changes"] == 4 and s["convergence_step"] is None
    assert list(s["phases"]) == ["steady", "load", "recovery"]
    assert s["phases"]["load"]["steps"] == 2 and s["phases"]["load"]["avg_ms"] == 400
    assert s["phases"]["steady"]["median_ms"] == 100
    assert set(s["categories"]) == {"code", "prose"}
    assert s["categories"]["code"]["successes"] == 2
    assert s["categories"]["code"]["avg_ms"] == 200
    assert s["k_values"] == {"min": 1, "max": 6, "mean": pytest.approx(18 / 5)}
    assert s["avg_ms"] == 250
    json.dumps(s, allow_nan=False)


def test_summarize_mode_convergence_window():
    rows = [row(i + 1, 100, k=k) for i, k in enumerate([1, 2, 2, 2])]
    assert summarize_mode("a", rows, W)["convergence_step"] is None
    assert summarize_mode("a", rows, W, convergence_window=3)["convergence_step"] == 4
    assert summarize_mode("a", rows, ScoreSettings(convergence_window=2))["convergence_step"] == 3


def test_summary_types_are_plain():
    rows = [
        row(i + 1, float(v), draft_n=4, draft_n_accepted=3, observed_k=2.5)
        for i, v in enumerate([120.5, 99.25, 301.0])
    ]
    s = summarize_mode("fixed_4", rows, W)

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        else:
            assert x is None or type(x) in (int, float, str), (x, type(x))

    walk(s)
    json.dumps(s, allow_nan=False)


def test_quantile_ci95_takes_the_binomial_order_statistics() -> None:
    """n = 10: the textbook 95 % interval of the median is (x(2), x(9)), coverage 97.9 %."""
    from halospec_tui.core.stats import quantile_ci95

    values = [float(v) for v in range(10, 0, -1)]  # unsorted on purpose
    assert quantile_ci95(values, 50.0) == [2.0, 9.0]
    assert quantile_ci95(values[:5], 50.0) is None  # five values cannot give 95 %
    # B ~ Bin(100, 0.95): P(B <= 89) = 0.0115, P(B <= 90) = 0.0282, P(B <= 98) = 0.963
    assert quantile_ci95([float(v) for v in range(1, 101)], 95.0) == [90.0, 100.0]
    assert quantile_ci95([], 50.0) is None


def test_an_interrupted_step_is_counted_apart_not_as_a_failure() -> None:
    rows = [row(1, 100.0), row(2, 120.0), row(3, 0.0, ok=0, error="interrupted")]
    s = summarize_mode("m", rows, W)
    assert (s["steps"], s["successes"], s["failures"], s["interrupted"]) == (2, 2, 0, 1)
    assert s["success_rate"] == 1.0 and s["draft_changes"] == 0


def test_ttft_and_itl_per_mode_from_the_streamed_steps() -> None:
    rows = [
        row(i, 100.0 + i, ttft_ms=float(10 + i), itl_p50_ms=float(i), itl_p95_ms=float(2 * i))
        for i in range(1, 8)
    ] + [row(8, 90.0), row(9, 0.0, ok=0, ttft_ms=None)]
    s = summarize(rows, W)
    assert s["streamed_steps"] == 7
    assert (s["ttft_p50_ms"], s["ttft_p95_ms"]) == (14.0, 17.0)
    assert (s["itl_p50_ms"], s["itl_p95_ms"]) == (4.0, 8.0)  # medians of the steps' own
    assert s["ttft_p50_ci95_ms"] == [11.0, 17.0]
    none = summarize([row(1, 100.0)], W)
    assert none["streamed_steps"] == 0 and none["ttft_p50_ms"] is None
