"""Controllers: HaloSpec's latency rule table, acceptance stepping, the factory, properties."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halospec_tui.controllers.acceptance import (
    AcceptanceController,
    AcceptanceControllerSettings,
    estimate_drafts,
)
from halospec_tui.controllers.base import Observation
from halospec_tui.controllers.fixed import FixedController
from halospec_tui.controllers.latency import LatencyController, LatencyControllerSettings
from halospec_tui.controllers.registry import REGISTRY, make_controller
from halospec_tui.profile import Profile

LOW, HIGH = 900.0, 1200.0


def ok(lat: float, k: int = 4, **kw) -> Observation:
    return Observation(k=k, success=True, latency_ms=lat, **kw)


def fail(k: int = 4) -> Observation:
    return Observation(k=k, success=False, latency_ms=0.0)


def latency_at(k: int, ema: float | None) -> LatencyController:
    c = LatencyController(LatencyControllerSettings())
    c.low_thr_ms, c.high_thr_ms = LOW, HIGH
    c.k, c.ema_ms = k, ema
    return c


# --- fixed ------------------------------------------------------------------------------


def test_fixed():
    c = FixedController(3)
    assert (c.name, c.warmup_k) == ("fixed", 3)
    assert c.calibrate([1.0, 2.0]) == {}
    for obs in (ok(10.0, 3), fail(3), ok(99999.0, 3)):
        d = c.decide()
        assert (d.k, d.reason) == (3, "fixed")
        c.observe(obs)
    with pytest.raises(ValueError):
        FixedController(0)


# --- latency: the rule table ------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "ema", "expected"),
    [
        (4, None, 4),  # no EMA yet → keep
        (1, None, 1),
        (4, 800.0, 5),  # ema < low → +1
        (7, 800.0, 8),
        (8, 800.0, 8),  # max 8
        (4, 1300.0, 2),  # ema > high → −2
        (3, 1300.0, 1),
        (2, 1300.0, 1),  # min 1
        (1, 1300.0, 1),
        (4, 1000.0, 5),  # in band, below 6 → +1
        (5, 1000.0, 6),
        (6, 1000.0, 6),  # in band at 6 → hold
        (8, 1000.0, 8),
        (1, 1000.0, 2),
        (4, LOW, 5),  # equal to low is in band (strict <)
        (6, LOW, 6),
        (6, HIGH, 6),  # equal to high is in band (strict >)
        (6, HIGH + 0.001, 4),
        (6, LOW - 0.001, 7),
    ],
)
def test_latency_rule_table(k, ema, expected):
    c = latency_at(k, ema)
    d = c.decide()
    assert d.k == expected == c.k
    assert d.values == {"ema_ms": ema, "low_thr_ms": LOW, "high_thr_ms": HIGH}
    assert d.reason


def test_latency_reasons():
    assert latency_at(4, 812.0).decide().reason == "ema 812 ms < low 900 ms → k 4→5"
    assert latency_at(4, 1500.0).decide().reason == "ema 1500 ms > high 1200 ms → k 4→2"
    assert latency_at(8, 500.0).decide().reason == "ema 500 ms < low 900 ms → keep k 8 (at bound)"
    assert (
        latency_at(6, 1000.0).decide().reason == "ema 1000 ms in [900, 1200] ms, k ≥ 6 → keep k 6"
    )
    assert latency_at(4, None).decide().reason == "no EMA yet → keep k 4"


@pytest.mark.parametrize(
    ("warmup", "low", "high", "p_low", "p_high"),
    [
        ([], 9000.0, 22000.0, None, None),  # no warmup data → the defaults
        ([1000.0], 850.0, 1050.0, 1000.0, 1000.0),
        ([1000.0, 3000.0, 2000.0, 5000.0, 4000.0], 0.85 * 3000, 1.05 * 5000, 3000.0, 5000.0),
        ([100.0, 200.0, 300.0, 400.0], 0.85 * 200, 1.05 * 400, 200.0, 400.0),
    ],
)
def test_latency_calibration(warmup, low, high, p_low, p_high):
    c = LatencyController(LatencyControllerSettings())
    th = c.calibrate(warmup)
    assert th == {
        "low_thr_ms": pytest.approx(low),
        "high_thr_ms": pytest.approx(high),
        "p_low_ms": p_low,
        "p_high_ms": p_high,
    }
    assert (c.low_thr_ms, c.high_thr_ms) == (pytest.approx(low), pytest.approx(high))


def test_latency_defaults_and_ema():
    c = LatencyController(LatencyControllerSettings())
    assert (c.name, c.warmup_k, c.k, c.ema_ms) == ("latency", 4, 4, None)
    c.observe(ok(1000.0))
    assert c.ema_ms == 1000.0  # first value: the latency itself
    c.observe(ok(2000.0))
    assert c.ema_ms == pytest.approx(0.4 * 2000 + 0.6 * 1000)
    c.observe(fail())
    assert c.ema_ms == pytest.approx(1400.0)  # a failure leaves the EMA alone


def run_sequence(c: LatencyController, obs: list[Observation]) -> list[int]:
    """The original's loop: decide before each step, observe after; return the chosen ks."""
    chosen = []
    for o in obs:
        d = c.decide()
        chosen.append(d.k)
        c.observe(dataclasses.replace(o, k=d.k))
    return chosen


