"""The new controllers (model, bandit, heuristic) on scripted reply sequences.

Replies come from a small speculative-decoding simulator (`Sim`): per verify step it drafts
min(k, remaining − 1) tokens, accepts a leading run with probability α per token, and costs
v + k·d ms; a request also pays a fixed overhead. With `exact=True` it returns expected counts
instead of random ones (a constant function of k: "constant input").
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halospec_tui.controllers import model as model_module
from halospec_tui.controllers.bandit import BanditController, BanditControllerSettings
from halospec_tui.controllers.base import Observation
from halospec_tui.controllers.heuristic import HeuristicController, HeuristicControllerSettings
from halospec_tui.controllers.model import (
    LevelCusum,
    ModelController,
    accepted_per_step,
    best_k,
    solve_alpha,
    tokens_per_step,
    verify_steps,
)
from halospec_tui.controllers.model_settings import ModelControllerSettings
from halospec_tui.controllers.registry import NEW_CONTROLLERS, REGISTRY, make_controller
from halospec_tui.profile import Profile

# --- the simulator ------------------------------------------------------------------------


@dataclasses.dataclass
class Sim:
    alpha: float = 0.8
    v: float = 2.5  # ms per verify step
    d: float = 0.15  # ms per drafted token
    overhead: float = 5.0  # ms per request (HTTP, prefill)
    tokens: int = 128
    noise: float = 0.0  # lognormal sd of the time
    exact: bool = False
    counters: bool = True
    timings: bool = True

    def expected_ms(self, k: int) -> float:
        """Expected client latency of a request at draft length k (ignoring the tail)."""
        return self.overhead + self.tokens / tokens_per_step(self.alpha, k) * (self.v + k * self.d)

    def reply(self, k: int, rng: random.Random) -> Observation:
        if self.exact:
            steps = max(1, round((self.tokens - 1) / tokens_per_step(self.alpha, k)))
            drafted = steps * k
            accepted = round(steps * accepted_per_step(self.alpha, k))
            produced = 1 + accepted + steps
            ms = steps * (self.v + k * self.d)
        else:
            produced, steps, drafted, accepted, ms = 1, 0, 0, 0, 0.0
            while produced < self.tokens:
                kk = min(k, self.tokens - produced - 1)
                acc = 0
                while acc < kk and rng.random() < self.alpha:
                    acc += 1
                steps += 1
                drafted += kk
                accepted += acc
                produced += acc + 1
                ms += self.v + kk * self.d
        if self.noise:
            ms *= math.exp(rng.gauss(0.0, self.noise))
        return Observation(
            k=k,
            success=True,
            latency_ms=self.overhead + ms,
            tokens=produced,
            draft_n=drafted if self.counters else None,
            draft_n_accepted=accepted if self.counters else None,
            predicted_n=produced if self.counters else None,
            predicted_ms=ms if self.timings else None,
        )

    def best(self, k_min: int = 1, k_max: int = 8) -> int:
        return min(range(k_min, k_max + 1), key=self.expected_ms)


Schedule = Callable[[int], Sim]  # step (0-based) -> environment


def drive(
    ctl, schedule: Schedule, steps: int, seed: int = 0, reasons: list[str] | None = None
) -> list[int]:
    """Run a controller against the simulator; returns the k of every step (and appends
    every decision's reason to `reasons` if given)."""
    rng = random.Random(seed)
    ks = []
    for i in range(steps):
        decision = ctl.decide()
        ks.append(decision.k)
        if reasons is not None:
            reasons.append(decision.reason)
        ctl.observe(schedule(i).reply(decision.k, rng))
    return ks


def efficiency(ks: list[int], schedule: Schedule, start: int = 0, end: int | None = None) -> float:
    """Expected time of the per-step oracle / expected time of the ks (1.0 = oracle)."""
    end = len(ks) if end is None else end
    chosen = sum(schedule(i).expected_ms(ks[i]) for i in range(start, end))
    oracle = sum(schedule(i).expected_ms(schedule(i).best()) for i in range(start, end))
    return oracle / chosen


def aba(ks: list[int]) -> int:
    """Oscillations: steps where k returns to the value of two steps before (A, B, A)."""
    return sum(1 for a, b, c in zip(ks, ks[1:], ks[2:], strict=False) if a == c != b)


def new(name: str, **kw):
    cls, st_cls = {
        "model": (ModelController, ModelControllerSettings),
        "bandit": (BanditController, BanditControllerSettings),
        "heuristic": (HeuristicController, HeuristicControllerSettings),
    }[name]
    return cls(st_cls(**kw))


def ping_pong(ks: list[int], length: int = 5) -> bool:
    """A B A B A ... of `length` steps anywhere: persistent flip-flopping between two values."""
    run = 1
    for i in range(2, len(ks)):
        run = run + 1 if ks[i] == ks[i - 2] != ks[i - 1] else 1
        if run + 1 >= length:
            return True
    return False


ALL = ("model", "bandit", "heuristic")

# --- the model's arithmetic ---------------------------------------------------------------


def test_expected_tokens_per_step_is_leviathans():
    assert tokens_per_step(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)
    assert accepted_per_step(0.8, 4) == pytest.approx(tokens_per_step(0.8, 4) - 1)
    assert accepted_per_step(1.0, 5) == 5.0
    assert accepted_per_step(0.5, 0) == 0.0


@pytest.mark.parametrize(
    ("alpha", "c", "k"),
    # integer optimum of argmax E(k)/(v + k·d), the model of docs/controllers.md (v = 1, d = c)
    [
        (0.6, 0.01, 7),
        (0.6, 0.05, 4),
        (0.6, 0.1, 3),
        (0.6, 0.2, 2),
        (0.8, 0.05, 8),
        (0.8, 0.1, 6),
        (0.8, 0.2, 4),
        (0.9, 0.1, 10),
        (0.9, 0.2, 7),
        (0.9, 0.01, 24),
    ],
)
def test_best_k_matches_the_optimum_table(alpha, c, k):
    assert best_k(alpha, 1.0, c, 1, 64)[0] == k


@given(alpha=st.floats(0.05, 0.97), k=st.integers(1, 12), steps=st.integers(5, 500))
def test_solve_alpha_inverts_the_leading_run_mean(alpha, k, steps):
    accepted = steps * accepted_per_step(alpha, k)
    assert solve_alpha([(accepted, steps, k)]) == pytest.approx(alpha, abs=1e-5)


def test_acceptance_estimate_is_not_the_naive_rate():
    # 20 steps of k = 8 accepting 4 each: accepted/drafted = 0.5, but α is higher (leading run)
    a = solve_alpha([(80.0, 20.0, 8.0)])
    assert a is not None and a > 0.75
    assert accepted_per_step(a, 8) == pytest.approx(4.0, abs=1e-4)


def test_verify_steps_from_counters():
    obs = Observation(
        k=4, success=True, latency_ms=1, draft_n=40, draft_n_accepted=30, predicted_n=64
    )
    assert verify_steps(obs) == (33, 33)  # 64 − 30 − 1 (the first token is the prefill's)
    assert verify_steps(
        Observation(k=4, success=True, latency_ms=1, draft_n=40, draft_n_accepted=3)
    ) == (10, 10)
    assert verify_steps(Observation(k=4, success=True, latency_ms=1)) is None


# --- common contract ------------------------------------------------------------------------


def test_registry_and_profile_settings():
    p = Profile()
    p.controller.model.initial_k = 3
    p.controller.bandit.initial_k = 6
    p.controller.heuristic.initial_k = 2
    assert set(NEW_CONTROLLERS) <= set(REGISTRY)
    for name, cls, k in (
        ("model", ModelController, 3),
        ("bandit", BanditController, 6),
        ("heuristic", HeuristicController, 2),
    ):
        c = make_controller(f"adaptive:{name}", p.controller)
        assert isinstance(c, cls) and c.name == name and c.decide().k == k
        assert c.warmup_k == 4 and c.calibrate([1.0, 2.0]) == {}


@pytest.mark.parametrize("name", ALL)
def test_failures_and_missing_counters_keep_k(name):
    c = new(name, initial_k=5)
    assert c.decide().k == 5
    c.observe(Observation(k=5, success=False, latency_ms=0.0))
    d = c.decide()
    assert d.k == 5 and "failed" in d.reason
    if name != "bandit":  # the bandit needs only tokens and latency
        c.observe(Observation(k=5, success=True, latency_ms=80.0, tokens=64))
        d = c.decide()
        assert d.k == 5 and "counters" in d.reason


@pytest.mark.parametrize("name", ALL)
def test_every_decision_has_a_reason(name):
    c = new(name)
    rng = random.Random(1)
    for _ in range(30):
        d = c.decide()
        assert d.reason and isinstance(d.values, dict)
        c.observe(Sim(alpha=0.7).reply(d.k, rng))


observations = st.builds(
    Observation,
    k=st.integers(1, 64),
    success=st.booleans(),
    latency_ms=st.floats(0, 1e6, allow_nan=False) | st.just(float("inf")),
    tokens=st.integers(0, 1024),
    draft_n=st.none() | st.integers(0, 1024),
    draft_n_accepted=st.none() | st.integers(0, 1024),
    predicted_n=st.none() | st.integers(0, 1100),
    predicted_ms=st.none() | st.floats(0, 1e6, allow_nan=False),
    prompt_ms=st.none() | st.floats(0, 1e4, allow_nan=False),
)


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(
    bounds=st.tuples(st.integers(1, 12), st.integers(0, 12)),
    obs=st.lists(observations, max_size=40),
)
def test_k_stays_within_bounds_whatever_the_replies(name, bounds, obs):
    lo, span = bounds
    c = new(name, k_min=lo, k_max=lo + span, initial_k=lo + span // 2)
    for o in obs:
        d = c.decide()
        assert lo <= d.k <= lo + span
        c.observe(dataclasses.replace(o, k=d.k))
    assert lo <= c.decide().k <= lo + span


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=25, deadline=None)
@given(
    alpha=st.floats(0.3, 0.95),
    d=st.floats(0.02, 3.0),
    lo=st.integers(1, 3),
    hi=st.integers(4, 10),
    seed=st.integers(0, 10_000),
)
def test_k_stays_within_bounds_on_a_drifting_server(name, alpha, d, lo, hi, seed):
    c = new(name, k_min=lo, k_max=hi, initial_k=hi)

    def sched(i: int) -> Sim:
        return Sim(alpha=alpha if i < 30 else 1.0 - alpha / 2, d=d * (1 + i / 10), noise=0.1)

    assert all(lo <= k <= hi for k in drive(c, sched, 60, seed))


# --- convergence on a stationary server ------------------------------------------------------

STATIONARY = [
    Sim(alpha=0.85),
    Sim(alpha=0.72),
    Sim(alpha=0.6, d=0.75),
    Sim(alpha=0.9, d=0.3),
    Sim(alpha=0.5, d=0.3),
]


@pytest.mark.parametrize("sim", STATIONARY, ids=lambda s: f"a{s.alpha}-d{s.d}")
def test_model_converges_to_the_best_k(sim):
    effs, finals = [], []
    for seed in range(4):
        c = new("model")
        ks = drive(c, lambda i: sim, 80, seed)
        effs.append(efficiency(ks, lambda i: sim, 20))
        finals.append(c.decide().k)
    # after 20 steps within 3 % of the best fixed k's expected time, and ending next to it
    assert min(effs) >= 0.97
    assert all(abs(k - sim.best()) <= 1 for k in finals), finals


@pytest.mark.parametrize("sim", STATIONARY, ids=lambda s: f"a{s.alpha}-d{s.d}")
def test_bandit_converges_near_the_best_k(sim):
    effs = [
        efficiency(drive(new("bandit"), lambda i: sim, 120, seed), lambda i: sim, 40)
        for seed in range(4)
    ]
    assert sum(effs) / len(effs) >= 0.95


@pytest.mark.parametrize("alpha", [0.6, 0.7, 0.8, 0.9])
def test_heuristic_settles_where_a_third_of_drafts_are_full(alpha):
    """HF's +2/−1 rule drifts to α^k ≈ 1/3 (k ≈ ln 3 / −ln α) and cycles around it."""
    sim = Sim(alpha=alpha, exact=True)
    ks = drive(new("heuristic", k_max=32), lambda i: sim, 80)
    k_eq = math.log(3) / -math.log(alpha)
    tail = ks[-30:]
    assert min(tail) >= math.floor(k_eq) - 1 and max(tail) <= math.ceil(k_eq) + 2


def test_heuristic_request_granularity_is_literal():
    c = new("heuristic", granularity="request", initial_k=4)
    c.decide()
    c.observe(
        Observation(
            k=4,
            success=True,
            latency_ms=10,
            tokens=64,
            draft_n=8,
            draft_n_accepted=8,
            predicted_n=11,
        )
    )
    assert c.decide().k == 6  # every drafted token accepted → +2
    c.observe(
        Observation(
            k=6,
            success=True,
            latency_ms=10,
            tokens=64,
            draft_n=40,
            draft_n_accepted=39,
            predicted_n=64,
        )
    )
    assert c.decide().k == 5  # one rejected → −1


# --- shifts: the right direction -------------------------------------------------------------


def _mean(xs: list[int]) -> float:
    return sum(xs) / len(xs)


@pytest.mark.parametrize("name", ALL)
def test_acceptance_drop_moves_k_down(name):
    def sched(i: int) -> Sim:
        return Sim(alpha=0.9 if i < 50 else 0.45, d=0.3)

    for seed in range(3):
        ks = drive(new(name), sched, 100, seed)
        assert _mean(ks[80:]) < _mean(ks[30:50]) - 2, ks


@pytest.mark.parametrize("name", ["model", "bandit"])
def test_draft_cost_rise_moves_k_down(name):
    """CPU load: drafting gets 20x dearer, the verify step a little."""

    def sched(i: int) -> Sim:
        return Sim(alpha=0.85, d=3.0, v=3.0) if i >= 50 else Sim(alpha=0.85)

    for seed in range(3):
        ks = drive(new(name), sched, 100, seed)
        assert _mean(ks[80:]) <= 2.5 < _mean(ks[30:50]) - 3, ks


@pytest.mark.parametrize("name", ["model", "bandit"])
def test_cost_drop_moves_k_back_up(name):
    def sched(i: int) -> Sim:
        return Sim(alpha=0.85, d=3.0, v=3.0) if i < 50 else Sim(alpha=0.85)

    for seed in range(3):
        ks = drive(new(name), sched, 100, seed)
        assert _mean(ks[80:]) > _mean(ks[30:50]) + 3, ks


def test_model_detects_shifts_and_says_so():
    c = new("model")

    def sched(i: int) -> Sim:
        return Sim(alpha=0.85, d=3.0, v=3.0) if i >= 40 else Sim(alpha=0.85)

    rng = random.Random(3)
    reasons = []
    for i in range(60):
        d = c.decide()
        reasons.append(d.reason)
        c.observe(sched(i).reply(d.k, rng))
    assert c.shifts >= 1
    assert any("cost shift detected" in r for r in reasons[40:45])


def test_model_falls_back_to_client_latency():
    sim = Sim(alpha=0.8, d=0.6, timings=False)
    c = new("model")
    ks = drive(c, lambda i: sim, 60)
    assert c.timing == "client"
    assert abs(ks[-1] - sim.best()) <= 1


def test_model_probes_only_when_unsure():
    """On an exact (noise-free) server the model probes a few times, then stays."""
    sim = Sim(alpha=0.8, exact=True)
    c = new("model")
    reasons = [None] * 150
    rng = random.Random(0)
    for i in range(150):
        d = c.decide()
        reasons[i] = d.reason
        c.observe(sim.reply(d.k, rng))
    probes = [i for i, r in enumerate(reasons) if "probe" in r]
    assert 1 <= len(probes) <= 8
    assert all(i < 100 for i in probes[: len(probes) - 2])  # probes thin out (back-off)


def test_model_returns_to_the_earlier_cost_regime_when_load_stops():
    """CPU load on for 80 requests, then off. At k 1 under load the step time falls back by
    about one sd of its noise when the load stops, too little for the shift screen, and the
    line through one k keeps the slope measured under load: before, the model could sit at
    k 1 for 50 requests. It remembers the regime before the load and returns to it (or
    probes to find out) within a few requests, saying so."""
    quiet, load = Sim(alpha=0.85, noise=0.03), Sim(alpha=0.85, d=1.5, v=3.2, noise=0.2)
    assert (quiet.best(), load.best()) == (8, 2)
    for seed in range(12):
        reasons: list[str] = []
        schedule = lambda i: load if 40 <= i < 120 else quiet  # noqa: E731
        ks = drive(new("model"), schedule, 150, seed, reasons)
        # under load, near the best k 2 (k 3 costs 0.3 % more, k 8 23 %)
        assert efficiency(ks, schedule, 60, 120) > 0.94, ks
        back = next((i for i in range(120, 150) if ks[i] >= 7), None)
        assert back is not None and back - 120 <= 10, (seed, ks)
        assert any("cost back to an earlier regime" in r for r in reasons[120:135]), seed


def test_model_lets_the_verify_step_prior_fade_with_the_data(monkeypatch):
    """After a cost shift the old verify-step cost is the prior that lets one k tell how dear
    a drafted token became; but on the embedded engine CPU load made drafting 36x dearer
    while a verify step got cheaper, and a prior at full weight for ever (the data are
    discounted, it was not) held v near the quiet value through 60 requests at k 1, 2, 3 and
    5: k 3 instead of 1 (recorded run, load phase 0.80 of the oracle). The prior's weight is
    discounted like the data's, down to a floor, so a line measured at two ks wins."""
    quiet = Sim(alpha=0.85, v=2.4, d=0.05, noise=0.03)
    load = Sim(alpha=0.85, v=0.8, d=2.0, noise=0.3)

    def verify_cost(floor: float, seed: int) -> tuple[float, float]:
        monkeypatch.setattr(model_module, "V_PRIOR_FLOOR", floor)
        c, rng = new("model"), random.Random(seed)
        for _ in range(40):
            c.observe(quiet.reply(8, rng))
        for i in range(120):  # the same replies for both floors: k set here, not chosen
            c.observe(load.reply((1, 3)[i % 2], rng))
            if i == 5:
                early = c.costs()["v"]
        assert c.shifts >= 1
        return early, c.costs()["v"]

    fading = model_module.V_PRIOR_FLOOR
    assert fading < 1.0
    for seed in range(6):
        early, late = verify_cost(fading, seed)
        assert early > 1.5, seed  # a few requests in: still the prior's
        _, held = verify_cost(1.0, seed)  # the prior at full weight for ever
        assert abs(late - load.v) < abs(held - load.v) - 0.05, (seed, late, held)


def test_model_climbs_at_once_after_a_level_shift_when_drafting_got_cheap():
    """The model starts under load (drafting dear, best k 1; no earlier regime to return
    to), then the load stops: at k 1 the step time falls by only ~12 %, which the line
    absorbs, until the level test fires. The new regime keeps the old slope as its prior but
    not the old intercept (the level shift just proved it wrong): one probe then shows that
    drafting is cheap and k climbs within a few requests. With the old intercept as prior
    the line through k 1 kept the slope steep and k stayed at 1 (recorded run: recovery 0.58
    of the oracle); here, in 3 of 12 seeds, for all of the 80 requests."""
    load = Sim(alpha=0.85, v=1.0, d=1.8, noise=0.08)
    quiet = Sim(alpha=0.85, v=2.4, d=0.05, noise=0.08)
    assert (load.best(), quiet.best()) == (1, 8)
    fired = 0
    for seed in range(12):
        reasons: list[str] = []
        ks = drive(new("model"), lambda i: load if i < 60 else quiet, 140, seed, reasons)
        assert max(ks[30:60]) <= 3, (seed, ks[30:60])  # under load: near k 1
        alarm = next((i for i in range(60, 140) if "cost level shift" in reasons[i]), None)
        if alarm is None:
            continue  # (the regular probes find it later; not what this test is about)
        fired += 1
        assert max(ks[alarm : alarm + 5]) >= 6, (seed, alarm, ks[alarm : alarm + 10])
    assert fired >= 6


def test_model_remembers_the_quiet_regime_through_two_load_levels():
    """Load that changes level on the way (a second cost shift) must not make the model
    forget the quiet server: it used to remember only the regime before the last shift,
    the first load level, and then sat at k 1 for the whole recovery (measured on a recorded
    run: 0.59 of the oracle). It keeps several and returns to the quiet one."""
    quiet = Sim(alpha=0.85, noise=0.03)
    light = Sim(alpha=0.85, d=1.5, v=3.2, noise=0.2)
    heavy = Sim(alpha=0.85, d=4.0, v=6.0, noise=0.2)
    assert (quiet.best(), light.best(), heavy.best()) == (8, 2, 1)

    def schedule(i: int) -> Sim:
        return light if 40 <= i < 80 else heavy if 80 <= i < 130 else quiet

    for seed in range(12):
        c, reasons = new("model"), []
        ks = drive(c, schedule, 160, seed, reasons)
        assert c.shifts >= 2, seed
        back = next((i for i in range(130, 160) if ks[i] >= 7), None)
        assert back is not None and back - 130 <= 12, (seed, ks[120:])
        assert any("cost back to an earlier regime" in r for r in reasons[130:145]), seed


def test_model_probes_only_what_it_can_pay_back():
    """Under heavy CPU load drafting is dear (best k 1, a request at k 2 loses ~20 %): a probe
    is sent only when its predicted loss is at most what knowing the slope is expected to
    save until the next probe, and a skipped probe is said in the reason."""
    heavy = Sim(alpha=0.85, d=10.0, v=3.0, noise=0.2)
    probes = skipped = 0
    for seed in range(5):
        c, rng = new("model"), random.Random(seed)
        for i in range(120):
            k_before = c.k
            d = c.decide()
            if d.values.get("probe"):
                probes += 1
                assert d.values["probe_cost"] <= d.values["probe_budget"]
                assert 1 <= abs(d.k - k_before) <= 2
            if "no probe" in d.reason:
                skipped += 1
                assert d.values["probe_cost"] > d.values["probe_budget"]
                assert "probe" not in d.values
            c.observe((Sim(alpha=0.85, noise=0.15) if i < 40 else heavy).reply(d.k, rng))
    assert probes > 0 and skipped > 0


def test_model_does_not_jump_on_one_slow_request():
    """After a long stay at one k the slope rests on old probes that have faded, and one
    request at a neighbouring k sets it: a request 10 % slow at k 6 (inside the noise, so
    no shift) made the old model jump from 6 to 2 (measured: such jumps lost 3 % of a
    stationary run). Now a jump of two or more k that only the last request asks for waits
    for one more request at the same k: a spike is averaged with the next request, and a
    lasting change still moves k."""
    sim = Sim(alpha=0.78, v=1.83, d=0.159, overhead=3.0, exact=True)

    def feed(c, k: int, factor: float = 1.0) -> None:
        c.k = k  # the k the controller asked for (scripted here)
        o = sim.reply(k, random.Random(0))
        ms = o.predicted_ms * factor
        c.observe(dataclasses.replace(o, predicted_ms=ms, latency_ms=ms + sim.overhead))

    for stay in (40, 60, 80):
        for lasting in (False, True):
            c = new("model")
            for i in range(6):
                feed(c, 3 if i % 2 else 7)  # the slope is measured once ...
            for _ in range(stay):
                feed(c, 5)  # ... then the data sit at one k
            feed(c, 6, 1.10)  # one slow request at k 6
            held = c.decide()
            assert held.k == 6, (stay, held.reason)
            assert "without the last request" in held.reason
            feed(c, 6, 1.10 if lasting else 1.0)
            after = c.decide()
            if lasting:
                assert after.k <= 4, (stay, after.reason)  # the slope did change: follow it
            else:
                assert after.k >= 4, (stay, after.reason)


# --- no oscillation on constant input -------------------------------------------------------

# ABA triples (k returns to its value of two steps before) allowed in 200 constant steps. Each
# is a deliberate probe, not a flip-flop (ping_pong forbids those): the model probes when its
# slope estimate has faded and backs off exponentially while probes change nothing (a scan of
# the domain, alpha by 0.005 and d by 0.05, found at most 14, near alpha 0.79, d 1.55); the bandit
# re-explores a neighbour whenever its discounted play count fades (discount 0.97: about every
# 4-10 requests, its forgetting is what lets it follow a drifting optimum, so the bound is
# loose: a scan of this test's whole domain, alpha 0.40..0.83 by 0.002 and d 0.05..2.0,
# found at most 53, where drafting is nearly free (d 0.05) and neighbouring arms differ by
# under 1 %, so the probes cost almost nothing); the heuristic cycles k, k+2, k+1 (no ABA at
# all) except where k_max clips its +2. The examples are derandomized: the bound is a
# measured one, and CI must not meet a new example on every run.
MAX_ABA = {"model": 16, "bandit": 60, "heuristic": 0}


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=20, deadline=None, derandomize=True)
@given(alpha=st.floats(0.4, 0.83), d=st.floats(0.05, 2.0))
def test_no_oscillation_on_constant_input(name, alpha, d):
    sim = Sim(alpha=alpha, d=d, exact=True)
    ks = drive(new(name), lambda i: sim, 200)
    assert aba(ks) <= MAX_ABA[name], ks
    assert not ping_pong(ks[20:], 7), ks


