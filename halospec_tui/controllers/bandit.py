"""adaptive:bandit — a discounted, unimodal UCB bandit over k on log tokens/s.

Arms are the draft lengths k_min..k_max; the reward of a request is ``ln(tokens / latency)``
(client side, so it needs nothing from the server; logs make a load that slows every arm by
the same factor a shift of the same size for all, and the noise about equally wide).

* **Discounting** (discounted UCB, Garivier & Moulines 2011): before each new reward every
  arm's statistics are multiplied by ``discount``, so old rewards fade and the bandit follows
  a drifting optimum; an arm not played for a while becomes uncertain again.
* **Unimodality** (tokens/s is single-peaked in k; OSUB, Combes & Proutière 2014): only the
  *leader* (the arm with the best discounted mean) and its neighbours within ``radius`` are
  candidates, so exploration stays next to the peak instead of visiting every k. A candidate
  that is unknown (discounted plays below ``seen``) is played first; otherwise the candidate
  with the largest index ``mean + exploration · sd · sqrt(2 ln N / n)`` (N = all discounted
  plays, sd the pooled residual sd with floor ``noise_floor``).
* **Change detection**: a reward more than ``change_z`` sd away from its arm's mean,
  ``change_runs`` times in a row on the same side, marks a shift (load or content changed);
  every arm then keeps only ``change_keep`` of its weight, so the bandit re-learns around the
  current k within a few requests (the walk to a new peak moves one neighbour per request).

A failed request, or one without tokens or latency, gives no reward and keeps k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from halospec_tui.controllers.base import (
    AdaptiveController,
    AdaptiveSettings,
    Decision,
    Observation,
)
from halospec_tui.controllers.model import ShiftScreen
from halospec_tui.settings import setting

INITIAL_SD = 0.1  # log-reward sd before residuals are known (~10 % per request)
PRIOR_WEIGHT = 3.0  # ... worth this many residuals
CUSUM_K, CUSUM_CLIP = 0.5, 3.0  # CUSUM allowance and the most one reward adds (in sds)
LEVEL_RATE, STALE_SDS = 0.2, 2.0  # reward-level EWMA; an arm is stale past this many sds


@dataclass
class BanditControllerSettings(AdaptiveSettings):
    """adaptive:bandit — discounted UCB over k on log tokens/s, leader's neighbours only."""

    discount: float = setting(0.97, lo=0.0, hi=1.0, doc="weight kept per request on older data")
    exploration: float = setting(1.0, lo=0.0, hi=100, doc="UCB bonus multiplier")
    radius: int = setting(1, lo=1, hi=64, doc="neighbours of the leader that may be played")
    seen: float = setting(0.5, lo=0.0, hi=1e6, doc="discounted plays below which an arm is unknown")
    noise_floor: float = setting(0.01, lo=0.0, hi=10, doc="floor of the log-reward sd")
    min_gain: float = setting(
        0.02, lo=0.0, hi=1.0, doc="a neighbour's index must beat the leader's by this"
    )
    cusum_h: float = setting(
        6.0, lo=0.0, hi=1000, doc="CUSUM threshold (sds) for a lasting shift; 0 = off"
    )
    change_z: float = setting(4.0, lo=0.0, hi=1000, doc="reward z-score of a shift; 0 = off")
    change_runs: int = setting(2, lo=1, hi=1000, doc="consecutive such rewards for a shift")
    change_keep: float = setting(0.0, lo=0.0, hi=1.0, doc="weight kept on history at a shift")


