"""adaptive:model — pick the k that maximises expected tokens/s under Leviathan et al.'s model.

Model (Leviathan et al., 2023): a verify step that drafts k tokens emits
``E(k) = (1 - α^(k+1)) / (1 - α)`` tokens on average and costs ``v + k·d`` ms, so
tokens/s ∝ ``E(k) / (v + k·d)``. In the code α is ``alpha``, v ``verify_ms``, d ``draft_ms``
and the best k ``k_star``; a fit keeps the short keys ``v``, ``d``, ``se_d``, ``xb``, ``yb``.
Every request updates *discounted* estimates (each older request's weight is multiplied by
``discount`` per new request) of:

* **α, the per-token acceptance.** A server reports per request the drafted tokens D, the
  accepted tokens A and (through predicted_n) the verify steps S = predicted_n − A − 1 (each
  verify step emits its accepted tokens plus one; the first token comes from the prefill).
  Accepted tokens are a *leading run*, so ``A/D`` underestimates α; instead α solves
  ``Σ A = Σ S_d · g(α, k_d)`` with ``g(α, k) = α(1 − α^k)/(1 − α)``, the expected accepted
  tokens of a step drafting k (the moment equation, which is also the maximum-likelihood
  estimate under the truncated-geometric model). Requests are pooled by requested k; ``k_d``
  is the pool's observed drafted tokens per drafting step (the last steps of a reply draft
  fewer). A weak prior (``prior_steps`` steps at ``prior_alpha``) keeps it finite.
* **v and d, the cost of a verify step and of one drafted token.** Per request, the time per
  verify step ``y = predicted_ms / S`` against the drafted tokens per step ``x = D / S``: a
  discounted least-squares line ``y = v + d·x``. The slope needs requests at two or more k;
  without a server's ``predicted_ms`` the client latency (minus ``prompt_ms`` if reported) is
  used instead.

**Decision.** k* = argmax over [k_min, k_max] of ``E(α̂, k) / (v̂ + k·d̂)``; k changes only
when the predicted gain over the current k is at least ``min_gain``. **Exploration** only
where uncertainty matters: the k is also chosen with d at ``d̂ ± probe_z·se(d̂)`` (v refitted
through the data's centre); when those choices differ, or when the slope is not identified
yet (one k seen), the controller probes one neighbouring k towards the uncertain side, at
most once every ``probe_gap`` requests; the gap doubles after a probe that changed nothing,
except that when the best k was in doubt on both sides of k, the other side is asked first.
Until the slope is known, d = ``prior_cost_ratio``·v.

**Shifts.** A request whose step time (or accepted count) is more than ``change_z`` standard
deviations from the prediction, ``change_runs`` times in a row on the same side, marks a shift
(load, content): the cost (or acceptance) history keeps only ``change_keep`` of its weight,
so the estimates follow the new regime within a few requests instead of ~1/(1 − discount).
A smaller lasting shift in step time (Page's CUSUM of the residuals, ``LevelCusum``) also
starts a new cost regime, with the old slope as its prior, and sends a probe towards an
earlier regime's best k: a line fitted at one k would absorb it in its intercept. Up to
MAX_EARLIER earlier cost regimes are remembered and come back on evidence (``_maybe_return``).

A failed request, or one without draft counters, changes nothing (k is kept and the reason
says why): without counters there is no acceptance to estimate.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from halospec_tui.controllers.base import AdaptiveController, Decision, Observation
from halospec_tui.controllers.model_settings import ModelControllerSettings

_ALPHA_LO, _ALPHA_HI = 1e-6, 1.0 - 1e-9
PRIOR_SD = 3.0  # sd of the prior slope, in units of the prior slope itself (a weak prior)
V_PRIOR_SD = 0.5  # sd of the verify-step prior after a cost shift, in units of itself
V_PRIOR_FLOOR = 0.5  # the prior's weight fades like the data's, down to this
HUBER = 2.5  # step-time residuals count at most this many sds in the cost fit
# probabilists' Gauss-Hermite nodes and weights, 7 points: E[f(Z)] for Z ~ N(0, 1). The values
# are numpy.polynomial.hermite_e.hermegauss(7)'s, bit for bit (tests/test_controllers_adaptive.py
# checks), written out so that loading a profile, which imports every controller's settings,
# does not import numpy (a third of the command's start-up time)
_HERMEGAUSS_7 = (
    (-3.7504397177257425, 0.0013743062164795505),
    (-2.366759410734541, 0.07709667658348317),
    (-1.1544053947399682, 0.6018995488855944),
    (0.0, 1.145887211259886),
    (1.1544053947399682, 0.6018995488855944),
    (2.366759410734541, 0.07709667658348317),
    (3.7504397177257425, 0.0013743062164795505),
)
_GH = [(x, w / math.sqrt(2.0 * math.pi)) for x, w in _HERMEGAUSS_7]
MAX_PROBE_STEP = 2  # a probe moves k by at most this much (it costs while it informs)
NOISE_PRIOR, NOISE_PRIOR_WEIGHT = 0.1, 3.0  # step-time noise assumed before data: 10 %, ~3 requests
RETURN_EVIDENCE = math.log(1000.0)  # log-likelihood ratio that brings back an earlier cost regime
MAX_EARLIER = 3  # cost regimes remembered (idle, and a load that changed level, say)
Z_CAP = 6.0  # one step time counts at most this many sds against a regime (heavy tails)
LEVEL_DRIFT, LEVEL_LIMIT = 0.5, 8.0  # Page's CUSUM of residual z: slack per request, alarm


def accepted_per_step(alpha: float, k: float) -> float:
    """g(α, k): expected accepted tokens of a verify step that drafts k (leading run)."""
    if k <= 0:
        return 0.0
    if alpha >= 1.0:
        return float(k)
    return alpha * (1.0 - alpha**k) / (1.0 - alpha)


def tokens_per_step(alpha: float, k: float) -> float:
    """E(k) = 1 + g(α, k) = (1 − α^(k+1)) / (1 − α)."""
    return 1.0 + accepted_per_step(alpha, k)


def accepted_variance(alpha: float, k: int) -> float:
    """Variance of the accepted count of one step drafting k (truncated geometric)."""
    if k <= 0:
        return 0.0
    mean = accepted_per_step(alpha, k)
    second = sum(j * j * alpha**j * (1.0 - alpha) for j in range(k)) + k * k * alpha**k
    return max(second - mean * mean, 0.0)


def solve_alpha(pools: list[tuple[float, float, float]]) -> float | None:
    """α solving Σ A = Σ S·g(α, k) over pools of (accepted A, drafting steps S, k); None if
    there are no steps. Σ S·g is increasing in α, so bisection finds the root."""
    steps = sum(pool_steps for _, pool_steps, _ in pools)
    if steps <= 0:
        return None
    target = sum(accepted for accepted, _, _ in pools)
    lo, hi = _ALPHA_LO, _ALPHA_HI
    if target <= 0:
        return lo
    if target >= sum(pool_steps * k for _, pool_steps, k in pools):
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sum(pool_steps * accepted_per_step(mid, k) for _, pool_steps, k in pools) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-7:
            break
    return 0.5 * (lo + hi)


def best_k(alpha: float, v: float, d: float, k_min: int, k_max: int) -> tuple[int, float]:
    """argmax of E(α, k)/(v + k·d) over [k_min, k_max] (smallest k on ties) and its value."""
    best, best_val = k_min, -1.0
    for k in range(k_min, k_max + 1):
        val = tokens_per_step(alpha, k) / max(v + k * d, 1e-12)
        if val > best_val * (1.0 + 1e-12):
            best, best_val = k, val
    return best, best_val


def rate(alpha: float, v: float, d: float, k: int) -> float:
    return tokens_per_step(alpha, k) / max(v + k * d, 1e-12)


def verify_steps(obs: Observation) -> tuple[int, int] | None:
    """(verify steps, drafting steps) behind one reply's counters; None without counters."""
    drafted, accepted = obs.draft_n, obs.draft_n_accepted
    if drafted is None or accepted is None:
        return None
    k = max(obs.k, 1)
    if obs.predicted_n is not None and obs.predicted_n - accepted - 1 >= 1:
        steps = obs.predicted_n - accepted - 1
    else:
        steps = max(1, math.ceil(drafted / k))
    drafting = min(steps, drafted) if drafted > 0 else 0
    drafting = max(drafting, math.ceil(drafted / k)) if drafted > 0 else 0
    return max(steps, drafting), drafting