def test_latency_sequence_matches_original():
    c = LatencyController(LatencyControllerSettings())
    c.calibrate([1000.0] * 5)  # low 850, high 1050
    # step 1: no EMA → 4; fast replies climb by 1 to 8 and stay
    chosen = run_sequence(c, [ok(500.0)] * 7)
    assert chosen == [4, 5, 6, 7, 8, 8, 8]


def test_latency_first_step_failure_then_success():
    c = LatencyController(LatencyControllerSettings())
    c.calibrate([1000.0] * 5)
    chosen = run_sequence(c, [fail(), ok(1000.0), ok(1000.0), ok(1000.0)])
    # failure at step 1 → k 1; still no EMA → keep 1; then in band: +1 per step
    assert chosen == [4, 1, 2, 3]


def test_latency_failure_then_success_uses_previous_ema():
    c = LatencyController(LatencyControllerSettings())
    c.calibrate([1000.0] * 5)
    chosen = run_sequence(c, [ok(500.0), ok(500.0), fail(), ok(500.0), ok(500.0)])
    # 4 (no EMA), 5 (fast), 6, then failure → 1, next decision from k=1 and the old EMA → 2
    assert chosen == [4, 5, 6, 2, 3]
    d = c.decide()
    assert d.k == 4


def test_latency_failure_reason_mentions_reset():
    c = latency_at(6, 1000.0)
    c.observe(fail(6))
    assert c.k == 1
    d = c.decide()
    assert d.k == 2 and d.reason.startswith("last step failed, k reset to 1; ")
    assert "failed" not in c.decide().reason


def test_latency_slow_drops_to_min():
    c = LatencyController(LatencyControllerSettings())
    c.calibrate([1000.0] * 5)
    assert run_sequence(c, [ok(5000.0)] * 5) == [4, 2, 1, 1, 1]


def test_latency_custom_settings_bounds():
    s = LatencyControllerSettings(initial_k=10, k_min=2, k_max=6, failure_k=1, step_up=3)
    c = LatencyController(s)
    assert c.k == 6  # initial clamped into [k_min, k_max]
    c.observe(fail())
    assert c.k == 2  # failure_k clamped to k_min
    c.low_thr_ms, c.high_thr_ms, c.ema_ms = LOW, HIGH, 100.0
    assert c.decide().k == 5 and c.decide().k == 6 and c.decide().k == 6


# --- acceptance -------------------------------------------------------------------------


def acc_obs(accepted: int, drafted: int, k: int = 4, predicted: int | None = None) -> Observation:
    return Observation(
        k=k,
        success=True,
        latency_ms=100.0,
        tokens=64,
        draft_n=drafted,
        draft_n_accepted=accepted,
        predicted_n=predicted,
    )


