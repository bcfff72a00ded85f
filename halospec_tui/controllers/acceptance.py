"""Acceptance-rate stepping (seed 002 in docs/controllers.md), fed by the server's counters.

The seed records one acceptance rate per draft, keeps the last `window` drafts and, every
`adjust_every` drafted tokens, moves k by a big or small step depending on the rolling mean.
A server reports only per-request totals (draft_n tokens drafted, draft_n_accepted accepted),
so each request enters the window as a *weighted* sample: its rate accepted/drafted, weighted
by its estimated number of drafts. Each verify step emits its accepted tokens plus one, so
drafts ≈ predicted_n − draft_n_accepted (docs/servers.md); without predicted_n,
ceil(draft_n / k). The window keeps the newest `window` drafts' worth of weight, trimming the
oldest sample partially, which is exactly the seed's per-draft mean when a request's drafts
share its rate.

One adjustment at most per step, as the seed checks once per record. A failed step, or a reply
without counters, adds nothing and keeps k: a failure says nothing about acceptance.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from halospec_tui.controllers.base import (
    AdaptiveController,
    AdaptiveSettings,
    Decision,
    Observation,
    describe_move,
)
from halospec_tui.settings import setting


@dataclass
class AcceptanceControllerSettings(AdaptiveSettings):
    """adaptive:acceptance — step k by the rolling acceptance rate of the last drafts."""

    window: int = setting(128, lo=1, hi=1_000_000, doc="drafts in the rolling window")
    adjust_every: int = setting(64, lo=1, hi=1_000_000, doc="drafted tokens between adjustments")
    up_big: float = setting(0.65, lo=0, hi=1)
    up: float = setting(0.55, lo=0, hi=1)
    down: float = setting(0.45, lo=0, hi=1)
    down_big: float = setting(0.35, lo=0, hi=1)
    step_small: int = setting(2, lo=0, hi=64)
    step_big: int = setting(4, lo=0, hi=64)

    def conflict(self) -> tuple[str, str] | None:
        if (found := super().conflict()) is not None:
            return found
        if not (self.up_big >= self.up >= self.down >= self.down_big):
            return "", "expected up_big >= up >= down >= down_big"
        return None


def estimate_drafts(obs: Observation) -> int:
    """Drafts (verify steps that drafted) behind one request's counters, at least 1."""
    drafted, accepted = obs.draft_n or 0, obs.draft_n_accepted or 0
    if obs.predicted_n is not None and obs.predicted_n > accepted:
        d = obs.predicted_n - accepted
    else:
        d = math.ceil(drafted / max(obs.k, 1))
    return max(1, min(d, drafted))


class AcceptanceController(AdaptiveController):
    """Raise k while drafts are mostly accepted, lower it while they are mostly rejected."""

    name = "acceptance"
    settings_class = AcceptanceControllerSettings

    def __init__(self, settings: AcceptanceControllerSettings | None = None) -> None:
        super().__init__(settings)
        self.s: AcceptanceControllerSettings
        self._samples: deque[list[float]] = deque()  # [rate, weight in drafts], oldest first
        self._weight = 0.0
        self.drafted_since_adjust = 0
        self._counters_seen = False
        self._last_had_counters = True

    @property
    def acceptance(self) -> float | None:
        """The rolling per-draft acceptance rate over the window; None before any counters."""
        if self._weight <= 0:
            return None
        return sum(r * w for r, w in self._samples) / self._weight

    @property
    def window_drafts(self) -> float:
        return self._weight

    def _step(self, rate: float) -> tuple[int, str]:
        s = self.s
        if rate > s.up_big:
            return s.step_big, f"> {s.up_big:g}"
        if rate > s.up:
            return s.step_small, f"> {s.up:g}"
        if rate < s.down_big:
            return -s.step_big, f"< {s.down_big:g}"
        if rate < s.down:
            return -s.step_small, f"< {s.down:g}"
        return 0, f"in [{s.down:g}, {s.up:g}]"

    def decide(self) -> Decision:
        k, rate, since = self.k, self.acceptance, self.drafted_since_adjust
        values: dict[str, float | None] = {
            "acceptance": rate,
            "drafted_since_adjust": float(since),
            "window_drafts": self._weight,
        }
        if not self._counters_seen:
            why = f"no draft counters from the server → keep k {k}"
        elif rate is None or since < self.s.adjust_every:
            why = f"drafted {since}/{self.s.adjust_every} tokens since last adjustment → keep k {k}"
            if not self._last_had_counters:
                why += " (last reply had no draft counters)"
        else:
            delta, cmp = self._step(rate)
            new = self._clamp(k + delta)
            self.drafted_since_adjust = 0
            self.k = new
            why = f"acceptance {rate:.2f} {cmp} over {self._weight:g} drafts → {describe_move(k, new, delta)}"
        return Decision(k=self.k, reason=why, values=values)

    def observe(self, obs: Observation) -> None:
        """Add a successful reply's counters to the window; anything else keeps k as it is."""
        if not obs.success:
            return
        drafted, accepted = obs.draft_n, obs.draft_n_accepted
        self._last_had_counters = drafted is not None and accepted is not None
        if drafted is None or accepted is None:
            return
        self._counters_seen = True
        if drafted <= 0:
            return
        rate = min(max(accepted / drafted, 0.0), 1.0)
        self._samples.append([rate, float(estimate_drafts(obs))])
        self._weight += self._samples[-1][1]
        self.drafted_since_adjust += drafted
        excess = self._weight - self.s.window
        while excess > 0:
            oldest = self._samples[0]
            cut = min(oldest[1], excess)
            oldest[1] -= cut
            self._weight -= cut
            excess -= cut
            if oldest[1] <= 0:
                self._samples.popleft()