class _Regression:
    """Discounted least squares y = v + d·x, each request weight 1 (times discount^age)."""

    def __init__(self) -> None:
        self.w = self.wx = self.wy = self.wxx = self.wxy = self.wyy = self.w2 = 0.0

    def scale(self, factor: float) -> None:
        self.w *= factor
        self.wx *= factor
        self.wy *= factor
        self.wxx *= factor
        self.wxy *= factor
        self.wyy *= factor
        self.w2 *= factor * factor

    def add(self, x: float, y: float) -> None:
        self.w += 1.0
        self.wx += x
        self.wy += y
        self.wxx += x * x
        self.wxy += x * y
        self.wyy += y * y
        self.w2 += 1.0

    def without(self, x: float, y: float, factor: float) -> _Regression | None:
        """The line as it was before ``scale(factor); add(x, y)``; None if nothing was left."""
        if factor <= 0.0 or self.w - 1.0 <= 1e-9:
            return None
        line = copy.copy(self)
        line.w -= 1.0
        line.wx -= x
        line.wy -= y
        line.wxx -= x * x
        line.wxy -= x * y
        line.wyy -= y * y
        line.w2 -= 1.0
        line.scale(1.0 / factor)
        return line

    @property
    def n_eff(self) -> float:
        return self.w * self.w / self.w2 if self.w2 > 0 else 0.0

    def fit(
        self,
        noise_floor: float,
        prior_ratio: float,
        rel_sd: float | None = None,
        v_prior: float | None = None,
        d_prior: float | None = None,
        v_weight: float = 1.0,
    ) -> dict[str, float] | None:
        """v and d by discounted least squares with Gaussian priors (a ridge regression).

        Prior on d: d₀ = prior_ratio·v (from the data's level), sd PRIOR_SD·d₀, weak: with
        no spread in x the slope is the prior's, with spread the data's. Optional prior on v
        (``v_prior``, sd V_PRIOR_SD·v_prior/√``v_weight``): after a cost shift the verify
        step is assumed to cost about what it cost before, so one k already tells how dear a
        drafted token became; its weight is discounted like the data it stands in for (the
        caller's ``v_weight``), so a line measured at several ks wins in the end. The noise
        σ of one request's step time is ``rel_sd``·ȳ (the controller's robust scale) or,
        before that exists, the residual sd; at least noise_floor·ȳ.
        Returns x̄, ȳ, v, d, se_d, sigma and identified (the data outweigh the slope prior)."""
        if self.w <= 1e-9:
            return None
        xb, yb = self.wx / self.w, self.wy / self.w
        sxx = max(self.wxx - self.w * xb * xb, 0.0)  # centred sums of squares and products
        sigma2 = self._noise_variance(xb, yb, sxx, noise_floor, rel_sd)
        tiny = 1e-9 * max(yb, 1e-9)
        sigma2 = max(sigma2, tiny * tiny)
        # Gaussian priors, as (mean, precision): d always, v only when given
        if d_prior is not None and d_prior > 0:
            d_mean = d_prior
        else:
            d_mean = max(prior_ratio * yb / (1.0 + prior_ratio * xb), tiny)
        d_precision = 1.0 / (PRIOR_SD * d_mean) ** 2
        if v_prior is not None and v_prior > 0:
            v_mean, v_precision = v_prior, v_weight / (V_PRIOR_SD * v_prior) ** 2
        else:
            v_mean, v_precision = 0.0, 0.0
        # the posterior's normal equations [a11 a12; a12 a22]·(v, d) = (b1, b2)
        a11 = self.w / sigma2 + v_precision
        a12 = self.wx / sigma2
        a22 = self.wxx / sigma2 + d_precision
        b1 = self.wy / sigma2 + v_mean * v_precision
        b2 = self.wxy / sigma2 + d_mean * d_precision
        det = a11 * a22 - a12 * a12
        if det <= 0:
            return None
        verify_ms = (b1 * a22 - b2 * a12) / det
        draft_ms = (a11 * b2 - a12 * b1) / det
        if draft_ms < 0.0:  # a drafted token cannot save time: refit v with d = 0
            draft_ms, verify_ms = 0.0, b1 / a11
        verify_ms = max(verify_ms, tiny)
        return {
            "xb": xb,
            "yb": yb,
            "v": verify_ms,
            "d": draft_ms,
            "se_d": (a11 / det) ** 0.5,
            "sigma": sigma2**0.5,
            "identified": float(sxx / sigma2 > d_precision),
        }

    def _noise_variance(
        self, xb: float, yb: float, sxx: float, noise_floor: float, rel_sd: float | None
    ) -> float:
        """σ² of one request's step time: (``rel_sd``·ȳ)² when the caller has a robust
        scale, else the residual variance of the least-squares line (the plain variance
        when x does not spread); at least (noise_floor·ȳ)²."""
        floor = (noise_floor * yb) ** 2
        if rel_sd is not None:
            return max((rel_sd * yb) ** 2, floor)
        syy = max(self.wyy - self.w * yb * yb, 0.0)
        sxy = self.wxy - self.w * xb * yb
        if sxx > 1e-9 * self.w and self.n_eff > 2.0:
            n_eff = self.n_eff
            residual_ss = max(syy - sxy * sxy / sxx, 0.0)
            return max(residual_ss / self.w * (n_eff / (n_eff - 2.0)), floor)
        return max(syy / self.w, floor)