@pytest.mark.parametrize(
    ("rate_num", "k", "expected"),
    [
        (70, 4, 8),  # > 0.65 → +4
        (66, 4, 8),
        (65, 4, 6),  # exactly 0.65 is not > 0.65 → +2
        (60, 4, 6),  # > 0.55 → +2
        (55, 4, 4),  # exactly 0.55 → keep
        (50, 4, 4),
        (45, 4, 4),  # exactly 0.45 → keep
        (40, 4, 2),  # < 0.45 → −2
        (35, 6, 4),  # exactly 0.35 → −2
        (30, 6, 2),  # < 0.35 → −4
        (70, 7, 8),  # bounded by k_max 8
        (70, 8, 8),
        (30, 3, 1),  # bounded by k_min 1
        (40, 1, 1),
    ],
)
def test_acceptance_stepping_table(rate_num, k, expected):
    c = AcceptanceController(AcceptanceControllerSettings(initial_k=k))
    c.observe(acc_obs(rate_num, 100, k=k))  # 100 drafted ≥ adjust_every 64
    assert c.acceptance == pytest.approx(rate_num / 100)
    d = c.decide()
    assert d.k == expected == c.k
    assert d.values["acceptance"] == pytest.approx(rate_num / 100)
    assert d.values["drafted_since_adjust"] == 100
    assert c.drafted_since_adjust == 0


def test_acceptance_waits_for_adjust_every():
    c = AcceptanceController(AcceptanceControllerSettings())
    c.observe(acc_obs(30, 40))
    d = c.decide()
    assert d.k == 4 and d.reason == "drafted 40/64 tokens since last adjustment → keep k 4"
    c.observe(acc_obs(24, 24))  # 64 drafted in all, acceptance 54/64 = 0.84
    d = c.decide()
    assert d.k == 8 and "k 4→8" in d.reason
    assert c.decide().k == 8  # counter reset: no second adjustment without new drafts


def test_acceptance_no_counters():
    c = AcceptanceController(AcceptanceControllerSettings())
    for _ in range(5):
        c.observe(ok(100.0))
        d = c.decide()
        assert d.k == 4
        assert d.reason == "no draft counters from the server → keep k 4"
        assert d.values["acceptance"] is None


def test_acceptance_failure_keeps_k_and_learns_nothing():
    c = AcceptanceController(AcceptanceControllerSettings())
    c.observe(Observation(k=4, success=False, latency_ms=0.0, draft_n=100, draft_n_accepted=0))
    assert c.acceptance is None and c.decide().k == 4


def test_acceptance_reply_without_counters_after_some():
    c = AcceptanceController(AcceptanceControllerSettings())
    c.observe(acc_obs(10, 20))
    c.observe(ok(100.0))
    d = c.decide()
    assert d.k == 4 and "last reply had no draft counters" in d.reason


def test_acceptance_window_is_weighted_by_drafts():
    s = AcceptanceControllerSettings(window=10, adjust_every=1)
    c = AcceptanceController(s)
    # predicted 20, accepted 12 → 8 verify steps (drafts) at 12/16
    c.observe(acc_obs(12, 16, predicted=20))
    assert c.window_drafts == 8 and c.acceptance == pytest.approx(0.75)
    # 4 more drafts at 0.25: the window keeps (8, 0.75) + (4, 0.25) trimmed to 10 drafts
    c.observe(acc_obs(2, 8, predicted=6))
    assert c.window_drafts == 10
    assert c.acceptance == pytest.approx((6 * 0.75 + 4 * 0.25) / 10)
    # a big request replaces the window entirely
    c.observe(acc_obs(0, 40, k=4))  # no predicted_n: ceil(40/4) = 10 drafts at 0.0
    assert c.window_drafts == 10 and c.acceptance == 0.0


@pytest.mark.parametrize(
    ("accepted", "drafted", "k", "predicted", "drafts"),
    [
        (50, 50, 4, 64, 14),  # servers.md example: 64 − 50 verify steps
        (0, 30, 3, None, 10),  # no predicted_n: ceil(draft_n / k)
        (0, 31, 3, None, 11),
        (5, 5, 4, 5, 2),  # predicted_n not above accepted: ceil(5 / 4)
        (1, 2, 4, 100, 2),  # never more drafts than drafted tokens
        (0, 0, 4, 10, 1),  # at least one
    ],
)
def test_estimate_drafts(accepted, drafted, k, predicted, drafts):
    assert estimate_drafts(acc_obs(accepted, drafted, k=k, predicted=predicted)) == drafts


def test_acceptance_custom_bounds():
    s = AcceptanceControllerSettings(initial_k=4, k_min=4, k_max=24)
    c = AcceptanceController(s)
    for _ in range(6):
        c.observe(acc_obs(90, 100))
        c.decide()
    assert c.k == 24
    for _ in range(8):
        c.observe(acc_obs(10, 100))
        c.decide()
    assert c.k == 4


