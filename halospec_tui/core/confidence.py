"""How sure is a number? Bootstrap intervals for the figure of merit, paired by round.

Per-step latencies are skewed and heavy-tailed, and tokens/s is a ratio of sums (tokens over
seconds), so intervals come from the bootstrap rather than a normal formula: resample the
steps, recompute the statistic, read the percentiles of the replicates.

**Pairing.** When modes run interleaved, round r holds one step of every mode, taken at the same
moment on the same prompt index. Resampling whole rounds, with the same resample for every mode,
keeps that pairing: a comparison of two modes then cancels what their steps shared (machine
drift, the prompt), as in a randomized block experiment. Blocks of steps per mode (expensive
k switches) are resampled the same way, a round being one pass over every mode's block.
Sequential runs (HaloSpec's order) have no pairing: each mode's steps are resampled on their
own and comparisons are unpaired, which the output says.

Each replicate is a vector of round weights (how often each round was drawn); every statistic
here is a weighted statistic of the rows under those weights, so one matrix of weights serves
every mode and every comparison, and all of it is vectorised numpy.

**Several comparisons at once.** Comparing every mode with the leader is m tests; the labels
use Holm's step-down adjustment, so that among equal modes the chance of calling any of them
different stays at 5 %, not 5 % each.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np


def _round(x: float, nd: int) -> float | None:
    return round(float(x), nd) if math.isfinite(x) else None


# --- the figures of merit ---------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A figure of merit: how to compute it from rows under bootstrap weights."""

    name: str
    label: str  # as shown: "tokens/s"
    unit: str
    higher_is_better: bool
    describe: str


METRICS: dict[str, Metric] = {
    "tokens_per_s": Metric(
        "tokens_per_s",
        "tokens/s",
        "tok/s",
        True,
        "completion tokens per second of client latency over successful steps (HaloSpec's "
        "throughput)",
    ),
    "score": Metric(
        "score",
        "score",
        "ms",
        False,
        "HaloSpec's score, avg + 0.5·p95 + 0.2·stddev of latency in ms (lower is better)",
    ),
}
METRIC_NAMES = tuple(METRICS)


@dataclass(frozen=True)
class ScoreWeights:
    avg: float = 1.0
    p95: float = 0.5
    stddev: float = 0.2


@dataclass
class ModeData:
    """One mode's rows as arrays: the unit the bootstrap resamples is the round."""

    mode: str
    tokens: np.ndarray  # float, 0 for failed steps
    latency_ms: np.ndarray  # float, 0 for failed steps
    ok: np.ndarray  # bool
    rounds: np.ndarray  # int round id of each row (pairing unit)

    @classmethod
    def of(
        cls,
        mode: str,
        rows: Sequence[tuple[int, bool, int, float]],
    ) -> ModeData:
        """rows: (round, success, tokens, latency_ms) per step."""
        ok = np.array([bool(r[1]) and r[3] > 0 and math.isfinite(r[3]) for r in rows], bool)
        return cls(
            mode,
            np.where(ok, np.array([float(r[2]) for r in rows]), 0.0) if rows else np.zeros(0),
            np.where(ok, np.array([float(r[3]) for r in rows]), 0.0) if rows else np.zeros(0),
            ok,
            np.array([int(r[0]) for r in rows], dtype=np.int64),
        )

    @property
    def n(self) -> int:
        return int(self.ok.size)

    def subset(self, keep_rounds: set[int]) -> ModeData:
        m = np.isin(self.rounds, sorted(keep_rounds))
        return ModeData(self.mode, self.tokens[m], self.latency_ms[m], self.ok[m], self.rounds[m])


# --- weighted statistics (rows of w: replicates; columns: the mode's rows) --------------------


def _tokens_per_s(d: ModeData, w: np.ndarray, _: ScoreWeights) -> np.ndarray:
    tok = w @ d.tokens
    sec = (w @ d.latency_ms) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sec > 0, tok / np.where(sec > 0, sec, 1.0), np.nan)