@pytest.mark.parametrize("name", ALL)
def test_no_oscillation_when_the_server_ignores_k(name):
    """Identical replies whatever k: nothing to learn, nothing to chase."""
    c = new(name)
    ks = []
    for _ in range(200):
        k = c.decide().k
        ks.append(k)
        c.observe(
            Observation(
                k=k,
                success=True,
                latency_ms=100.0,
                tokens=64,
                draft_n=40,
                draft_n_accepted=30,
                predicted_n=64,
                predicted_ms=90.0,
            )
        )
    assert aba(ks) <= MAX_ABA[name]
    assert not ping_pong(ks[20:], 7), ks


def test_level_cusum_adds_up_a_small_lasting_shift_but_not_noise():
    """A step time that stays 1.5 sd below the line (CPU load stopped while k was small) is
    too small for the shift screen (4 sd); Page's CUSUM adds it up within a few requests,
    while noise and a single spike do not reach its limit."""
    rng = random.Random(1)
    noise = LevelCusum()
    alarms = sum(noise.push(rng.gauss(0.0, 1.0)) for _ in range(1000))
    assert alarms <= 2  # ~one false alarm per several hundred requests at most
    spike = LevelCusum()
    assert not any(spike.push(z) for z in (0.0, 12.0, 0.0, 0.0))  # one spike counts ≤ HUBER
    shift = LevelCusum()
    fired = next(i for i in range(50) if shift.push(-1.5 + rng.gauss(0.0, 0.3)))
    assert fired <= 10


def test_model_probes_the_other_side_when_a_probe_changed_nothing():
    """With the slope in doubt on both sides (best k anywhere in k_lo..k_hi around k), a
    probe to one side that changes nothing leaves the other side's question open: the next
    probe goes there, not to the same side again (under CPU load the model used to probe
    upwards and back off for 32 requests while k 1 was 25 % faster). Probes still thin out
    once both sides have been asked."""
    sim = Sim(alpha=0.8, noise=0.08)
    c, rng = new("model"), random.Random(2)
    probes: list[tuple[int, int, bool]] = []  # (from k, to k, both sides in doubt)
    for _ in range(200):
        k = c.k
        d = c.decide()
        if d.values.get("probe"):
            probes.append((k, d.k, d.values["k_lo"] < k < d.values["k_hi"]))
        c.observe(sim.reply(d.k, rng))
    pairs = [
        (a, b)
        for a, b in zip(probes, probes[1:], strict=False)
        if a[2] and b[2] and a[0] == b[0]  # two-sided, from the same k (nothing changed)
    ]
    assert pairs, probes
    assert all((a[1] > a[0]) != (b[1] > b[0]) for a, b in pairs[:1]), probes