# --- factory ------------------------------------------------------------------------------


def test_make_controller():
    p = Profile()
    p.controller.latency.initial_k = 3
    fixed = make_controller("fixed_7", p.controller)
    assert isinstance(fixed, FixedController) and fixed.decide().k == 7
    for mode in ("adaptive", "adaptive:latency"):
        c = make_controller(mode, p.controller)
        assert isinstance(c, LatencyController) and c.k == 3
    assert isinstance(make_controller("adaptive:acceptance", p.controller), AcceptanceController)


@pytest.mark.parametrize("mode", ["adaptive:nope"])
def test_make_controller_unavailable(mode):
    with pytest.raises(ValueError, match="not available"):
        make_controller(mode, Profile().controller)


@pytest.mark.parametrize("mode", ["fixed", "fixed_x", "banana", ""])
def test_make_controller_bad_mode(mode):
    with pytest.raises(ValueError, match="unknown mode"):
        make_controller(mode, Profile().controller)


def test_registry_names_match_controllers():
    assert set(REGISTRY) == {"latency", "acceptance", "model", "bandit", "heuristic"}
    p = Profile()
    assert make_controller("adaptive:latency", p.controller).name == "latency"
    assert make_controller("adaptive:acceptance", p.controller).name == "acceptance"


# --- properties ---------------------------------------------------------------------------

observations = st.lists(
    st.builds(
        Observation,
        k=st.integers(1, 64),
        success=st.booleans(),
        latency_ms=st.floats(0, 1e6, allow_nan=False),
        tokens=st.integers(0, 512),
        draft_n=st.none() | st.integers(0, 512),
        draft_n_accepted=st.none() | st.integers(0, 512),
        predicted_n=st.none() | st.integers(0, 600),
    ),
    max_size=60,
)
bounds = st.tuples(st.integers(1, 16), st.integers(0, 16)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=200, deadline=None)
@given(
    obs=observations,
    b=bounds,
    warmup=st.lists(st.floats(1, 1e5), max_size=6),
    initial=st.integers(1, 64),
    failure_k=st.integers(1, 64),
)
def test_latency_k_always_in_bounds(obs, b, warmup, initial, failure_k):
    s = LatencyControllerSettings(k_min=b[0], k_max=b[1], initial_k=initial, failure_k=failure_k)
    c = LatencyController(s)
    c.calibrate(warmup)
    for o in obs:
        d = c.decide()
        assert b[0] <= d.k <= b[1]
        c.observe(o)
        assert b[0] <= c.k <= b[1]


@settings(max_examples=200, deadline=None)
@given(obs=observations, b=bounds, initial=st.integers(1, 64))
def test_acceptance_k_always_in_bounds(obs, b, initial):
    c = AcceptanceController(
        AcceptanceControllerSettings(k_min=b[0], k_max=b[1], initial_k=initial, adjust_every=8)
    )
    for o in obs:
        if o.draft_n is not None and o.draft_n_accepted is not None:
            o = dataclasses.replace(o, draft_n_accepted=min(o.draft_n_accepted, o.draft_n))
        d = c.decide()
        assert b[0] <= d.k <= b[1]
        c.observe(o)
        rate = c.acceptance
        assert rate is None or 0.0 <= rate <= 1.0
        assert c.window_drafts <= c.s.window


@settings(max_examples=300, deadline=None)
@given(
    warmup=st.lists(st.floats(1, 1e5), min_size=0, max_size=8),
    latency=st.floats(1, 1e5),
    initial=st.integers(1, 8),
)
def test_latency_converges_on_constant_input(warmup, latency, initial):
    c = LatencyController(LatencyControllerSettings(initial_k=initial))
    c.calibrate(warmup)
    ks = run_sequence(c, [ok(latency)] * 40)
    tail = ks[-20:]
    assert len(set(tail)) == 1, ks  # k stops changing
    changes = sum(1 for a, b in zip(ks, ks[1:], strict=False) if a != b)
    assert changes <= 8, ks  # at most the walk across [1, 8]: no oscillation
    reversals = sum(
        1 for a, b, c_ in zip(ks, ks[1:], ks[2:], strict=False) if (b - a) * (c_ - b) < 0
    )
    assert reversals <= 2, ks