def _score(d: ModeData, w: np.ndarray, sw: ScoreWeights) -> np.ndarray:
    """avg + a·p95 + b·stddev of the successful latencies; p95 is the nearest rank
    (idx = ceil(0.95·n) − 1, HaloSpec's) of the weighted sample, population stddev."""
    lat = d.latency_ms[d.ok]
    ww = w[:, d.ok].astype(float)
    if lat.size == 0:
        return np.full(w.shape[0], np.nan)
    n = ww.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (ww @ lat) / n
        var = (ww * (lat[None, :] - mean[:, None]) ** 2).sum(axis=1) / n
    order = np.argsort(lat, kind="stable")
    cum = np.cumsum(ww[:, order], axis=1)
    rank = np.ceil(0.95 * n)  # 1-based nearest rank
    pos = np.argmax(cum >= rank[:, None], axis=1)
    p95 = lat[order][pos]
    out = sw.avg * mean + sw.p95 * p95 + sw.stddev * np.sqrt(np.maximum(var, 0.0))
    return np.where(n > 0, out, np.nan)


_STAT: dict[str, Callable[[ModeData, np.ndarray, ScoreWeights], np.ndarray]] = {
    "tokens_per_s": _tokens_per_s,
    "score": _score,
}


def point(metric: str, d: ModeData, sw: ScoreWeights | None = None) -> float | None:
    """The metric on the data as measured (every row once)."""
    if d.n == 0:
        return None
    v = float(_STAT[metric](d, np.ones((1, d.n)), sw or ScoreWeights())[0])
    return v if math.isfinite(v) else None


# --- the bootstrap ----------------------------------------------------------------------------


@dataclass
class Replicates:
    """Bootstrap weights: per replicate, how often each round (or, unpaired, each row) was drawn."""

    paired: bool
    rounds: np.ndarray  # sorted round ids (paired)
    weights: np.ndarray  # B x len(rounds) (paired)
    per_mode: dict[str, np.ndarray] = field(default_factory=dict)  # unpaired: B x n_rows

    def row_weights(self, d: ModeData) -> np.ndarray:
        if not self.paired:
            return self.per_mode[d.mode]
        idx = np.searchsorted(self.rounds, d.rounds)
        return self.weights[:, idx]


def draw(
    modes: Sequence[ModeData], *, paired: bool, replicates: int = 2000, seed: int = 0
) -> Replicates:
    """Draw the bootstrap weights once for a set of modes (seeded: same rows, same answer)."""
    rng = np.random.default_rng(seed)
    if paired:
        rounds = np.unique(np.concatenate([d.rounds for d in modes])) if modes else np.zeros(0)
        r = rounds.size
        w = rng.multinomial(r, np.full(r, 1.0 / r), size=replicates) if r else np.zeros((0, 0))
        return Replicates(True, rounds.astype(np.int64), w.astype(np.float64))
    per = {}
    for d in modes:
        n = d.n
        per[d.mode] = (
            rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)
            if n
            else np.zeros((replicates, 0))
        )
    return Replicates(False, np.zeros(0, np.int64), np.zeros((0, 0)), per)


def replicate_values(
    metric: str, d: ModeData, reps: Replicates, sw: ScoreWeights | None = None
) -> np.ndarray:
    return _STAT[metric](d, reps.row_weights(d), sw or ScoreWeights())


@dataclass(frozen=True)
class Interval:
    value: float
    lo: float
    hi: float
    level: float  # 0.95

    def as_dict(self, nd: int = 4) -> dict[str, float | None]:
        """JSON-ready: an end that could not be computed (too few steps) is None."""
        return {
            "value": _round(self.value, nd),
            "lo": _round(self.lo, nd),
            "hi": _round(self.hi, nd),
            "level": self.level,
        }


# Small samples: the plain percentile interval is too narrow (it ignores that the spread itself
# is estimated). Hesterberg's "expanded percentile" widens it by the t / normal ratio with
# n − 1 degrees of freedom, n the resampled units; per-mode intervals add BCa's bias and
# skewness correction (Efron 1987), acceleration from a leave-one-unit-out jackknife.
_N = NormalDist()