@dataclass
class CostRegime:
    """The cost of one regime of the server (idle, or under CPU load, say): the discounted
    step-time line and the robust scale of its relative residuals (discounted, winsorised,
    pooled with NOISE_PRIOR_WEIGHT pseudo-residuals of NOISE_PRIOR so that two or three
    requests that happen to agree do not make a slope look precise)."""

    line: _Regression = field(default_factory=_Regression)
    rel_w: float = 0.0
    rel_ss: float = 0.0
    v_prior: float | None = None  # the verify step's cost before the shift that began it
    d_prior: float | None = None  # a drafted token's cost then, when the shift was in level
    last: tuple[float, float, float] | None = None  # the last request added: x, y, discount
    return_llr: float = 0.0  # once left: evidence (CUSUM of log-likelihood ratios) it is back
    prior_w: float = 1.0  # the v prior's weight, discounted with the data it stands in for

    def rel_sd(self, floor: float) -> float:
        ss = self.rel_ss + NOISE_PRIOR_WEIGHT * NOISE_PRIOR**2
        return max((ss / (self.rel_w + NOISE_PRIOR_WEIGHT)) ** 0.5, floor)

    def fit(self, settings: ModelControllerSettings) -> dict[str, float] | None:
        """v, d (ms), the slope's standard error and the fit's centre; None without data."""
        return self._fit(self.line, settings)

    def _fit(self, line: _Regression, settings: ModelControllerSettings) -> dict[str, float] | None:
        return line.fit(
            settings.noise_floor,
            settings.prior_cost_ratio,
            self.rel_sd(settings.noise_floor),
            self.v_prior,
            self.d_prior,
            max(self.prior_w, V_PRIOR_FLOOR),
        )

    def fit_without_last(self, settings: ModelControllerSettings) -> dict[str, float] | None:
        """The fit as it was before the last request; None if that left no data."""
        if self.last is None:
            return None
        line = self.line.without(*self.last)
        return None if line is None else self._fit(line, settings)

    def log_density(self, x: float, y: float, settings: ModelControllerSettings) -> float | None:
        """Log-likelihood of a step time y at drafted tokens per step x under this regime:
        normal around the line, its sd the noise (rel_sd × prediction) and the slope's
        uncertainty at that distance from the data's centre (a regime seen only at k 8
        knows little of k 1); z capped at Z_CAP."""
        fit = self.fit(settings)
        if fit is None:
            return None
        predicted = max(fit["v"] + fit["d"] * x, 1e-9)
        sd = math.hypot(
            self.rel_sd(settings.noise_floor) * predicted, fit["se_d"] * (x - fit["xb"])
        )
        z = min(abs(y - predicted) / sd, Z_CAP)
        return -math.log(sd) - 0.5 * z * z


class ShiftScreen:
    """Holds back surprising samples until they are confirmed as a shift or refuted.

    A sample whose z-score is beyond ±`limit` is *held* (not yet added to the history, so it
    cannot widen the noise estimate it is judged by). `runs` held samples in a row on the
    same side confirm a shift: the caller drops its history, then adds them as they are. A
    sample back within the limit (or on the other side) refutes the held ones: they were
    outliers (a latency spike, a preempted request) and are added *clipped* to the limit, so
    one bad request cannot drag an estimate far.
    """

    def __init__(self, limit: float, runs: int) -> None:
        self.limit, self.runs = limit, max(1, runs)
        self.held: list[tuple[object, object]] = []  # (sample, its clipped version)
        self.side = 0

    def push(
        self, z: float | None, sample: object, clipped: object | None = None
    ) -> tuple[list[object], bool, list[object]]:
        """(samples to add before, shift confirmed, samples to add after the history drop)."""
        if self.limit <= 0 or z is None or not math.isfinite(z):
            side = 0
        else:
            side = 1 if z > self.limit else (-1 if z < -self.limit else 0)
        if side == 0:
            out = [c for _, c in self.held] + [sample]
            self.held, self.side = [], 0
            return out, False, []
        before: list[object] = []
        if side != self.side:
            before = [c for _, c in self.held]
            self.held, self.side = [], side
        self.held.append((sample, sample if clipped is None else clipped))
        if len(self.held) >= self.runs:
            after = [held for held, _ in self.held]
            self.held, self.side = [], 0
            return before, True, after
        return before, False, []