class BanditController(AdaptiveController):
    """Discounted UCB over the leader's neighbourhood, with shift detection."""

    name = "bandit"
    settings_class = BanditControllerSettings

    def __init__(self, settings: BanditControllerSettings | None = None) -> None:
        super().__init__(settings)
        self.s: BanditControllerSettings
        arms = range(self.s.k_min, self.s.k_max + 1)
        self.n = dict.fromkeys(arms, 0.0)  # discounted plays
        self.sum = dict.fromkeys(arms, 0.0)  # discounted sum of rewards
        self.sq = dict.fromkeys(arms, 0.0)  # discounted sum of squared rewards
        self._screen = ShiftScreen(self.s.change_z, self.s.change_runs)
        self._res_w = self._res_ss = 0.0  # discounted squared residuals (the noise scale)
        self._cusum_hi = self._cusum_lo = 0.0
        self.level: float | None = None  # recent reward level, whatever the arm (EWMA)
        self.level_at: dict[int, float] = {}  # the level when each arm was last played
        self._note = ""
        self.shifts = 0

    # --- statistics ------------------------------------------------------------------
    def mean(self, k: int) -> float | None:
        return self.sum[k] / self.n[k] if self.n[k] > 1e-12 else None

    def sd(self) -> float:
        """Residual sd of one reward around its arm's mean: discounted squared residuals,
        winsorised at three sds (the rewards around a shift must not inflate it) and pooled
        with PRIOR_WEIGHT pseudo-residuals of INITIAL_SD (a few residuals underestimate it);
        at least noise_floor."""
        ss = self._res_ss + PRIOR_WEIGHT * INITIAL_SD**2
        return max((ss / (self._res_w + PRIOR_WEIGHT)) ** 0.5, self.s.noise_floor)

    def stale(self, k: int) -> bool:
        """An arm whose statistics predate a move of the reward level (of whatever arm was
        played since) by more than STALE_SDS sds: a global change (content, load) that the
        played arms absorbed without a detected shift; its old mean would mislead."""
        if self.level is None or k not in self.level_at or self.n[k] < self.s.seen:
            return False
        return abs(self.level - self.level_at[k]) > STALE_SDS * self.sd()

    def leader(self) -> int | None:
        known = [k for k, n in self.n.items() if n >= self.s.seen and not self.stale(k)]
        if not known:
            return None
        return max(known, key=lambda k: (self.mean(k), -abs(k - self.k)))  # type: ignore[arg-type, return-value]

    # --- decide ----------------------------------------------------------------------
    def decide(self) -> Decision:
        s, k = self.s, self.k
        note = f"{self._note}; " if self._note else ""
        self._note = ""
        lead = self.leader()
        if lead is None:
            lead = k
        sd = self.sd()
        total = max(sum(self.n.values()), math.e)
        cands = [c for c in range(lead - s.radius, lead + s.radius + 1) if c in self.n]
        values: dict[str, float | None] = {
            "leader": float(lead),
            "sd": sd,
            "plays": sum(self.n.values()),
        }
        unknown = [c for c in cands if self.n[c] < s.seen or self.stale(c)]
        if unknown:
            # nearest to the current k first, then towards the leader's better-looking side
            new = min(unknown, key=lambda c: (abs(c - k), c))
            what = "stale: rewards moved since" if self.stale(new) else "unknown"
            why = f"leader k {lead}; k {new} {what} ({self.n[new]:.1f} plays) → explore"
        else:
            bonus = {
                c: s.exploration * sd * math.sqrt(2.0 * math.log(total) / self.n[c]) for c in cands
            }
            # a neighbour must promise min_gain more than the leader to be worth a request
            margin = math.log1p(s.min_gain)
            index = {
                c: self.mean(c) + bonus[c] - (0.0 if c == lead else margin)  # type: ignore[operator]
                for c in cands
            }
            new = max(cands, key=lambda c: (index[c], c == lead, c == k))
            m = self.mean(new)
            values.update(mean=m, bonus=bonus[new])
            role = "leader" if new == lead else f"neighbour of leader k {lead}"
            why = (
                f"{role}: mean {math.exp(m):.1f} tok/s, index "  # type: ignore[arg-type]
                f"{index[new]:+.3f} (bonus {bonus[new]:.3f}) over k {cands[0]}..{cands[-1]}"
            )
        self.k = new
        move = f"k {k}→{new}" if new != k else f"keep k {k}"
        return Decision(k=new, reason=f"{note}{why} → {move}", values=values)

    # --- observe ---------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        if not obs.success:
            self._note = "last step failed"
            return
        lat = obs.latency_ms
        if not obs.tokens or obs.tokens <= 0 or not math.isfinite(lat) or lat < 1e-3:
            self._note = "last reply had no tokens or no usable latency"
            return
        arm = self._clamp(obs.k)
        r = math.log(obs.tokens) - math.log(lat / 1000.0)
        m, z, clipped = self.mean(arm), None, None
        if m is not None and self.n[arm] >= self.s.seen and self._res_w >= 2.0:
            sd = self.sd() * math.sqrt(1.0 + 1.0 / self.n[arm])
            z = (r - m) / sd
            lim = self.s.change_z * sd
            clipped = (arm, max(m - lim, min(m + lim, r)))  # an outlier counts this much
        before, shift, after = self._screen.push(z, (arm, r), clipped)
        for sample in before:
            self._add(*sample)  # type: ignore[misc]
        if shift:  # the confirming rewards are dropped too (two spikes look the same): the
            self._shift("jump")  # next request replays this k as an unknown arm
            return
        del after
        if z is not None and self.s.cusum_h > 0:
            # a CUSUM of the rewards against their arms' means catches a moderate, lasting
            # shift (say 2-3 sds) that no single reward reveals
            zc = max(-CUSUM_CLIP, min(CUSUM_CLIP, z))
            self._cusum_hi = max(0.0, self._cusum_hi + zc - CUSUM_K)
            self._cusum_lo = max(0.0, self._cusum_lo - zc - CUSUM_K)
            if max(self._cusum_hi, self._cusum_lo) > self.s.cusum_h:
                self._shift("drift")
                if not self._screen.held:
                    self._add(arm, r)

    def _add(self, arm: int, r: float) -> None:
        g = self.s.discount
        m, n = self.mean(arm), self.n[arm]
        if m is not None and n >= self.s.seen:
            res = (r - m) * math.sqrt(n / (n + 1.0))  # the residual's own variance is sd²
            cap = 3.0 * self.sd()
            res = max(-cap, min(cap, res))
            self._res_w = g * self._res_w + 1.0
            self._res_ss = g * self._res_ss + res * res
        for a in self.n:
            self.n[a] *= g
            self.sum[a] *= g
            self.sq[a] *= g
        self.n[arm] += 1.0
        self.sum[arm] += r
        self.sq[arm] += r * r
        self.level = r if self.level is None else self.level + LEVEL_RATE * (r - self.level)
        self.level_at[arm] = self.level

    def _shift(self, how: str) -> None:
        self._cusum_hi = self._cusum_lo = 0.0
        self.level, self.level_at = None, {}
        keep = self.s.change_keep
        for a in self.n:
            self.n[a] *= keep
            self.sum[a] *= keep
            self.sq[a] *= keep
        self.shifts += 1
        self._note = f"shift detected ({how}): history dropped"