def t_quantile(p: float, dof: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion; plenty for dof >= 2)."""
    z = _N.inv_cdf(p)
    v = float(max(dof, 1))
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def _expanded_z(alpha: float, n: int) -> float:
    """The normal z whose tail replaces alpha/2 in an expanded percentile interval (< 0)."""
    if n < 3:
        return _N.inv_cdf(alpha / 2)
    return -t_quantile(1 - alpha / 2, n - 1) * math.sqrt(n / (n - 1))


def expanded_alpha(alpha: float, n: int) -> float:
    """The two-sided tail mass a plain percentile interval needs to act as a level-(1 − alpha)
    expanded one with n units."""
    return 2.0 * _N.cdf(_expanded_z(alpha, n))


def achieved_alpha(two_sided_tail: float, n: int) -> float:
    """Invert expanded_alpha: the alpha whose expanded interval ends exactly where a plain
    percentile interval with this two-sided tail mass ends (bisection; monotone)."""
    if two_sided_tail >= 1.0:
        return 1.0
    lo, hi = 1e-12, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if expanded_alpha(mid, n) < two_sided_tail:
            lo = mid
        else:
            hi = mid
    return hi


def bca_interval(
    value: float | None, reps: np.ndarray, jack: np.ndarray, level: float = 0.95
) -> Interval | None:
    """BCa interval with the expanded-percentile tails; `jack`: leave-one-unit-out values."""
    good = reps[np.isfinite(reps)]
    jack = jack[np.isfinite(jack)]
    if value is None or good.size < 10 or jack.size < 2:
        return None
    share = (np.count_nonzero(good < value) + 0.5 * np.count_nonzero(good == value)) / good.size
    z0 = _N.inv_cdf(min(max(share, 1e-6), 1 - 1e-6))
    dev = jack.mean() - jack
    ss = float((dev**2).sum())
    a = float((dev**3).sum()) / (6.0 * ss**1.5) if ss > 0 else 0.0
    zq = _expanded_z(1.0 - level, jack.size)
    qs = []
    for z in (zq, -zq):
        den = 1.0 - a * (z0 + z)
        qs.append(_N.cdf(z0 + (z0 + z) / den) if den > 0 else (0.0 if z < 0 else 1.0))
    lo, hi = np.quantile(good, qs)
    return Interval(float(value), float(lo), float(hi), level)


def unit_ids(d: ModeData, paired: bool) -> np.ndarray:
    """The resampling unit of each row: its round (paired) or itself."""
    return d.rounds if paired else np.arange(d.n)


def jackknife(metric: str, d: ModeData, paired: bool, sw: ScoreWeights | None = None) -> np.ndarray:
    """The metric with each unit (round, or row) left out in turn."""
    units = unit_ids(d, paired)
    ids = np.unique(units)
    w = (units[None, :] != ids[:, None]).astype(np.float64)
    return _STAT[metric](d, w, sw or ScoreWeights())


def estimate(
    metric: str,
    d: ModeData,
    reps: Replicates,
    level: float = 0.95,
    sw: ScoreWeights | None = None,
) -> Interval | None:
    """The mode's metric with its interval (None when it has no successful step)."""
    value = point(metric, d, sw)
    if value is None:
        return None
    return bca_interval(
        value, replicate_values(metric, d, reps, sw), jackknife(metric, d, reps.paired, sw), level
    ) or Interval(value, math.nan, math.nan, level)


# --- comparisons with the leader ----------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """mode vs leader on the rows both have (paired: the same rounds)."""

    mode: str
    leader: str
    diff: float  # mode/leader - 1 on the common rows (the raw metric ratio minus one)
    lo: float  # interval of diff at `level`
    hi: float
    level: float
    p_value: float  # two-sided, bootstrap
    prob_leader_better: float  # share of replicates in which the leader is better
    rounds: int  # common rounds (paired) or the mode's rows (unpaired)
    paired: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "leader": self.leader,
            "diff": round(self.diff, 5),
            "lo": round(self.lo, 5),
            "hi": round(self.hi, 5),
            "level": round(self.level, 5),
            "p_value": round(self.p_value, 5),
            "prob_leader_better": round(self.prob_leader_better, 4),
            "rounds": self.rounds,
            "paired": self.paired,
        }