class LevelCusum:
    """Page's two-sided CUSUM of the residual z-scores: a lasting shift in step time too small
    for the ShiftScreen (under LEVEL_DRIFT·2 to change_z sds, say CPU load that stops while
    k is small) adds up here, while noise, with its slack of LEVEL_DRIFT per request, does
    not. Each z counts at most HUBER (one latency spike is not a shift). Without it the line
    absorbs such a shift in its intercept and keeps the slope of the old regime."""

    def __init__(self) -> None:
        self.up = self.down = 0.0

    def push(self, z: float) -> bool:
        """True when the evidence for a shift reaches LEVEL_LIMIT (and the sums restart)."""
        z = max(-HUBER, min(HUBER, z))
        self.up = max(0.0, self.up + z - LEVEL_DRIFT)
        self.down = max(0.0, self.down - z - LEVEL_DRIFT)
        if max(self.up, self.down) < LEVEL_LIMIT:
            return False
        self.up = self.down = 0.0
        return True


@dataclass
class _Plan:
    """What one decision rests on: α, the cost of a verify step and of a drafted token (ms,
    with the latter's standard error), the best k with its predicted tokens per ms and the
    current k's, the reason's head and the values reported with the decision."""

    alpha: float
    verify_ms: float
    draft_ms: float
    draft_se_ms: float
    k_star: int
    best_rate: float
    current_rate: float
    head: str
    values: dict[str, float | None]

    def worth_moving(self, k: int, min_gain: float) -> bool:
        """The best k is another and gains at least `min_gain` over `k`."""
        return self.k_star != k and self.best_rate >= self.current_rate * (1.0 + min_gain)


