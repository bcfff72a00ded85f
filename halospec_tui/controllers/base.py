"""The controller contract: pick k before each step, learn from each reply.

Also what every controller shares: the Decision it returns, the Observation it learns from,
and `AdaptiveSettings`, the bounds and starting point every adaptive controller's settings
extend (each controller's module declares the rest beside its logic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from halospec_tui.settings import setting


@dataclass(frozen=True)
class Decision:
    """What a controller chose for the next step, with the values it used and why."""

    k: int
    reason: str
    values: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """What a controller may learn from one step (server counters None when unreported)."""

    k: int
    success: bool
    latency_ms: float
    tokens: int = 0
    draft_n: int | None = None
    draft_n_accepted: int | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    prompt_ms: float | None = None
    category: str = ""

    @classmethod
    def of(cls, k: int, reply: Any, category: str = "") -> Observation:
        """The observation of `reply` (a backend Reply) to a request at draft length k."""
        return cls(
            k=k,
            success=reply.success,
            latency_ms=reply.latency_ms,
            tokens=reply.tokens,
            draft_n=reply.draft_n,
            draft_n_accepted=reply.draft_n_accepted,
            predicted_n=reply.predicted_n,
            predicted_ms=reply.predicted_ms,
            prompt_ms=reply.prompt_ms,
            category=category,
        )


class Controller(Protocol):
    name: str  # fixed, latency, acceptance, ...
    warmup_k: int  # draft length used for warmup requests

    def calibrate(self, warmup_latencies_ms: list[float]) -> dict[str, float | None]:
        """Called once after warmup with the successful warmup latencies; returns thresholds."""

    def decide(self) -> Decision:
        """The draft length for the next step, with its reason."""

    def observe(self, obs: Observation) -> None:
        """Learn from the step just run with the last decided k."""


@dataclass
class AdaptiveSettings:
    """What every adaptive controller's settings hold: the first k, the warmup k, the bounds.

    A controller's settings dataclass extends this one (its fields follow these four in the
    profile's `[controller.NAME]` table and in docs/profiles.md)."""

    initial_k: int = setting(4, lo=1, hi=64)
    warmup_k: int = setting(4, lo=1, hi=64)
    k_min: int = setting(1, lo=1, hi=64)
    k_max: int = setting(8, lo=1, hi=64)

    def clamp(self, k: int) -> int:
        """k within [k_min, k_max]."""
        return min(max(k, self.k_min), self.k_max)

    def conflict(self) -> tuple[str, str] | None:
        """(key, what was expected) when settings that are each in range do not fit together;
        profile validation reports it as `controller.NAME.key: ...`. Extend it, calling it
        first, for a controller's own rules."""
        if self.k_min > self.k_max:
            return "k_min", f"expected at most k_max ({self.k_max}), got {self.k_min}"
        return None


class AdaptiveController:
    """What every adaptive controller does alike: its settings (`settings_class` when none
    are given), the warmup k, the first k within its bounds, and no thresholds to calibrate
    unless it overrides `calibrate`. A controller module subclasses it and adds its logic."""

    name = ""
    settings_class: type[AdaptiveSettings] = AdaptiveSettings

    def __init__(self, settings: Any = None) -> None:
        self.s: Any = settings or self.settings_class()
        self.warmup_k = self.s.warmup_k
        self.k = self._clamp(self.s.initial_k)

    def _clamp(self, k: int) -> int:
        return self.s.clamp(int(k))

    def calibrate(self, warmup_latencies_ms: list[float]) -> dict[str, float | None]:
        return {}


def describe_move(k: int, new: int, wanted: int) -> str:
    """'k 4→5', 'keep k 6', or 'keep k 8 (at bound)' when a wanted move was clamped away."""
    if new != k:
        return f"k {k}→{new}"
    return f"keep k {k}" + (" (at bound)" if wanted else "")