def compare(
    metric: str,
    d: ModeData,
    leader: ModeData,
    reps: Replicates,
    *,
    level: float = 0.95,
    sw: ScoreWeights | None = None,
) -> Comparison | None:
    """The relative difference mode/leader − 1 with its interval and p-value; paired on the
    rounds both modes have, else unpaired. None when either side has nothing to compare."""
    sw = sw or ScoreWeights()
    higher = METRICS[metric].higher_is_better
    if reps.paired:
        common = set(d.rounds.tolist()) & set(leader.rounds.tolist())
        if len(common) < 2:
            return None
        a, b = d.subset(common), leader.subset(common)
        units = len(common)
    else:
        a, b = d, leader
        units = d.n
    pa, pb = point(metric, a, sw), point(metric, b, sw)
    if pa is None or pb is None or pb == 0:
        return None
    ra = replicate_values(metric, a, reps, sw)
    rb = replicate_values(metric, b, reps, sw)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = ra / rb - 1.0
    rel = rel[np.isfinite(rel)]
    if rel.size < 10:
        return None
    n = units if reps.paired else min(d.n, leader.n)
    tail = expanded_alpha(1.0 - level, n) / 2
    lo, hi = np.quantile(rel, [tail, 1 - tail])
    # the p-value that matches these intervals: the alpha at which the interval touches 0
    below = (np.count_nonzero(rel <= 0) + 1) / (rel.size + 1)
    above = (np.count_nonzero(rel >= 0) + 1) / (rel.size + 1)
    p = achieved_alpha(min(1.0, 2.0 * min(below, above)), n)
    leader_better = float(np.mean(rel < 0) if higher else np.mean(rel > 0))
    return Comparison(
        mode=d.mode,
        leader=leader.mode,
        diff=pa / pb - 1.0,
        lo=float(lo),
        hi=float(hi),
        level=level,
        p_value=float(p),
        prob_leader_better=leader_better,
        rounds=units,
        paired=reps.paired,
    )


def best_set_p_values(
    metric: str,
    modes: Sequence[ModeData],
    reps: Replicates,
    sw: ScoreWeights | None = None,
) -> dict[str, float]:
    """For each mode i, the p-value of "i is at least as good as every other mode".

    The statistic is how far the best of the others is ahead of i, T_i = max_j (L_j − L_i),
    with L the log of the metric (its negative when lower is better); its null distribution is
    the bootstrap's, centred on the estimates (max over j of the replicates' deviations from
    the observed differences). Taking the max over every rival accounts for the leader being
    picked as the best of many: a plain comparison with the leader calls equal modes
    different too often (the winner's curse). With Holm across modes, equal modes are all kept
    with 95 % probability and the truly best mode is kept with at least 95 %."""
    sw = sw or ScoreWeights()
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    est: dict[str, float] = {}
    rep: dict[str, np.ndarray] = {}
    for d in modes:
        v = point(metric, d, sw)
        if v is None or v <= 0:
            continue
        r = replicate_values(metric, d, reps, sw)
        with np.errstate(divide="ignore", invalid="ignore"):
            est[d.mode] = sign * math.log(v)
            rep[d.mode] = sign * np.log(np.where(r > 0, r, np.nan))
    names = list(est)
    out: dict[str, float] = {}
    for i in names:
        rivals = [j for j in names if j != i]
        if not rivals:
            out[i] = 1.0
            continue
        t_obs = max(est[j] - est[i] for j in rivals)
        dev = np.stack([(rep[j] - rep[i]) - (est[j] - est[i]) for j in rivals])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # replicates with no value at all
            t_null = np.nanmax(dev, axis=0)
        t_null = t_null[np.isfinite(t_null)]
        if t_null.size == 0:
            out[i] = 1.0
            continue
        out[i] = float((np.count_nonzero(t_null >= t_obs) + 1) / (t_null.size + 1))
    return out


def holm(p_values: dict[str, float], alpha: float = 0.05) -> dict[str, tuple[bool, float]]:
    """Holm's step-down: name -> (rejected, the level its test was held to)."""
    order = sorted(p_values, key=lambda k: (p_values[k], k))
    m = len(order)
    out: dict[str, tuple[bool, float]] = {}
    still = True
    for i, name in enumerate(order):
        lvl = alpha / (m - i)
        still = still and p_values[name] <= lvl
        out[name] = (still, lvl)
    return out