class ModelController(AdaptiveController):
    """Discounted α, v, d estimates; k = argmax E(k)/(v + k·d); probes only when unsure."""

    name = "model"
    settings_class = ModelControllerSettings

    def __init__(self, settings: ModelControllerSettings | None = None) -> None:
        super().__init__(settings)
        self.s: ModelControllerSettings
        self.pools: dict[int, list[float]] = {}  # requested k -> [A, S_drafting, D]
        self._alpha_memo: tuple[tuple[tuple[float, float, float], ...], float | None] | None = None
        self.regime = CostRegime()  # the cost regime the server is in now
        self.earlier: list[CostRegime] = []  # the ones before it, the latest first
        self.timing = ""  # "server" (predicted_ms) or "client" (latency)
        self.requests = 0
        self.since_probe = self.s.probe_gap  # a first probe is allowed at once
        self.gap = self.s.probe_gap  # doubles after each probe that changed nothing
        self._probe_ks: tuple[int, int] | None = None  # (k, best k) when a probe was sent
        self._other_side = 0  # a probe to one side changed nothing: the other side's turn
        self._two_sided = False  # the last probe was sent with both sides uncertain
        self._cost_screen = ShiftScreen(self.s.change_z, self.s.change_runs)
        self._level = LevelCusum()
        self._level_probe = False  # a level shift asks for a probe at the next decision
        self._acc_screen = ShiftScreen(self.s.change_z, self.s.change_runs)
        self._note = ""  # what the last observation did (failure, no counters, shift)
        self._held = False  # the last decision held a move back for one more request
        self.shifts = 0

    # --- estimates -------------------------------------------------------------------
    def alpha(self) -> float | None:
        # decide() and observe() both ask between two changes of the pools: solve once
        key = tuple(tuple(pool) for pool in self.pools.values())
        if self._alpha_memo is not None and self._alpha_memo[0] == key:
            return self._alpha_memo[1]
        value = self._solve_alpha()
        self._alpha_memo = (key, value)
        return value

    def _solve_alpha(self) -> float | None:
        pools = [
            (accepted, drafting, drafted / drafting)
            for accepted, drafting, drafted in self.pools.values()
            if drafting > 1e-9
        ]
        if self.s.prior_steps > 0:
            k0 = float(self._clamp(self.s.initial_k))
            pools.append(
                (
                    self.s.prior_steps * accepted_per_step(self.s.prior_alpha, k0),
                    self.s.prior_steps,
                    k0,
                )
            )
        if not self.pools:
            return None
        return solve_alpha(pools)

    def rel_sd(self) -> float:
        """Relative sd of one request's step time in the current regime (at least the floor)."""
        return self.regime.rel_sd(self.s.noise_floor)

    def costs(self) -> dict[str, float] | None:
        """v, d (ms), the slope's standard error and the fit's centre; None without data."""
        return self.regime.fit(self.s)

    # --- decide ----------------------------------------------------------------------
    def decide(self) -> Decision:
        """The next k, in named steps: the estimates (`_plan`); the verdict on the last
        probe (`_judge_probe`); a move to a better k, unless it rests on the last request
        alone (`_move_or_hold`); after a level shift, a probe towards an earlier regime's
        best k (`_probe_after_level_shift`); else a probe where the slope's uncertainty is
        worth one (`_probe_where_unsure`), or the plain verdict (`_move`)."""
        held_before, self._held = self._held, False  # a move is held back once, not twice
        level_shift, self._level_probe = self._level_probe, False
        alpha, fit = self.alpha(), self.costs()
        values: dict[str, float | None] = {"alpha": alpha, "requests": float(self.requests)}
        note = f"{self._note}; " if self._note else ""
        self._note = ""
        if alpha is None or fit is None:
            why = "no draft counters yet" if alpha is None else "no timings yet"
            return Decision(k=self.k, reason=f"{note}{why} → keep k {self.k}", values=values)
        plan = self._plan(alpha, fit, note, values)
        self.since_probe += 1
        self._judge_probe(plan.k_star)
        if plan.worth_moving(self.k, self.s.min_gain):
            return self._move_or_hold(plan, held_before)
        # (with nothing else remembered, the usual probe below: the shift already allowed one)
        if level_shift and (target := self._earlier_k(alpha)) is not None:
            return self._probe_after_level_shift(plan, target)
        return self._probe_where_unsure(plan, fit)

    def _plan(
        self, alpha: float, fit: dict[str, float], note: str, values: dict[str, float | None]
    ) -> _Plan:
        """The best k under the current estimates, and the rate of the current k."""
        verify_ms, draft_ms, draft_se_ms = fit["v"], fit["d"], fit["se_d"]
        values.update(v_ms=verify_ms, d_ms=draft_ms, d_se_ms=draft_se_ms)
        k_star, best_rate = best_k(alpha, verify_ms, draft_ms, self.s.k_min, self.s.k_max)
        current_rate = rate(alpha, verify_ms, draft_ms, self.k)
        values.update(k_star=float(k_star), predicted_gain=best_rate / current_rate - 1.0)
        head = f"{note}α {alpha:.2f}, v {verify_ms:.2f} ms, d {draft_ms:.3f}±{draft_se_ms:.3f} ms"
        if not fit["identified"]:
            head += " (mostly prior)"
        return _Plan(
            alpha=alpha,
            verify_ms=verify_ms,
            draft_ms=draft_ms,
            draft_se_ms=draft_se_ms,
            k_star=k_star,
            best_rate=best_rate,
            current_rate=current_rate,
            head=head,
            values=values,
        )

    def _judge_probe(self, k_star: int) -> None:
        """The step after a probe: did it make another k the best (neither the k it left nor
        the one thought best then)? If not, wait twice as long before the next one: on a
        steady server probes thin out exponentially. Nothing to judge without a probe."""
        if self._probe_ks is None:
            return
        left_k, _ = self._probe_ks
        if k_star not in self._probe_ks:
            self.gap, self._other_side = self.s.probe_gap, 0
        elif self._two_sided and not self._other_side:
            # both sides were in doubt and one is answered: the other next, same gap
            self._other_side = 1 if left_k > self.k else -1
        else:
            self.gap, self._other_side = min(self.gap * 2, 256), 0
        self._probe_ks = None

    def _move_or_hold(self, plan: _Plan, held_before: bool) -> Decision:
        """The hold rule: a jump that rests on the last request alone waits for one more
        request (once); any other move worth `min_gain` is made."""
        k_without_last = None if held_before else self._without_last(plan.alpha, plan.k_star)
        if k_without_last is None:
            return self._move(plan)
        plan.values["k_without_last"] = float(k_without_last)
        return Decision(
            k=self.k,
            reason=(
                f"{plan.head}: best k {plan.k_star}, but without the last request "
                f"best k {k_without_last} → keep k {self.k} for one more request"
            ),
            values=plan.values,
        )

    def _probe_after_level_shift(self, plan: _Plan, target: int) -> Decision:
        """A level shift at one k says little about the slope: probe towards `target`, an
        earlier cost regime's best k, whatever the probe costs."""
        new_k, _ = self._probe_target(target, plan.alpha, plan.verify_ms, plan.draft_ms, math.inf)
        why = f"the level moved, the slope may have too (an earlier regime's best k {target})"
        return self._send_probe(new_k, plan.k_star, f"{plan.head}: {why}", plan.values, False)

    def _probe_where_unsure(self, plan: _Plan, fit: dict[str, float]) -> Decision:
        """Probe towards the answer worth most (`_probe_questions`) when the gap since the
        last probe allows one and the probe can pay for itself; else `_move`."""
        k_lo, k_hi, asks = self._probe_questions(plan, fit)
        if not (self.s.probe_z > 0 and self.since_probe > self.gap and asks):
            return self._move(plan)
        value, target, stake = max(asks)
        budget = value * self.gap
        new_k, cost = self._probe_target(target, plan.alpha, plan.verify_ms, plan.draft_ms, budget)
        plan.values.update(probe_value=value, probe_budget=budget, probe_cost=cost)
        if new_k is None:
            # under CPU load a larger k can cost a good part of a request: the probe would
            # lose more than staying could, even for every request until the next probe
            return self._move(
                plan,
                f"; {stake}, but a probe costs {cost * 100:.0f}% of a request "
                f"> {self.gap} requests × {value * 100:.2f}% expected: no probe",
            )
        # the first of a pair (the second, to the other side, earns no further turn)
        pair = k_lo < self.k < k_hi and target in (k_lo, k_hi) and not self._other_side
        self._other_side = 0
        return self._send_probe(new_k, plan.k_star, f"{plan.head}: {stake}", plan.values, pair)

    def _probe_questions(
        self, plan: _Plan, fit: dict[str, float]
    ) -> tuple[int, int, list[tuple[float, int, str]]]:
        """The questions a probe could answer, as (expected gain per request, the k to probe
        towards, why): where the slope really is (the end of its uncertainty band with more
        at stake, `_slope_ends`, or the side not asked yet after a probe to the other) and
        whether the server is back in an earlier cost regime (`_earlier_bet`); with the
        band's best ks, k_lo (dear drafting) and k_hi (cheap drafting)."""
        k = self.k
        ends = self._slope_ends(plan, fit)
        (_, k_hi), (_, k_lo) = ends
        if k_lo < k < k_hi and self._other_side:
            regret, target = ends[0] if self._other_side > 0 else ends[1]
        else:
            regret, target = max(ends)
        plan.values.update(k_lo=float(k_lo), k_hi=float(k_hi), regret=regret)
        asks: list[tuple[float, int, str]] = []
        if regret > self.s.min_gain and target != k:
            stake = (
                f"best k {k_lo}..{k_hi} within ±{self.s.probe_z:g} se, {regret * 100:.1f}% at stake"
            )
            asks.append((self._evpi(plan.alpha, fit), target, stake))
        bet = self._earlier_bet(plan.alpha)
        if bet is not None and bet[0] > self.s.min_gain * 0.1 and bet[1] != k:
            asks.append(bet)
        return k_lo, k_hi, asks

    def _slope_ends(self, plan: _Plan, fit: dict[str, float]) -> list[tuple[float, int]]:
        """The choice with the drafted token's cost at either end of its uncertainty band,
        d̂ ∓ probe_z·se (the line kept through the data's centre), and what staying at k
        would lose if that end were the truth: [(regret, best k) at d − z·se, at d + z·se]."""
        spread = self.s.probe_z * plan.draft_se_ms
        x_mean, y_mean = fit["xb"], fit["yb"]
        ends: list[tuple[float, int]] = []
        for draft_ms in (max(plan.draft_ms - spread, 0.0), plan.draft_ms + spread):
            verify_ms = max(y_mean - draft_ms * x_mean, 1e-9)
            k_end, end_rate = best_k(plan.alpha, verify_ms, draft_ms, self.s.k_min, self.s.k_max)
            ends.append((end_rate / rate(plan.alpha, verify_ms, draft_ms, self.k) - 1.0, k_end))
        return ends

    def _send_probe(
        self, new_k: int, k_star: int, why: str, values: dict[str, float | None], two_sided: bool
    ) -> Decision:
        """Probe k `new_k`; the next decision judges whether it moved the best k."""
        k = self.k
        self.since_probe = 0
        self._probe_ks = (k, k_star)
        self._two_sided = two_sided
        self.k = new_k
        values["probe"] = 1.0
        return Decision(k=new_k, reason=f"{why} → probe k {k}→{new_k}", values=values)

    def _without_last(self, alpha: float, k_star: int) -> int | None:
        """The best k without the last request, when a jump of two or more k to `k_star`
        rests on that request alone (without it the best k would be within one of k);
        else None. One request can be a latency spike (5-10 % noise, heavy tails), and when
        the data sit at one k, one request at another k sets the slope: it once sent k from
        6 to 1. Such a move waits for one more request at the same k, once."""
        k = self.k
        if abs(k_star - k) < 2:
            return None
        fit = self.regime.fit_without_last(self.s)
        if fit is None or not fit["identified"]:
            return None
        k_without_last, _ = best_k(alpha, fit["v"], fit["d"], self.s.k_min, self.s.k_max)
        if abs(k_without_last - k) > 1:
            return None
        self._held = True
        return k_without_last

    def _earlier_k(self, alpha: float) -> int | None:
        """The best k of an earlier cost regime where it is not the current k: the one with
        the most evidence of a return, the latest on a tie; None if there is none."""
        for regime in sorted(self.earlier, key=lambda regime: -regime.return_llr):
            fit = regime.fit(self.s)
            if fit is not None:
                k_there, _ = best_k(alpha, fit["v"], fit["d"], self.s.k_min, self.s.k_max)
                if k_there != self.k:
                    return k_there
        return None

    def _earlier_bet(self, alpha: float) -> tuple[float, int, str] | None:
        """What a move to an earlier cost regime's best k would be worth per request: its
        gain there times the probability that the server is back in it (from the evidence
        so far, even at RETURN_EVIDENCE), with that k; the remembered regime worth most,
        None without evidence for any."""
        bets = []
        for regime in self.earlier:
            fit = regime.fit(self.s) if regime.return_llr > 0.0 else None
            if fit is None:
                continue
            verify_ms, draft_ms = fit["v"], fit["d"]
            k_there, rate_there = best_k(alpha, verify_ms, draft_ms, self.s.k_min, self.s.k_max)
            p_back = 1.0 / (1.0 + math.exp(RETURN_EVIDENCE - regime.return_llr))
            gain = rate_there / rate(alpha, verify_ms, draft_ms, self.k) - 1.0
            why = (
                f"earlier cost regime p {p_back * 100:.0f}%, "
                f"its best k {k_there} (+{gain * 100:.0f}%)"
            )
            bets.append((p_back * gain, k_there, why))
        return max(bets) if bets else None

    def _probe_target(
        self, target: int, alpha: float, verify_ms: float, draft_ms: float, budget: float
    ) -> tuple[int | None, float]:
        """The k to probe on the way to `target`, and its predicted cost (the share of one
        request's throughput it loses under the current estimates).

        Half-way towards the target (one to MAX_PROBE_STEP k), but no farther than a cost
        the probe can pay back, `budget`: the expected value of the answer (`_evpi`,
        `_earlier_bet`) for each request until the next probe may be sent. None when even a
        step of one costs more than that."""
        k = self.k
        current_rate = rate(alpha, verify_ms, draft_ms, k)
        farthest = max(1, min(MAX_PROBE_STEP, math.ceil(abs(target - k) / 2)))
        cost = 0.0
        for step in range(farthest, 0, -1):
            new_k = self._clamp(k + (step if target > k else -step))
            cost = 1.0 - rate(alpha, verify_ms, draft_ms, new_k) / current_rate
            if cost <= budget:
                return new_k, cost
        return None, cost

    def _evpi(self, alpha: float, fit: dict[str, float]) -> float:
        """Expected gain per request from knowing d exactly: the mean, over d's normal
        posterior N(d̂, se²) (Gauss-Hermite nodes, the line kept through the data's centre),
        of how much better the best k for that d does than the current k. Small when the
        slope is known or when every plausible d keeps the current k best."""
        k, draft_ms, draft_se_ms = self.k, fit["d"], fit["se_d"]
        x_mean, y_mean = fit["xb"], fit["yb"]
        total = 0.0
        for node, weight in _GH:
            node_draft_ms = max(draft_ms + node * draft_se_ms, 0.0)
            node_verify_ms = max(y_mean - node_draft_ms * x_mean, 1e-9)
            _, best_rate = best_k(alpha, node_verify_ms, node_draft_ms, self.s.k_min, self.s.k_max)
            gain = best_rate / rate(alpha, node_verify_ms, node_draft_ms, k) - 1.0
            total += weight * max(gain, 0.0)
        return total

    def _move(self, plan: _Plan, why_not_probe: str = "") -> Decision:
        """Move to the best k when it gains at least `min_gain` over the current one, else
        keep k; the reason says which (after `why_not_probe`, when a probe was declined)."""
        k, k_star = self.k, plan.k_star
        head = plan.head + why_not_probe
        gain_pct = (plan.best_rate / plan.current_rate - 1) * 100
        if plan.worth_moving(k, self.s.min_gain):
            self.k = k_star
            why = f"{head}: best k {k_star} (+{gain_pct:.1f}%) → k {k}→{k_star}"
        elif k_star != k:
            why = (
                f"{head}: best k {k_star} gains {gain_pct:.1f}% "
                f"< {self.s.min_gain * 100:g}% → keep k {k}"
            )
        else:
            why = f"{head}: best k {k} → keep k {k}"
        return Decision(k=self.k, reason=why, values=plan.values)

    # --- observe ---------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        """Learn from one reply: its accepted count updates α (`_observe_acceptance`), its
        step time the cost line (`_observe_cost`), each through its shift screen."""
        if not obs.success:
            self._note = "last step failed"
            return
        steps = verify_steps(obs)
        if steps is None:
            self._note = "last reply had no draft counters"
            return
        total, drafting = steps
        drafted, accepted = int(obs.draft_n or 0), int(obs.draft_n_accepted or 0)
        self.requests += 1
        if drafting > 0:
            self._observe_acceptance(obs.k, accepted, drafting, drafted)
        generation_ms, timing = _step_time(obs)
        if generation_ms is None:
            return
        self._observe_cost(generation_ms / total, drafted / total, timing)

    def _observe_acceptance(self, k: int, accepted: int, drafting: int, drafted: int) -> None:
        """One reply's accepted count, judged against what α predicts for its drafting steps
        (the acceptance shift screen holds a surprising one back; clipped if refuted)."""
        k_eff = drafted / drafting
        alpha = self.alpha()
        z_score, clipped = None, None
        sample = (k, float(accepted), drafting, drafted)
        if alpha is not None and self.pools:
            mean = drafting * accepted_per_step(alpha, k_eff)
            sd = (drafting * max(accepted_variance(alpha, max(1, round(k_eff))), 0.05)) ** 0.5
            z_score = (accepted - mean) / sd
            limit = self.s.change_z * sd
            clipped = (k, max(mean - limit, min(mean + limit, accepted)), drafting, drafted)
        self._apply(
            self._acc_screen.push(z_score, sample, clipped), self._add_acceptance, "acceptance"
        )

    def _observe_cost(self, step_ms: float, drafted_per_step: float, timing: str) -> None:
        """One reply's time per verify step at its drafted tokens per step: maybe a return
        to an earlier regime, maybe a level shift (`LevelCusum`), else through the cost
        shift screen into the line."""
        if self.timing and timing != self.timing:  # the server stopped or started timing
            self.regime, self.earlier = CostRegime(), []
            self._fresh_cost_tests()
        self.timing = timing
        self._maybe_return(drafted_per_step, step_ms)
        z_score, sample, clipped = self._cost_sample(drafted_per_step, step_ms)
        # (a request beyond change_z is the shift screen's to judge, not a level's)
        if z_score is not None and abs(z_score) <= self.s.change_z and self._level.push(z_score):
            # a lasting shift in level at this k says little about the slope (CPU load that
            # stops can change it 20-fold): a new regime, which keeps the old slope as its
            # prior, starts with this request (its residual was the old line's, not noise of
            # the new), and the next decision looks at another k, towards an earlier regime's
            self._level_probe = True
            self._shift("cost", level=True)
            self._add_cost((drafted_per_step, step_ms, math.nan))
            return
        # the requests that confirm a cost shift are not kept: two latency spikes in a row look
        # the same, and the next request (at the same k) measures the new regime anyway
        self._apply(
            self._cost_screen.push(z_score, sample, clipped),
            self._add_cost,
            "cost",
            keep_after=False,
        )

    def _cost_sample(
        self, drafted_per_step: float, step_ms: float
    ) -> tuple[float | None, tuple[float, float, float], tuple[float, float, float] | None]:
        """(z-score, sample, clipped sample) of a step time against the current line. A
        sample is (x, y, relative residual); no z-score while the regime's noise is unknown
        or the line rests on its prior slope far from the data's k."""
        fit = self.costs()
        z_score: float | None = None
        clipped: tuple[float, float, float] | None = None
        sample: tuple[float, float, float] = (drafted_per_step, step_ms, math.nan)
        if fit is not None:
            predicted_ms = max(fit["v"] + fit["d"] * drafted_per_step, 1e-9)
            residual = (step_ms - predicted_ms) / predicted_ms
            sample = (drafted_per_step, step_ms, residual)
            # a fit that rests on the prior slope cannot judge a request at another k
            known = fit["identified"] or abs(drafted_per_step - fit["xb"]) < 0.5
            if self.regime.rel_w >= 3.0 and known:
                scale = self.rel_sd()
                z_score = residual / scale
                # Huber: no request moves the line by more than HUBER sds (latency spikes
                # from other processes would drag the slope); a lasting change still gets
                # through, HUBER sds at a time, or as a detected shift
                limit = HUBER * scale
                clipped_residual = max(-limit, min(limit, residual))
                sample = clipped = (
                    drafted_per_step,
                    predicted_ms * (1.0 + clipped_residual),
                    clipped_residual,
                )
        return z_score, sample, clipped

    def _maybe_return(self, drafted_per_step: float, step_ms: float) -> None:
        """Bring back an earlier cost regime once the step times favour it over the current
        one by RETURN_EVIDENCE (a CUSUM of log-likelihood ratios per remembered regime, so a
        run of two or three clear requests suffices while scattered lucky ones do not). When
        CPU load stops, the step time at a small k falls back by a fraction of its noise
        under load: too little for the shift screen, and the line through one k would follow
        it while still holding the slope measured under load; the earlier regime recognises
        it at once. Several are remembered: load that changes level on the way (a second
        shift) must not make the controller forget the quiet server."""
        if not self.earlier or self.regime.rel_w < 3.0:  # judge by its own noise only
            return
        now = self.regime.log_density(drafted_per_step, step_ms, self.s)
        if now is None:
            return
        for regime in self.earlier:
            back = regime.log_density(drafted_per_step, step_ms, self.s)
            if back is not None:
                regime.return_llr = max(0.0, regime.return_llr + back - now)
        found = max(self.earlier, key=lambda regime: regime.return_llr)
        if found.return_llr < RETURN_EVIDENCE:
            return
        self.earlier.remove(found)
        self._remember(self.regime)
        self.regime = found
        self._fresh_cost_tests()
        self.shifts += 1
        self.gap, self.since_probe = self.s.probe_gap, 0
        self._note = (f"{self._note}; " if self._note else "") + "cost back to an earlier regime"

    def _fresh_cost_tests(self) -> None:
        """A new cost regime is judged by its own line from its first request: nothing held
        by the shift screen or summed by the level CUSUM against the old one carries over."""
        self._cost_screen = ShiftScreen(self.s.change_z, self.s.change_runs)
        self._level = LevelCusum()

    def _remember(self, regime: CostRegime) -> None:
        """Keep `regime` as the latest earlier one; every remembered regime's evidence starts
        again (it was gathered against the regime being left)."""
        self.earlier = [regime, *self.earlier][:MAX_EARLIER]
        for remembered in self.earlier:
            remembered.return_llr = 0.0

    def _apply(
        self, pushed: tuple[list, bool, list], add, what: str, keep_after: bool = True
    ) -> None:  # type: ignore[type-arg, no-untyped-def]
        before, shift, after = pushed
        for sample in before:
            add(sample)
        if shift:
            self._shift(what)
            if keep_after:
                for sample in after:
                    add(sample)

    def _add_acceptance(self, sample: tuple[int, int, int, int]) -> None:
        k, accepted, drafting, drafted = sample
        discount = self.s.discount
        for pool in self.pools.values():
            pool[0] *= discount
            pool[1] *= discount
            pool[2] *= discount
        pool = self.pools.setdefault(k, [0.0, 0.0, 0.0])
        pool[0] += accepted
        pool[1] += drafting
        pool[2] += drafted

    def _add_cost(self, sample: tuple[float, float, float]) -> None:
        drafted_per_step, step_ms, residual = sample
        discount, regime = self.s.discount, self.regime
        regime.line.scale(discount)
        regime.line.add(drafted_per_step, step_ms)
        regime.prior_w *= discount
        regime.last = (drafted_per_step, step_ms, discount)
        if math.isfinite(residual):  # the noise scale that the next residuals are judged by,
            # winsorised at 3 scales so that a transition's misfits do not inflate it
            if regime.rel_w >= 3.0:
                cap = 3.0 * self.rel_sd()
                residual = max(-cap, min(cap, residual))
            regime.rel_w = discount * regime.rel_w + 1.0
            regime.rel_ss = discount * regime.rel_ss + residual * residual

    def _shift(self, what: str, level: bool = False) -> None:
        keep = self.s.change_keep
        if what == "cost":
            fit = self.costs()
            # remembered: load that stops brings the server back to where it was
            self._remember(copy.deepcopy(self.regime))
            # a verify step costs something: a fit that put it near zero is no prior
            plausible = fit is not None and fit["v"] > 0.1 * fit["yb"]
            # a shift in level seen at one k does not say how it splits between v and d: the
            # old slope stays as a prior, the old intercept (which the shift just proved
            # wrong) does not; it held k at 1 after load stopped (recorded run, recovery 0.58)
            self.regime.v_prior = fit["v"] if plausible and not level else None  # type: ignore[index]
            self.regime.d_prior = fit["d"] if level and fit is not None else None
            self.regime.prior_w = 1.0
            self.regime.line.scale(keep)
            self.regime.last = None
            # and its noise is the new regime's to learn (load makes step times 5-10x noisier)
            self.regime.rel_w = self.regime.rel_ss = 0.0
            self._fresh_cost_tests()
        else:
            for pool in self.pools.values():
                pool[0] *= keep
                pool[1] *= keep
                pool[2] *= keep
        self.shifts += 1
        self.gap = self.s.probe_gap
        self.since_probe = self.s.probe_gap  # the new regime may need a probe at once
        why = f"{what} level shift detected" if level else f"{what} shift detected"
        self._note = (f"{self._note}; " if self._note else "") + why


def _step_time(obs: Observation) -> tuple[float | None, str]:
    if obs.predicted_ms is not None and 0 < obs.predicted_ms < math.inf:
        return float(obs.predicted_ms), "server"
    if obs.latency_ms and obs.latency_ms > 0 and math.isfinite(obs.latency_ms):
        return max(float(obs.latency_ms) - float(obs.prompt_ms or 0.0), 1e-6), "client"
    return None, ""
