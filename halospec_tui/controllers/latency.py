"""HaloSpec's latency-driven controller, reproduced rule for rule.

The original (Rust) calibrates two thresholds from warmup latencies, smooths each successful
step's latency with an EMA and, before each step, moves k from the *current* k and the *last*
EMA. A failed step drops k to `failure_k` and leaves the EMA untouched, so the next decision
starts from `failure_k` with the EMA from before the failure (docs/halospec.md).

Two deliberate generalisations, both invisible with the default settings: every result is
clamped to [k_min, k_max] (the original clamped to [1, 8] with the same defaults), and the
comparisons are on floats (the original truncated EMA and thresholds to whole milliseconds,
which can only matter within 1 ms of a threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from halospec_tui.controllers.base import (
    AdaptiveController,
    AdaptiveSettings,
    Decision,
    Observation,
    describe_move,
)
from halospec_tui.percentile import percentile_nearest_rank
from halospec_tui.settings import setting


@dataclass
class LatencyControllerSettings(AdaptiveSettings):
    """adaptive (adaptive:latency) — HaloSpec's thresholds from warmup latencies, EMA steps."""

    ema_alpha: float = setting(0.4, lo=0.0, hi=1.0)
    low_factor: float = setting(0.85, lo=0.0, hi=100)
    high_factor: float = setting(1.05, lo=0.0, hi=100)
    low_percentile: float = setting(50.0, lo=0, hi=100)
    high_percentile: float = setting(95.0, lo=0, hi=100)
    default_low_ms: float = setting(9000.0, lo=0, hi=1e9)
    default_high_ms: float = setting(22000.0, lo=0, hi=1e9)
    step_up: int = setting(1, lo=0, hi=64)
    step_down: int = setting(2, lo=0, hi=64)
    gentle_below: int = setting(6, lo=0, hi=64, doc="in band: +1 while k is below this")
    failure_k: int = setting(1, lo=1, hi=64)


class LatencyController(AdaptiveController):
    """Step k up while requests are faster than warmup, down when slower (HaloSpec's rule)."""

    name = "latency"
    settings_class = LatencyControllerSettings

    def __init__(self, settings: LatencyControllerSettings | None = None) -> None:
        super().__init__(settings)
        self.s: LatencyControllerSettings
        self.ema_ms: float | None = None
        self.low_thr_ms = float(self.s.default_low_ms)
        self.high_thr_ms = float(self.s.default_high_ms)
        self._failed_last = False

    def calibrate(self, warmup_latencies_ms: list[float]) -> dict[str, float | None]:
        """Thresholds from the successful warmup latencies; the defaults when there are none."""
        lat = [float(x) for x in warmup_latencies_ms if math.isfinite(x)]
        p_low = percentile_nearest_rank(lat, self.s.low_percentile)
        p_high = percentile_nearest_rank(lat, self.s.high_percentile)
        if p_low is None or p_high is None:
            self.low_thr_ms = float(self.s.default_low_ms)
            self.high_thr_ms = float(self.s.default_high_ms)
        else:
            self.low_thr_ms = self.s.low_factor * p_low
            self.high_thr_ms = self.s.high_factor * p_high
        return {
            "low_thr_ms": self.low_thr_ms,
            "high_thr_ms": self.high_thr_ms,
            "p_low_ms": p_low,
            "p_high_ms": p_high,
        }

    def decide(self) -> Decision:
        k, ema = self.k, self.ema_ms
        low, high = self.low_thr_ms, self.high_thr_ms
        s = self.s
        if ema is None:
            new, why = k, f"no EMA yet → keep k {k}"
        elif ema < low:
            new = self._clamp(k + s.step_up)
            why = f"ema {ema:.0f} ms < low {low:.0f} ms → {describe_move(k, new, s.step_up)}"
        elif ema > high:
            new = self._clamp(k - s.step_down)
            why = f"ema {ema:.0f} ms > high {high:.0f} ms → {describe_move(k, new, s.step_down)}"
        else:
            band = f"ema {ema:.0f} ms in [{low:.0f}, {high:.0f}] ms"
            gentle = k < s.gentle_below
            new = self._clamp(k + 1 if gentle else k)
            cmp = "<" if gentle else "≥"
            why = f"{band}, k {cmp} {s.gentle_below} → {describe_move(k, new, int(gentle))}"
        if self._failed_last:
            why = f"last step failed, k reset to {k}; {why}"
            self._failed_last = False
        self.k = new
        return Decision(
            k=new, reason=why, values={"ema_ms": ema, "low_thr_ms": low, "high_thr_ms": high}
        )

    def observe(self, obs: Observation) -> None:
        """Success updates the EMA (k stays as decided); failure sets k = failure_k."""
        if not obs.success:
            self.k = self._clamp(self.s.failure_k)
            self._failed_last = True
            return
        if not math.isfinite(obs.latency_ms):
            return
        a = self.s.ema_alpha
        lat = float(obs.latency_ms)
        self.ema_ms = lat if self.ema_ms is None else a * lat + (1.0 - a) * self.ema_ms
